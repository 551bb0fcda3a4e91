"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020), built from the package's cell code.

A cell has one input (state 0) and three nodes; node i sums one edge from every earlier state, and the
output is node 3. The six edges take one op each from ``none``, ``skip_connect``, ``nor_conv_1x1``,
``nor_conv_3x3``, ``avg_pool_3x3`` (the convolutions are ReLU → conv → BN): 5⁶ = 15,625 cells. The
network: a 3×3 conv stem, three stages of five cells at 16, 32 and 64 channels separated by residual
reduction blocks, batch norm and ReLU, global pooling and a linear classifier.

:class:`NB201Arch` is a cell, readable from and writable to the benchmark's string format
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``
(node 1 | node 2 | node 3, each ``op~j`` an edge from state j).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from .cell import Cell, dense_edges
from .edges import FixedEdge, MixedEdge
from .network import named_weight_parameters
from .ops import NB201_OPS, ReLUConvBN
from .relaxations import Relaxation, build_relaxation

__all__ = ["NB201Arch", "NB201_EDGES", "NB201Network", "ResidualReduction", "nb201_cell"]

NB201_EDGES: tuple[tuple[int, int], ...] = tuple(dense_edges(3, num_inputs=1))
"""``(source, target)`` of the six edges, in the benchmark string's order."""


