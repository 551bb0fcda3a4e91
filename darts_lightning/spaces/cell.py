"""The cell: one implementation for the supernet and for the network a genotype describes.

A cell is a directed acyclic graph over *states*. States ``0 .. num_inputs-1`` are the cell's
(preprocessed) inputs; each later state is an intermediate node that sums one edge from each of its
predecessors (DARTS, Liu et al., eq. 2: x_j = Σ_{i<j} o^{(i,j)}(x_i)). The output concatenates the
states listed in ``concat`` along channels.

An edge is a :class:`~darts_lightning.spaces.edges.MixedEdge` in the supernet and a
:class:`~darts_lightning.spaces.edges.FixedEdge` in a derived network; the cell does not care which.
:class:`SearchCell` and :class:`GenotypeCell` only build the DARTS topologies; they share
:meth:`Cell.forward`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from darts_lightning.spaces.edges import FixedEdge, MixedEdge, drop_path
from darts_lightning.spaces.mixing import Relaxation
from darts_lightning.spaces.ops import FactorizedReduce, ReLUConvBN

__all__ = ["Cell", "SearchCell", "GenotypeCell", "dense_edges", "edge_labels", "darts_preprocess"]


def dense_edges(nodes: int, num_inputs: int = 2) -> list[tuple[int, int]]:
    """All ``(source, target)`` state pairs of a dense cell, in the DARTS order of the rows of α."""
    return [(src, num_inputs + i) for i in range(nodes) for src in range(num_inputs + i)]


def edge_labels(nodes: int, num_inputs: int = 2) -> list[str]:
    """``"<source>-<target>"`` state labels of the edges of a dense cell, in α's row order."""
    return [f"{src}-{dst}" for src, dst in dense_edges(nodes, num_inputs)]


class Cell(nn.Module):
    """A cell over ``len(preprocess)`` inputs with the given edges.

    Args:
        preprocess: one module per input, mapping it to the cell's channel count.
        edges: ``(source, target)`` state index of each edge; its position is its row in the weights.
        edge_modules: the module of each edge, called as ``module(x, weight_row)``.
        concat: the states concatenated into the output.
        reduction: whether the cell halves the spatial size (its input edges have stride 2).
    """

    def __init__(
        self,
        preprocess: Sequence[nn.Module],
        edges: Sequence[tuple[int, int]],
        edge_modules: Sequence[nn.Module],
        concat: Sequence[int],
        reduction: bool = False,
    ) -> None:
        super().__init__()
        if len(edges) != len(edge_modules):
            raise ValueError(f"{len(edges)} edges but {len(edge_modules)} edge modules")
        self.preprocess = nn.ModuleList(preprocess)
        self.num_inputs = len(preprocess)
        self.edge_list: tuple[tuple[int, int], ...] = tuple((int(s), int(t)) for s, t in edges)
        self.edges = nn.ModuleList(edge_modules)
        self.nodes = max(t for _, t in self.edge_list) - self.num_inputs + 1 if self.edge_list else 0
        for src, dst in self.edge_list:
            if not (0 <= src < dst and self.num_inputs <= dst < self.num_inputs + self.nodes):
                raise ValueError(f"edge {src}->{dst} does not fit a cell with {self.num_inputs} inputs")
        for state in concat:
            if not 0 <= state < self.num_inputs + self.nodes:
                last = self.num_inputs + self.nodes - 1
                raise ValueError(f"concat state {state} does not exist (the cell has states 0..{last})")
        self.concat = tuple(int(s) for s in concat)
        self.reduction = reduction
        self._incoming: list[list[int]] = [
            [k for k, (_, dst) in enumerate(self.edge_list) if dst == node]
            for node in range(self.num_inputs, self.num_inputs + self.nodes)
        ]

    def forward(
        self,
        inputs: Sequence[Tensor],
        weights: Tensor | None = None,
        edge_scales: Tensor | None = None,
        columns: Sequence[int] | None = None,
        drop_masks: Tensor | None = None,
        drop_prob: float = 0.0,
        skip_weight: float = 0.0,
    ) -> Tensor:
        """Run the cell.

        Args:
            inputs: the cell's inputs (the two previous cells' outputs in a DARTS cell).
            weights: ``[edges, ops]`` mixing weights for mixed edges; ``None`` for fixed edges.
            edge_scales: optional ``[edges]`` factor per mixed edge (edge normalisation), passed to the edge.
            columns: optional op column per mixed edge that a sampling relaxation picked, known on the host
                (GDAS), passed to the edge.
            drop_masks, drop_prob: drop-path on the mixed edges during the search, as SNAS's supernet does
                (SNAS-Series, commit 9a43adb, SNAS/model_search.py, lines 104-106): edge ``k``'s output is
                divided by ``1 - drop_prob`` and multiplied by ``drop_masks[k]``, a ``[batch]`` 0/1 keep mask.
            skip_weight: the weight of the mixed edges' auxiliary skip connections (DARTS-), passed to the edge.
        """
        states = [pre(x) for pre, x in zip(self.preprocess, inputs)]
        for incoming in self._incoming:
            total = None
            for k in incoming:
                x = states[self.edge_list[k][0]]
                if weights is None:  # fixed edges
                    out = self.edges[k](x)
                else:  # mixed edges take their weights, scale, sampled column and skip weight (MixedEdge.forward)
                    out = self.edges[k](
                        x, weights[k], None if edge_scales is None else edge_scales[k],
                        None if columns is None else columns[k], skip_weight,
                    )
                if drop_masks is not None:
                    out = drop_path(out, drop_prob, drop_masks[k])
                total = out if total is None else total + out
            states.append(total)
        if len(self.concat) == 1:
            return states[self.concat[0]]
        return torch.cat([states[i] for i in self.concat], dim=1)


