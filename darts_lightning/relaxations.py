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

from contextlib import contextmanager
from itertools import islice
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Registry

if TYPE_CHECKING:
    from .edges import MixedEdge

__all__ = ["Relaxation", "SoftmaxRelaxation", "SinglePathRelaxation", "register_relaxation", "list_relaxations", "build_relaxation"]


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


class SinglePathRelaxation(Relaxation):
    """Single-path weight sharing: every mixed edge computes only the op of one sampled architecture.

    Random search with weight sharing (Li & Talwalkar, "Random Search and Reproducibility for Neural
    Architecture Search", UAI 2019) and single-path one-shot NAS (Guo et al., ECCV 2020) train a supernet
    by sampling one architecture per step and running only its ops. Mixing every op, as DARTS does, would
    cost all ops' compute and train them on each other's outputs; one op per edge trains the weights as
    the sampled network would use them.

    α is not read. The path is installed with :meth:`use_path`: for each architecture tensor the network
    passes to :meth:`edge_weights` (matched by identity), one row per edge that is one-hot on the chosen
    op's column, or all zeros for an edge the architecture does not have (the DARTS cell keeps two of
    the dense edges into each node). :meth:`mix` then calls the chosen op only: ``none`` gives the zeros
    of :meth:`MixedEdge.zeros` (as the fixed ``none`` op does), an absent edge gives zeros that are not
    connected to the input (the edge does not exist in the sampled network, so nothing upstream is
    trained through it), and the op's output is used unscaled.
    """

    name = "single_path"

    def __init__(self) -> None:
        self._path: list[tuple[Tensor, Tensor]] = []

    @contextmanager
    def use_path(self, rows: Sequence[tuple[Tensor, Tensor]]) -> Iterator[None]:
        """Run the network on one path: ``rows`` pairs each architecture tensor with its ``[edges, ops]``
        one-hot rows. Keep the rows on the CPU: :meth:`mix` reads the chosen column from them."""
        previous = self._path
        self._path = list(rows)
        try:
            yield
        finally:
            self._path = previous

    def edge_weights(self, alpha: Tensor) -> Tensor:
        for key, rows in self._path:
            if key is alpha:
                return rows
        raise RuntimeError(
            "the single-path relaxation has no path for this architecture parameter: run the network inside "
            "relaxation.use_path(...) (darts_lightning.weight_sharing.SinglePathSupernet does this every step)"
        )

    def mix(self, edge: "MixedEdge", x: Tensor, weights: Tensor) -> Tensor:
        column = int(torch.argmax(weights))
        if float(weights[column]) == 0.0:
            return torch.zeros_like(x[:, :, :: edge.stride, :: edge.stride])
        if column not in edge.op_indices:
            return edge.zeros(x)
        op = edge.ops[edge.op_indices.index(column)]
        # As MixedEdge.candidate_outputs: an op that begins with a ReLU gets a fresh F.relu of the input,
        # so that an in-place ReLU of a registered op cannot overwrite the state other edges read.
        if isinstance(op, nn.Sequential) and len(op) > 1 and isinstance(op[0], nn.ReLU):
            out = F.relu(x)
            for layer in islice(op, 1, None):
                out = layer(out)
            return out
        return op(x)


_RELAXATIONS: Registry[Relaxation] = Registry("relaxation")


def register_relaxation(name: str, factory: Callable[[], Relaxation]) -> None:
    """Register a relaxation so that configs can name it."""
    _RELAXATIONS.register(name, factory)


def list_relaxations() -> list[str]:
    return _RELAXATIONS.names()


def build_relaxation(relaxation: str | Relaxation) -> Relaxation:
    """A relaxation instance from its registered name (or the instance itself)."""
    if isinstance(relaxation, Relaxation):
        return relaxation
    return _RELAXATIONS.build(relaxation)


register_relaxation("darts", SoftmaxRelaxation)
register_relaxation("single_path", SinglePathRelaxation)
