"""The contract between a supernet's mixed edges and a relaxation: how architecture parameters α become
a mixture of candidate ops.

A :class:`Relaxation` answers, for the mixed edges of one supernet:

* :meth:`Relaxation.mixing`: the mixing weights of one forward pass, from the logits α of one cell type and
  a seeded generator (DARTS: ``softmax(α)`` per edge, eq. 1 of Liu et al., ICLR 2019; sampling relaxations:
  a sample), together with the op each edge computes when it computes only one (GDAS), known on the host;
* :meth:`Relaxation.expected_weights`: the deterministic weights that are logged (softmax(α) by default),
  and :meth:`Relaxation.derivation_weights`, those the answer is derived from (softmax(α));
* :meth:`Relaxation.mix`: how one edge combines its ops given its row of weights;
* :attr:`Relaxation.partial_channels`: PC-DARTS's partial channel connections (Xu et al., ICLR 2020): only
  ``1/K`` of an edge's channels go through the ops (:meth:`darts_lightning.spaces.edges.MixedEdge.forward`
  splits and shuffles the channels).

Nothing of a forward pass is kept in the relaxation: the generator (seeded by the supernet from the
search's sample key), the weights and the sampled columns travel as arguments and return values. A
relaxation keeps only its configuration and its own schedule (a temperature annealed by epoch).

:class:`SoftmaxRelaxation` is DARTS's, the relaxation that defines the mixed op; the sampling relaxations
of the DARTS family are in :mod:`darts_lightning.differentiable.relaxations`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from darts_lightning.utils.components import Component
from darts_lightning.utils.validation import check_range

__all__ = ["Relaxation", "SoftmaxRelaxation", "Mixing", "EdgeOps", "channel_shuffle", "weighted_sum"]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet, Zhang et al., CVPR 2018).

    PC-DARTS shuffles an edge's output so that a different quarter of the channels goes through the
    ops at the next edge.
    """
    b, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"cannot shuffle {c} channels into {groups} groups")
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class Mixing(NamedTuple):
    """The mixing of one cell type for one forward pass."""

    weights: Tensor
    """``[edges, ops]`` weights, on α's device and in α's dtype (rows of a single path: on the CPU)."""
    columns: list[int] | None = None
    """The op column each edge computes alone (GDAS), known on the host; ``None`` when edges mix every op."""


class EdgeOps(Protocol):
    """What a relaxation may ask of a mixed edge (:class:`darts_lightning.spaces.edges.MixedEdge`)."""

    stride: int

    def weighted_outputs(self, x: Tensor, weights: Tensor) -> Iterator[tuple[int, Tensor]]: ...

    def op_output(self, column: int, x: Tensor) -> Tensor: ...

    def zeros(self, x: Tensor) -> Tensor: ...


def weighted_sum(edge: EdgeOps, x: Tensor, weights: Tensor) -> Tensor:
    """Σ_o weights[o] · o(x) over the ops that compute something (zeros when none does)."""
    out = None
    for _, term in edge.weighted_outputs(x, weights):
        out = term if out is None else out + term
    return edge.zeros(x) if out is None else out


class Relaxation(Component):
    """Base class of the mixed-edge relaxations.

    Args:
        partial_channels: K of PC-DARTS: ``1/K`` of every mixed edge's channels go through its ops (1: all).
    """

    name: str = "base"
    #: leaves ops of some edges uncomputed in a step (DDP then needs ``find_unused_parameters``)
    computes_subset: bool = False
    #: draws noise: :meth:`mixing` is given a seeded generator (otherwise ``None``, and a compiled supernet
    #: does not depend on the sample key)
    samples: bool = False
    #: the supernet only ever runs single paths (``network(x, path=network.path(arch))``) and never the
    #: mixture: the architecture parameters are not used, and a space refuses options that act only through
    #: them (PC-DARTS's edge normalisation)
    paths_only: bool = False

    def __init__(self, partial_channels: int = 1) -> None:
        check_range("partial_channels", partial_channels, 1, integer=True, hint="K of PC-DARTS; 1: every channel")
        self.partial_channels = int(partial_channels)

    # ------------------------------------------------------------------ what the cells use

    def mixing(self, alpha: Tensor, generator: torch.Generator | None) -> Mixing:
        """The mixing of one forward pass for the logits ``alpha`` ``[edges, ops]`` of one cell type;
        ``generator``: a seeded CPU generator for a relaxation that :attr:`samples`, otherwise ``None``."""
        raise NotImplementedError

    def expected_weights(self, alpha: Tensor) -> Tensor:
        """Deterministic weights ``[edges, ops]`` that are logged (default: ``softmax(α)``)."""
        return torch.softmax(alpha, dim=-1)

    def derivation_weights(self, alpha: Tensor) -> Tensor:
        """The weights the answer is derived from (``softmax(α)``, as every method's published code does)."""
        return torch.softmax(alpha, dim=-1)

    def mix(self, edge: EdgeOps, x: Tensor, weights: Tensor, column: int | None = None) -> Tensor:
        """The output of ``edge`` on ``x`` given its weight row ``weights`` ``[ops]``; ``column``: the op the
        edge computes alone, when :meth:`mixing` named one (a host integer, never read back from the device)."""
        raise NotImplementedError

    def op_channels(self, channels: int) -> int:
        """How many channels the candidate ops of an edge carrying ``channels`` channels see."""
        if channels % self.partial_channels:
            raise ValueError(
                f"partial channel connections with K={self.partial_channels} need a channel count divisible by K, "
                f"but an edge carries {channels} channels; choose channels divisible by K"
            )
        return channels // self.partial_channels

    def regularizer(self, alpha: Tensor) -> Tensor | None:
        """An extra term of the architecture loss for ``alpha`` (DrNAS's KL term), or ``None``."""
        return None

    # ------------------------------------------------------------------ the relaxation's own schedule

    def update_schedule(self, epoch: int, epochs: int) -> None:
        """Called at the start of every epoch (temperature annealing)."""

    def schedule_values(self) -> dict[str, float]:
        """The schedule's current values, logged as ``arch/<name>`` (``{"temperature": τ}``)."""
        return {}

    def describe(self) -> dict[str, object]:
        """What a checkpoint records of this relaxation (it must match to resume)."""
        return {"name": self.name, "partial_channels": self.partial_channels}


class SoftmaxRelaxation(Relaxation):
    """DARTS's continuous relaxation: ō(x) = Σ_o softmax(α)_o · o(x) (Liu et al., eq. 1).

    With ``partial_channels=4`` this is PC-DARTS's mixed op (registered as ``pcdarts``). The ``none``
    op is never called: its output is zero, so it only takes softmax mass.
    """

    name = "darts"

    def mixing(self, alpha: Tensor, generator: torch.Generator | None) -> Mixing:
        return Mixing(torch.softmax(alpha, dim=-1))

    def mix(self, edge: EdgeOps, x: Tensor, weights: Tensor, column: int | None = None) -> Tensor:
        return weighted_sum(edge, x, weights)
