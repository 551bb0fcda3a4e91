"""The R-DARTS spaces S2-S4 (Zela et al., "Understanding and Robustifying Differentiable Architecture Search",
ICLR 2020, sec. 3): the DARTS cell with a reduced set of candidate ops, the same on every edge of both cell
types, in which first-order and second-order DARTS still derive degenerate cells.

The candidate lists are those of the released code (automl/RobustDARTS, commit 3dec3fe, src/spaces.py):

* S2 (lines 63-66): ``skip_connect``, ``sep_conv_3x3``;
* S3 (lines 68-73): ``none``, ``skip_connect``, ``sep_conv_3x3``;
* S4 (lines 75-78): ``noise``, ``sep_conv_3x3`` (``noise``: :class:`~darts_lightning.spaces.ops.NoiseOp`).

S1 (lines 6-61) gives every edge of each cell type its own pair of ops; its supernet needs per-edge
candidate subsets, which the DARTS supernet does not have, so S1 is not offered here.

Each space is registered by name (``rdarts_s2`` .. ``rdarts_s4``) and chosen in a config as
``class_path: darts_lightning.RDartsSpace`` with ``init_args: {subspace: s2, ...}``. The derived cells follow
the DARTS rule (``none`` excluded), as the released ``Network.genotype`` does (src/search/model_search.py,
lines 154-194).
"""

from __future__ import annotations

import functools

from darts_lightning.spaces.base import register_space
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.utils.validation import check_choice

__all__ = ["RDartsSpace", "RDARTS_OPS"]

#: The candidate ops of each R-DARTS space that is offered (automl/RobustDARTS, commit 3dec3fe, src/spaces.py).
RDARTS_OPS: dict[str, tuple[str, ...]] = {
    "s2": ("skip_connect", "sep_conv_3x3"),
    "s3": ("none", "skip_connect", "sep_conv_3x3"),
    "s4": ("noise", "sep_conv_3x3"),
}


class RDartsSpace(DartsSpace):
    """A DARTS space with the candidate ops of R-DARTS's space ``subspace`` (``s2``, ``s3`` or ``s4``, see the
    module docstring); every other argument is :class:`DartsSpace`'s, with its defaults (C=16, 8 cells: the
    R-DARTS search network, automl/RobustDARTS, commit 3dec3fe, src/search/args.py, lines 41-43)."""

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
        check_choice(
            "subspace", subspace, tuple(RDARTS_OPS),
            hint="S1 gives each edge its own pair of ops, which the DARTS supernet does not support",
        )
        self.subspace = subspace
        super().__init__(
            ops=RDARTS_OPS[subspace], nodes=nodes, multiplier=multiplier, channels=channels, layers=layers,
            stem_multiplier=stem_multiplier, genotype_rule=genotype_rule, edge_normalization=edge_normalization,
            pool_batch_norm=pool_batch_norm, last_activation=last_activation, drop_path=drop_path,
        )


for _subspace in RDARTS_OPS:
    register_space(f"rdarts_{_subspace}", functools.partial(RDartsSpace, _subspace))
