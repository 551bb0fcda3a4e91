"""The contract of a space's supernet: what the searches ask of the network they search over.

A :class:`Supernet` is an ``nn.Module`` whose mixed edges are weighted by architecture parameters through a
:class:`~darts_lightning.spaces.mixing.Relaxation`. The differentiable search trains it (both parameter
sets), the single-path weight sharing trains its weights one sampled path at a time, and each space builds
its own (:meth:`darts_lightning.spaces.base.SearchSpace.build_supernet`).

The state of one forward pass is the supernet's, not the relaxation's: the search sets the sample key
(:meth:`Supernet.set_sample_key`) from which every forward pass seeds its generators, and the weight of
DARTS-'s auxiliary skip connections (:attr:`Supernet.auxiliary_skip_weight`); a single path is an argument
of :meth:`Supernet.forward`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from darts_lightning.spaces.mixing import Relaxation

__all__ = ["Supernet", "Arch", "named_weight_parameters"]

Arch = TypeVar("Arch")
"""The answer type of a space (a DARTS :class:`~darts_lightning.Genotype`, an :class:`~darts_lightning.NB201Arch`)."""


def named_weight_parameters(network: Supernet[Any]) -> Iterator[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every parameter of ``network`` except its ``arch_parameters()``."""
    arch = {id(p) for p in network.arch_parameters()}
    return ((n, p) for n, p in network.named_parameters() if id(p) not in arch)


class Supernet(nn.Module, Generic[Arch]):
    """Base class of the supernets: mixed edges everywhere, weighted through ``relaxation``; ``Arch`` is the
    type of the answers it derives and runs as single paths.

    Subclasses define the architecture parameters (:meth:`named_arch_parameters`, :meth:`alphas`), the
    forward pass, how the answer is derived (:meth:`derive`) and how an answer runs as a single path
    (:meth:`path`).
    """

    op_names: tuple[str, ...]

    def __init__(self, relaxation: Relaxation) -> None:
        super().__init__()
        self.relaxation = relaxation
        #: (seed, step, phase) of the noise of the following forward passes (see :meth:`set_sample_key`)
        self.sample_key: tuple[int, int, int] = (0, 0, 0)
        #: DARTS-: the weight of every mixed edge's auxiliary skip connection (0: off)
        self.auxiliary_skip_weight = 0.0

    # ------------------------------------------------------------------ sampling

    def set_sample_key(self, seed: int, step: int, phase: int) -> None:
        """Seed the noise of the following forward passes: the same key draws the same sample."""
        self.sample_key = (int(seed), int(step), int(phase))

    def sample_seed(self, name: str) -> int:
        """The seed of the noise for the current sample key and the stream ``name`` (a cell type)."""
        seed, step, phase = self.sample_key
        return ((seed * 1_000_003 + step) * 7919 + phase * 104_729 + zlib.crc32(name.encode())) % (2**63 - 1)

    def generator(self, name: str) -> torch.Generator:
        """A CPU generator seeded with :meth:`sample_seed`."""
        return torch.Generator().manual_seed(self.sample_seed(name))

    # ------------------------------------------------------------------ parameters

    def named_arch_parameters(self) -> dict[str, nn.Parameter]:
        """The architecture parameters by attribute name (α, and β under edge normalisation)."""
        raise NotImplementedError

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.named_arch_parameters().values())

    def alphas(self) -> dict[str, Tensor]:
        """The op logits α per cell type (``{"normal": ..., "reduce": ...}``)."""
        raise NotImplementedError

    def named_weight_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return named_weight_parameters(self)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the architecture parameters: the weights w."""
        return [p for _, p in self.named_weight_parameters()]

    def cell_weights(self, detach: bool = True) -> dict[str, Tensor]:
        """Expected mixing weights ``[edges, ops]`` per cell type (softmax(α) for DARTS), for logging."""
        weights = {cell: self.relaxation.expected_weights(alpha) for cell, alpha in self.alphas().items()}
        return {k: v.detach() for k, v in weights.items()} if detach else weights

    def edge_labels(self) -> list[str]:
        """A label per edge (row of α), ``"<source>-<target>"``."""
        raise NotImplementedError

    def edge_op_names(self) -> dict[str, list[tuple[str, ...]]]:
        """The op of every column of α, per cell type and edge (row of α): :attr:`op_names` on every edge,
        unless the space gives each edge its own candidates (R-DARTS's S1), where column ``j`` of an edge is
        that edge's ``j``-th op. Diagnostics and derivation name the columns by it."""
        rows = len(self.edge_labels())
        return {cell: [tuple(self.op_names)] * rows for cell in self.alphas()}

    # ------------------------------------------------------------------ forward and answers

    def forward(self, x: Tensor, detach_alpha: bool = False, path: Mapping[str, Tensor] | None = None) -> Tensor:
        """Logits for ``x``. ``detach_alpha``: α is a constant (the weight step). ``path``: run one
        architecture, ``{cell type: [edges, ops] rows}`` from :meth:`path`, instead of the relaxation's mixing."""
        raise NotImplementedError

    def derive(self) -> Arch:
        """The discrete answer the architecture parameters describe, by the space's rule."""
        raise NotImplementedError

    def path(self, arch: Arch) -> dict[str, Tensor]:
        """The rows that run ``arch`` alone: per cell type, ``[edges, ops]`` on the CPU, one-hot on the op of
        every edge ``arch`` has, zero on the edges it does not have."""
        raise NotImplementedError

    def expected_path(self, weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The expected :meth:`path` of the derived answer for mixing ``weights`` ``[edges, ops]`` per cell type:
        how much of each op of each edge the answer is expected to keep, differentiable in the weights. A space
        whose answer keeps every edge with its strongest op expects the weights themselves (the default); the
        DARTS space weights each edge by the chance that its node keeps it. The hardware-aware searches price
        it (:meth:`darts_lightning.costs.CostTable.cost`)."""
        return dict(weights)

    def space_signature(self) -> dict[str, Any]:
        """What a checkpoint must match to be loaded into this supernet."""
        raise NotImplementedError