@dataclass(frozen=True)
class NB201Arch:
    """One NAS-Bench-201 cell: the op of each of the six edges, in :data:`NB201_EDGES` order."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        if len(ops) != len(NB201_EDGES):
            raise ValueError(f"a NAS-Bench-201 cell has {len(NB201_EDGES)} edges, got {len(ops)} ops")
        unknown = [op for op in ops if op not in NB201_OPS]
        if unknown:
            raise ValueError(f"ops {unknown} are not in the NAS-Bench-201 space; valid ops are: {', '.join(NB201_OPS)}")
        object.__setattr__(self, "ops", ops)

    # ------------------------------------------------------------------ string format

    @classmethod
    def parse(cls, text: str) -> "NB201Arch":
        """Read ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; a clear error names what does not fit."""
        text = text.strip()
        nodes = text.split("+")
        if len(nodes) != 3:
            raise ValueError(f"a NAS-Bench-201 cell string has 3 nodes separated by '+', got {len(nodes)}: {text!r}")
        ops = []
        for node, part in enumerate(nodes, start=1):
            if not (part.startswith("|") and part.endswith("|")):
                raise ValueError(f"node {node} of {text!r} must be written '|op~j|...|', got {part!r}")
            edges = part[1:-1].split("|")
            if len(edges) != node:
                raise ValueError(f"node {node} of {text!r} must have {node} edges, got {len(edges)}")
            for source, edge in enumerate(edges):
                op, sep, index = edge.partition("~")
                if not sep or index != str(source):
                    raise ValueError(f"edge {edge!r} of node {node} in {text!r} must read '<op>~{source}'")
                ops.append(op)
        return cls(tuple(ops))

    def __str__(self) -> str:
        parts, k = [], 0
        for node in range(1, 4):
            parts.append("|" + "|".join(f"{self.ops[k + j]}~{j}" for j in range(node)) + "|")
            k += node
        return "+".join(parts)

    @classmethod
    def from_alpha(cls, alpha: Tensor) -> "NB201Arch":
        """The strongest op of every edge (``none`` included, as in NAS-Bench-201's DARTS baselines)."""
        return cls(tuple(NB201_OPS[i] for i in alpha.detach().argmax(dim=-1).tolist()))

    # ------------------------------------------------------------------ sampling and variation

    @classmethod
    def sample(cls, generator: random.Random) -> "NB201Arch":
        """A cell drawn uniformly from the 15,625."""
        return cls(tuple(generator.choice(NB201_OPS) for _ in NB201_EDGES))

    def neighbours(self) -> Iterator["NB201Arch"]:
        """Every cell that differs in exactly one edge's op (24 of them)."""
        for k, current in enumerate(self.ops):
            for op in NB201_OPS:
                if op != current:
                    yield NB201Arch(self.ops[:k] + (op,) + self.ops[k + 1 :])

    def mutate(self, generator: random.Random) -> "NB201Arch":
        """Change the op of one uniformly chosen edge to a different op."""
        k = generator.randrange(len(self.ops))
        op = generator.choice([o for o in NB201_OPS if o != self.ops[k]])
        return NB201Arch(self.ops[:k] + (op,) + self.ops[k + 1 :])

    def crossover(self, other: "NB201Arch", generator: random.Random) -> "NB201Arch":
        """Uniform crossover: each edge's op from one of the two parents."""
        return NB201Arch(tuple(a if generator.random() < 0.5 else b for a, b in zip(self.ops, other.ops)))

    # ------------------------------------------------------------------ isomorphism

    def canonical_key(self) -> str:
        """A string equal for cells that compute the same function.

        Each state is written as the expression it computes from the input ``x``: a node is the sorted
        sum of its non-``none`` edges (sums commute), a ``skip_connect`` passes its source's expression
        on, and a node whose edges are all ``none`` (or come from zero states) is zero. The key is the
        output node's expression, so edges that cannot reach the output do not count.
        """
        expressions = ["x"]
        k = 0
        for node in range(1, 4):
            terms = []
            for source in range(node):
                op, value = self.ops[k + source], expressions[source]
                if op == "none" or value == "0":
                    continue
                terms.append(value if op == "skip_connect" else f"{op}({value})")
            k += node
            expressions.append("+".join(sorted(terms)) if terms else "0")
            if len(terms) > 1:
                expressions[-1] = f"[{expressions[-1]}]"
        return expressions[-1]


def nb201_cell(
    channels: int, arch: NB201Arch | None, relaxation: Relaxation | None = None, affine: bool = True,
    auxiliary_skip: bool = False, pool_batch_norm: bool = False,
) -> Cell:
    """A NAS-Bench-201 cell: fixed edges for ``arch``, or mixed edges over all ops when ``arch`` is None.

    ``pool_batch_norm``: a non-affine batch norm after the mixed edges' ``avg_pool_3x3``. The benchmark's
    search cells have none (AutoDL-Projects, commit f46486e, xautodl/models/cell_searchs/search_cells.py,
    ``NAS201SearchCell``, with ``POOLING`` of xautodl/models/cell_operations.py: no batch norm when the
    input and output widths agree), nor have DrNAS's (xiangning-chen/DrNAS, commit f2caa4d, 201-space).
    """
    if arch is None:
        relaxation = relaxation or build_relaxation("darts")
        modules = [
            MixedEdge(NB201_OPS, channels, 1, relaxation, auxiliary_skip=auxiliary_skip, pool_batch_norm=pool_batch_norm)
            for _ in NB201_EDGES
        ]
    else:
        modules = [FixedEdge(op, channels, 1, affine=affine) for op in arch.ops]
    return Cell([nn.Identity()], NB201_EDGES, modules, concat=[3])


class ResidualReduction(nn.Module):
    """The residual block between stages: two 3×3 ReLU-conv-BN (the first strided), plus a 2×2 average
    pool and 1×1 conv on the shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NAS-Bench-201 network for one cell (``arch``), or its supernet (``arch=None``: mixed edges
    weighted by ``softmax(alpha)``, α of shape [6, 5]; ``pool_batch_norm``: see :func:`nb201_cell`)."""

    def __init__(
        self,
        arch: NB201Arch | str | None,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64),
        cells_per_stage: int = 5,
        relaxation: str | Relaxation = "darts",
        relaxation_args: dict | None = None,
        auxiliary_skip: bool = False,
        pool_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(arch, str):
            arch = NB201Arch.parse(arch)
        self.arch = arch
        self.channels, self.cells_per_stage = list(channels), cells_per_stage
        self.relaxation = build_relaxation(relaxation, **(relaxation_args or {})) if arch is None else None
        self.auxiliary_skip = bool(auxiliary_skip) and arch is None
        self.pool_batch_norm = bool(pool_batch_norm) and arch is None
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False), nn.BatchNorm2d(channels[0]))
        layers: list[nn.Module] = []
        for stage, c in enumerate(channels):
            if stage > 0:
                layers.append(ResidualReduction(channels[stage - 1], c))
            layers += [
                nb201_cell(c, arch, self.relaxation, affine=arch is not None, auxiliary_skip=self.auxiliary_skip,
                           pool_batch_norm=self.pool_batch_norm)
                for _ in range(cells_per_stage)
            ]
        self.layers = nn.ModuleList(layers)
        self.last = nn.Sequential(nn.BatchNorm2d(channels[-1]), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels[-1], num_classes)
        if arch is None:
            self.alpha = nn.Parameter(1e-3 * torch.randn(len(NB201_EDGES), len(NB201_OPS)))

    # The interface of a searchable network (as :class:`~darts_lightning.network.SearchNetwork`).

    @property
    def op_names(self) -> tuple[str, ...]:
        return NB201_OPS

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha] if self.arch is None else []

    def named_arch_parameters(self) -> dict[str, nn.Parameter]:
        return {"alpha": self.alpha} if self.arch is None else {}

    def alphas(self) -> dict[str, Tensor]:
        return {"cell": self.alpha} if self.arch is None else {}

    def named_weight_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return named_weight_parameters(self)

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_weight_parameters()]

    def cell_weights(self, detach: bool = True) -> dict[str, Tensor]:
        weights = self.relaxation.expected_weights(self.alpha)
        return {"cell": weights.detach() if detach else weights}

    def edge_labels(self) -> list[str]:
        return [f"{src}-{dst}" for src, dst in NB201_EDGES]

    @staticmethod
    def derived_ops(arch: NB201Arch) -> dict[str, list[str]]:
        return {"cell": list(arch.ops)}

    def space_signature(self) -> dict:
        return {"space": "nasbench201", "op_names": list(NB201_OPS), "channels": self.channels,
                "cells_per_stage": self.cells_per_stage, "relaxation": self.relaxation.name if self.relaxation else None,
                "relaxation_args": self.relaxation.describe() if self.relaxation else None,
                "auxiliary_skip": self.auxiliary_skip, "pool_batch_norm": self.pool_batch_norm}

    def forward(self, x: Tensor, detach_alpha: bool = False) -> Tensor:
        weights = columns = None
        if self.arch is None:
            weights = self.relaxation.edge_weights(self.alpha, "cell")
            weights = weights.detach() if detach_alpha else weights
            columns = self.relaxation.sampled_columns("cell")
        out = self.stem(x)
        for layer in self.layers:
            out = layer((out,), weights, None, columns) if isinstance(layer, Cell) else layer(out)
        return self.classifier(torch.flatten(self.global_pooling(self.last(out)), 1))

    def derive(self) -> NB201Arch:
        """The supernet's cell: the strongest op of every edge (``none`` included, as in NAS-Bench-201)."""
        return self.arch if self.arch is not None else NB201Arch.from_alpha(self.alpha)