def darts_preprocess(c_pp: int, c_p: int, c: int, reduction_prev: bool, affine: bool) -> list[nn.Module]:
    """DARTS cell inputs: the cell two back (spatially reduced if the previous cell reduced) and the previous one."""
    pre0 = FactorizedReduce(c_pp, c, affine=affine) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine=affine)
    return [pre0, ReLUConvBN(c_p, c, 1, 1, 0, affine=affine)]


class SearchCell(Cell):
    """A DARTS supernet cell: every node takes a mixed edge from every earlier state (``pool_batch_norm``:
    see :class:`~darts_lightning.spaces.edges.MixedEdge`). Every edge has the candidates ``op_names``, or,
    with ``edge_ops``, edge ``k`` (in :func:`dense_edges` order) has ``edge_ops[k]`` (R-DARTS's S1)."""

    def __init__(
        self,
        c_pp: int,
        c_p: int,
        c: int,
        *,
        reduction: bool,
        reduction_prev: bool,
        nodes: int,
        multiplier: int,
        op_names: Sequence[str],
        relaxation: Relaxation,
        auxiliary_skip: bool = False,
        pool_batch_norm: bool = True,
        edge_ops: Sequence[Sequence[str]] | None = None,
    ) -> None:
        if not 1 <= multiplier <= nodes:
            raise ValueError(f"multiplier must lie in 1..nodes={nodes}, got {multiplier}")
        edges = dense_edges(nodes)
        if edge_ops is not None and len(edge_ops) != len(edges):
            raise ValueError(f"edge_ops names the ops of {len(edge_ops)} edges; a cell of {nodes} nodes has {len(edges)}")
        modules = [
            MixedEdge(
                op_names if edge_ops is None else edge_ops[k], c, 2 if reduction and src < 2 else 1, relaxation,
                auxiliary_skip=auxiliary_skip, pool_batch_norm=pool_batch_norm,
            )
            for k, (src, _) in enumerate(edges)
        ]
        concat = range(2 + nodes - multiplier, 2 + nodes)
        super().__init__(darts_preprocess(c_pp, c_p, c, reduction_prev, affine=False), edges, modules, concat, reduction)


class GenotypeCell(Cell):
    """A DARTS cell with the fixed edges of a genotype: ``ops[k]`` from state ``inputs[k]`` into node ``k // 2``."""

    def __init__(
        self,
        c_pp: int,
        c_p: int,
        c: int,
        *,
        edges: Sequence[tuple[str, int]],
        concat: Sequence[int],
        reduction: bool,
        reduction_prev: bool,
        affine: bool = True,
    ) -> None:
        if len(edges) % 2:
            raise ValueError(f"a DARTS genotype has two edges per node, got {len(edges)} edges")
        topology = [(src, 2 + k // 2) for k, (_, src) in enumerate(edges)]
        modules = [
            FixedEdge(op, c, 2 if reduction and src < 2 else 1, affine=affine)
            for (op, src) in edges
        ]
        super().__init__(darts_preprocess(c_pp, c_p, c, reduction_prev, affine=affine), topology, modules, concat, reduction)
