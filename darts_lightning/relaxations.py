"""Relaxations of the mixed edge: how architecture parameters α become a mixture of candidate ops.

A relaxation is a strategy object that the mixed edges of a supernet share. It answers two questions:

* :meth:`Relaxation.edge_weights`: which mixing weights the cells use this step, from α
  (DARTS: ``softmax(α)`` per edge, eq. 1 of Liu et al., ICLR 2019);
* :meth:`Relaxation.mix`: how one edge combines its ops given its row of weights
  (DARTS: the weighted sum of every op's output).

Other members of the DARTS family change only these two answers (hard Gumbel sampling that computes a
single op, Dirichlet-sampled weights, partial channels, single-path sampling), so they plug in here
without touching the cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .edges import MixedEdge

__all__ = ["Relaxation", "SoftmaxRelaxation", "register_relaxation", "list_relaxations", "build_relaxation"]


class Relaxation:
    """Base class of the mixed-edge relaxations."""

    name: str = "base"

    def edge_weights(self, alpha: Tensor) -> Tensor:
        """Mixing weights ``[edges, ops]`` from the logits ``alpha`` of one cell type."""
        raise NotImplementedError

    def mix(self, edge: "MixedEdge", x: Tensor, weights: Tensor) -> Tensor:
        """The output of ``edge`` on ``x`` given its weight row ``weights`` ``[ops]``."""
        raise NotImplementedError

    def op_channels(self, channels: int) -> int:
        """How many channels the candidate ops of an edge carrying ``channels`` channels see."""
        return channels

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxRelaxation(Relaxation):
    """DARTS's continuous relaxation: ō(x) = Σ_o softmax(α)_o · o(x) (Liu et al., eq. 1).

    The ``none`` op is never called: its output is zero, so it only takes softmax mass.
    """

    name = "darts"

    def edge_weights(self, alpha: Tensor) -> Tensor:
        return torch.softmax(alpha, dim=-1)

    def mix(self, edge: "MixedEdge", x: Tensor, weights: Tensor) -> Tensor:
        out = None
        for index, y in edge.candidate_outputs(x):
            term = weights[index] * y
            out = term if out is None else out + term
        return edge.zeros(x) if out is None else out


_RELAXATIONS: dict[str, Callable[[], Relaxation]] = {}


def register_relaxation(name: str, factory: Callable[[], Relaxation]) -> None:
    """Register a relaxation so that configs can name it."""
    if name in _RELAXATIONS:
        raise ValueError(f"relaxation {name!r} is already registered")
    _RELAXATIONS[name] = factory


def list_relaxations() -> list[str]:
    return sorted(_RELAXATIONS)


def build_relaxation(relaxation: str | Relaxation) -> Relaxation:
    """A relaxation instance from its registered name (or the instance itself)."""
    if isinstance(relaxation, Relaxation):
        return relaxation
    if relaxation not in _RELAXATIONS:
        raise ValueError(f"unknown relaxation {relaxation!r}; valid relaxations are: {', '.join(list_relaxations())}")
    return _RELAXATIONS[relaxation]()


register_relaxation("darts", SoftmaxRelaxation)
