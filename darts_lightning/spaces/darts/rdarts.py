"""The R-DARTS spaces S1-S4 (Zela et al., "Understanding and Robustifying Differentiable Architecture Search",
ICLR 2020, sec. 3): the DARTS cell with a reduced set of candidate ops, in which first-order and second-order
DARTS still derive degenerate cells.

The candidate lists are those of the released code (automl/RobustDARTS, commit 3dec3fe, src/spaces.py):

* S1 (lines 6-61): every edge of each cell type has its own pair of ops, no ``none`` (normal cell: lines
  6-33, reduction cell: lines 34-61, 14 edges each, in α's row order);
* S2 (lines 63-66): ``skip_connect``, ``sep_conv_3x3`` on every edge;
* S3 (lines 68-73): ``none``, ``skip_connect``, ``sep_conv_3x3`` on every edge;
* S4 (lines 75-78): ``noise``, ``sep_conv_3x3`` on every edge (``noise``: :class:`~darts_lightning.spaces.ops.NoiseOp`).

S1's 14 edges are those of a 4-node cell, so S1 needs ``nodes: 4``. Column ``j`` of α on an S1 edge is that
edge's ``j``-th op; a derived or drawn S1 cell puts on each edge one of that edge's two ops.

Each space is registered by name (``rdarts_s1`` .. ``rdarts_s4``) and chosen in a config as
``class_path: darts_lightning.RDartsSpace`` with ``init_args: {subspace: s2, ...}``. The derived cells follow
the DARTS rule (``none`` excluded), as the released ``Network.genotype`` does (src/search/model_search.py,
lines 154-194).
"""

from __future__ import annotations

import functools

from darts_lightning.spaces.base import register_space
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.utils.validation import check_choice

__all__ = ["RDartsSpace", "RDARTS_OPS", "RDARTS_S1_EDGE_OPS"]

#: The candidate ops of each R-DARTS space whose edges share them (automl/RobustDARTS, commit 3dec3fe, src/spaces.py).
RDARTS_OPS: dict[str, tuple[str, ...]] = {
    "s2": ("skip_connect", "sep_conv_3x3"),
    "s3": ("none", "skip_connect", "sep_conv_3x3"),
    "s4": ("noise", "sep_conv_3x3"),
}

#: S1: the two candidate ops of each of the 14 edges of a 4-node cell, in α's row order (edges 0-2, 1-2,
#: 0-3, 1-3, 2-3, 0-4, ...), per cell type (automl/RobustDARTS, commit 3dec3fe, src/spaces.py: ``normal``
#: lines 6-33, ``reduce`` lines 34-61).
RDARTS_S1_EDGE_OPS: dict[str, tuple[tuple[str, str], ...]] = {
    "normal": (
        ("skip_connect", "dil_conv_3x3"),
        ("skip_connect", "dil_conv_5x5"),
        ("skip_connect", "dil_conv_5x5"),
        ("skip_connect", "sep_conv_3x3"),
        ("skip_connect", "dil_conv_3x3"),
        ("max_pool_3x3", "skip_connect"),
        ("skip_connect", "sep_conv_3x3"),
        ("skip_connect", "sep_conv_3x3"),
        ("skip_connect", "dil_conv_3x3"),
        ("skip_connect", "sep_conv_3x3"),
        ("max_pool_3x3", "skip_connect"),
        ("skip_connect", "dil_conv_3x3"),
        ("dil_conv_3x3", "dil_conv_5x5"),
        ("dil_conv_3x3", "dil_conv_5x5"),
    ),
    "reduce": (
        ("max_pool_3x3", "avg_pool_3x3"),
        ("max_pool_3x3", "dil_conv_3x3"),
        ("max_pool_3x3", "avg_pool_3x3"),
        ("max_pool_3x3", "avg_pool_3x3"),
        ("skip_connect", "dil_conv_5x5"),
        ("max_pool_3x3", "avg_pool_3x3"),
        ("max_pool_3x3", "sep_conv_3x3"),
        ("skip_connect", "dil_conv_3x3"),
        ("skip_connect", "dil_conv_5x5"),
        ("max_pool_3x3", "avg_pool_3x3"),
        ("max_pool_3x3", "avg_pool_3x3"),
        ("skip_connect", "dil_conv_5x5"),
        ("skip_connect", "dil_conv_5x5"),
        ("skip_connect", "dil_conv_5x5"),
    ),
}

SUBSPACES: tuple[str, ...] = ("s1", *RDARTS_OPS)


def s1_ops() -> tuple[str, ...]:
    """Every op S1 uses on some edge, in order of first appearance (normal cell, then reduction cell)."""
    return tuple(dict.fromkeys(op for cell in ("normal", "reduce") for ops in RDARTS_S1_EDGE_OPS[cell] for op in ops))


class RDartsSpace(DartsSpace):
    """A DARTS space with the candidate ops of R-DARTS's space ``subspace`` (``s1`` .. ``s4``, see the module
    docstring; ``s1`` gives each edge its own pair and needs ``nodes: 4``); every other argument is
    :class:`DartsSpace`'s, with its defaults (C=16, 8 cells: the R-DARTS search network, automl/RobustDARTS,
    commit 3dec3fe, src/search/args.py, lines 41-43)."""

    name = "rdarts"

    def __init__(
        self,
        subspace: str = "s2",
        nodes: int = 4,
        multiplier: int = 4,
        channels: int = 16,
        layers: int = 8,
        stem_multiplier: int = 3,
        genotype_rule: str = "darts",
        edge_normalization: bool = False,
        pool_batch_norm: bool = True,
        last_activation: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        check_choice("subspace", subspace, SUBSPACES)
        if subspace == "s1" and nodes != 4:
            raise ValueError(
                f"R-DARTS's S1 names the ops of the 14 edges of a 4-node cell, got nodes={nodes}: set the space's nodes to 4"
            )
        self.subspace = subspace
        super().__init__(
            ops=s1_ops() if subspace == "s1" else RDARTS_OPS[subspace], nodes=nodes, multiplier=multiplier,
            channels=channels, layers=layers,
            stem_multiplier=stem_multiplier, genotype_rule=genotype_rule, edge_normalization=edge_normalization,
            pool_batch_norm=pool_batch_norm, last_activation=last_activation, drop_path=drop_path,
        )
        if subspace == "s1":
            self.edge_ops = {cell: tuple(RDARTS_S1_EDGE_OPS[cell]) for cell in ("normal", "reduce")}


for _subspace in SUBSPACES:
    register_space(f"rdarts_{_subspace}", functools.partial(RDartsSpace, _subspace))
