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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from darts_lightning.spaces.base import OpSite, SearchSpace, register_space
from darts_lightning.spaces.cell import Cell, dense_edges
from darts_lightning.spaces.edges import FixedEdge, MixedEdge
from darts_lightning.spaces.mixing import Mixing, Relaxation, SoftmaxRelaxation
from darts_lightning.spaces.ops import NB201_OPS, ReLUConvBN
from darts_lightning.spaces.supernet import Supernet
from darts_lightning.utils.validation import check_choice, check_range

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "NB201Arch", "NB201_EDGES", "NB201Network", "NB201Supernet", "NB201Space", "ResidualReduction", "nb201_cell",
    "check_nb201_image_size",
]

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
    def parse(cls, text: str) -> NB201Arch:
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
    def from_alpha(cls, alpha: Tensor) -> NB201Arch:
        """The strongest op of every edge (``none`` included, as in NAS-Bench-201's DARTS baselines)."""
        return cls(tuple(NB201_OPS[i] for i in alpha.detach().argmax(dim=-1).tolist()))

    # ------------------------------------------------------------------ sampling and variation

    @classmethod
    def sample(cls, generator: random.Random) -> NB201Arch:
        """A cell drawn uniformly from the 15,625."""
        return cls(tuple(generator.choice(NB201_OPS) for _ in NB201_EDGES))

    def neighbours(self) -> Iterator[NB201Arch]:
        """Every cell that differs in exactly one edge's op (24 of them)."""
        for k, current in enumerate(self.ops):
            for op in NB201_OPS:
                if op != current:
                    yield NB201Arch(self.ops[:k] + (op,) + self.ops[k + 1 :])

    def mutate(self, generator: random.Random) -> NB201Arch:
        """Change the op of one uniformly chosen edge to a different op."""
        k = generator.randrange(len(self.ops))
        op = generator.choice([o for o in NB201_OPS if o != self.ops[k]])
        return NB201Arch(self.ops[:k] + (op,) + self.ops[k + 1 :])

    def crossover(self, other: NB201Arch, generator: random.Random) -> NB201Arch:
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
        relaxation = SoftmaxRelaxation() if relaxation is None else relaxation
        modules: list[nn.Module] = [
            MixedEdge(NB201_OPS, channels, 1, relaxation, auxiliary_skip=auxiliary_skip, pool_batch_norm=pool_batch_norm)
            for _ in NB201_EDGES
        ]
    else:
        modules = [FixedEdge(op, channels, 1, affine=affine) for op in arch.ops]
    return Cell([nn.Identity()], NB201_EDGES, modules, concat=[3])


def check_nb201_image_size(image_size: int) -> None:
    """Raise a clear error unless images of ``image_size`` pass the network's two residual reduction blocks:
    each halves the image, its strided convolution rounding up and its average pool rounding down, so the
    size must be a positive multiple of 4."""
    if image_size >= 4 and image_size % 4 == 0:
        return
    resize = max(4, -(-image_size // 4) * 4)
    raise ValueError(
        f"input images of {image_size}x{image_size} do not pass the two residual reduction blocks of the "
        f"NAS-Bench-201 network: each halves the image, so it needs a multiple of 4 (at least 4x4): resize them "
        f"(--data.init_args.resize {resize})"
    )


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


def _skeleton(
    module: nn.Module, cell: Callable[[int], Cell], *, num_classes: int, in_channels: int, channels: Sequence[int],
    cells_per_stage: int,
) -> None:
    """The NAS-Bench-201 network around ``cell(channels)``: stem, three stages with residual reductions, head."""
    module.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False), nn.BatchNorm2d(channels[0]))
    layers: list[nn.Module] = []
    for stage, c in enumerate(channels):
        if stage > 0:
            layers.append(ResidualReduction(channels[stage - 1], c))
        layers += [cell(c) for _ in range(cells_per_stage)]
    module.layers = nn.ModuleList(layers)
    module.last = nn.Sequential(nn.BatchNorm2d(channels[-1]), nn.ReLU(inplace=True))
    module.global_pooling = nn.AdaptiveAvgPool2d(1)
    module.classifier = nn.Linear(channels[-1], num_classes)


class NB201Network(nn.Module):
    """The NAS-Bench-201 network of one cell ``arch`` (its text form or an :class:`NB201Arch`)."""

    # built by _skeleton
    stem: nn.Sequential
    layers: nn.ModuleList
    last: nn.Sequential
    global_pooling: nn.AdaptiveAvgPool2d
    classifier: nn.Linear

    def __init__(
        self,
        arch: NB201Arch | str,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64),
        cells_per_stage: int = 5,
    ) -> None:
        super().__init__()
        self.arch = NB201Arch.parse(arch) if isinstance(arch, str) else arch
        self.channels, self.cells_per_stage = list(channels), cells_per_stage
        _skeleton(self, lambda c: nb201_cell(c, self.arch), num_classes=num_classes, in_channels=in_channels,
                  channels=channels, cells_per_stage=cells_per_stage)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stem(x)
        for layer in self.layers:
            out = layer((out,)) if isinstance(layer, Cell) else layer(out)
        return self.classifier(torch.flatten(self.global_pooling(self.last(out)), 1))


class NB201Supernet(Supernet[NB201Arch]):
    """The NAS-Bench-201 supernet: mixed edges over the five ops weighted through ``relaxation`` by one α of
    shape [6, 5] shared by every cell (``pool_batch_norm``: see :func:`nb201_cell`)."""

    op_names = NB201_OPS
    # built by _skeleton
    stem: nn.Sequential
    layers: nn.ModuleList
    last: nn.Sequential
    global_pooling: nn.AdaptiveAvgPool2d
    classifier: nn.Linear

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64),
        cells_per_stage: int = 5,
        relaxation: Relaxation | None = None,
        auxiliary_skip: bool = False,
        pool_batch_norm: bool = False,
    ) -> None:
        super().__init__(SoftmaxRelaxation() if relaxation is None else relaxation)
        self.channels, self.cells_per_stage = list(channels), cells_per_stage
        self.auxiliary_skip, self.pool_batch_norm = bool(auxiliary_skip), bool(pool_batch_norm)
        _skeleton(
            self,
            lambda c: nb201_cell(c, None, self.relaxation, affine=False, auxiliary_skip=self.auxiliary_skip,
                                 pool_batch_norm=self.pool_batch_norm),
            num_classes=num_classes, in_channels=in_channels, channels=channels, cells_per_stage=cells_per_stage,
        )
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(NB201_EDGES), len(NB201_OPS)))

    def named_arch_parameters(self) -> dict[str, nn.Parameter]:
        return {"alpha": self.alpha}

    def alphas(self) -> dict[str, Tensor]:
        return {"cell": self.alpha}

    def edge_labels(self) -> list[str]:
        return [f"{src}-{dst}" for src, dst in NB201_EDGES]

    def space_signature(self) -> dict:
        return {"space": "nasbench201", "op_names": list(NB201_OPS), "channels": self.channels,
                "cells_per_stage": self.cells_per_stage, "relaxation": self.relaxation.name,
                "relaxation_args": self.relaxation.describe(),
                "auxiliary_skip": self.auxiliary_skip, "pool_batch_norm": self.pool_batch_norm}

    def forward(self, x: Tensor, detach_alpha: bool = False, path: Mapping[str, Tensor] | None = None) -> Tensor:
        if path is not None:
            mixing = Mixing(path["cell"])
        else:
            mixing = self.relaxation.mixing(self.alpha, self.generator("cell") if self.relaxation.samples else None)
            if detach_alpha:
                mixing = mixing._replace(weights=mixing.weights.detach())
        out = self.stem(x)
        for layer in self.layers:
            if isinstance(layer, Cell):
                out = layer((out,), mixing.weights, None, mixing.columns, skip_weight=self.auxiliary_skip_weight)
            else:
                out = layer(out)
        return self.classifier(torch.flatten(self.global_pooling(self.last(out)), 1))

    def derive(self) -> NB201Arch:
        """The supernet's cell: the strongest op of every edge (``none`` included, as in NAS-Bench-201)."""
        return NB201Arch.from_alpha(self.alpha)

    def path(self, arch: NB201Arch) -> dict[str, Tensor]:
        if not isinstance(arch, NB201Arch):
            raise TypeError(f"a NAS-Bench-201 supernet runs NB201Arch cells, got {type(arch).__name__}")
        rows = torch.zeros(len(NB201_EDGES), len(NB201_OPS))
        for edge, op in enumerate(arch.ops):
            rows[edge, NB201_OPS.index(op)] = 1.0
        return {"cell": rows}


@register_space("nasbench201")
class NB201Space(SearchSpace[NB201Arch]):
    """NAS-Bench-201: six edges, five ops each, 15,625 cells (Dong & Yang, ICLR 2020). Answers are
    :class:`NB201Arch` es.

    Args:
        channels: the first stage's width (16; the stages have C, 2C and 4C channels).
        cells_per_stage: cells per stage (5).
        pool_batch_norm: a non-affine batch norm after the supernet's ``avg_pool_3x3`` (the benchmark's
            search cells have none; see :func:`nb201_cell`).

    The supernet's cell is derived by the strongest op of every edge, ``none`` included; it keeps every edge,
    so there is no derivation rule or edge normalisation to choose.
    """

    name = "nasbench201"

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, pool_batch_norm: bool = False) -> None:
        check_range("channels", channels, 1, integer=True)
        check_range("cells_per_stage", cells_per_stage, 1, integer=True)
        check_choice("pool_batch_norm", pool_batch_norm, (True, False))
        self.channels, self.cells_per_stage, self.pool_batch_norm = channels, cells_per_stage, pool_batch_norm

    # ------------------------------------------------------------------ networks

    def build_supernet(
        self, relaxation: Relaxation, *, in_channels: int, num_classes: int, image_size: int | None = None,
        auxiliary_skip: bool = False,
    ) -> NB201Supernet:
        if image_size is not None:
            check_nb201_image_size(image_size)
        c = self.channels
        return NB201Supernet(
            num_classes=num_classes, in_channels=in_channels, channels=(c, 2 * c, 4 * c),
            cells_per_stage=self.cells_per_stage, relaxation=relaxation, auxiliary_skip=auxiliary_skip,
            pool_batch_norm=self.pool_batch_norm,
        )

    def build_network(
        self, arch: NB201Arch, *, num_classes: int, in_channels: int = 3, image_size: int | None = None,
        channels: int | None = None, layers: int | None = None,
    ) -> NB201Network:
        """The benchmark's network of ``arch`` (``channels``: the first stage's width, ``layers``: cells per
        stage; the space's own unless given)."""
        if image_size is not None:
            check_nb201_image_size(image_size)
        c = self.channels if channels is None else channels
        return NB201Network(arch, num_classes=num_classes, in_channels=in_channels, channels=(c, 2 * c, 4 * c),
                            cells_per_stage=self.cells_per_stage if layers is None else layers)

    def op_sites(
        self, *, in_channels: int, image_size: int, channels: int | None = None, layers: int | None = None,
    ) -> dict[str, list[list[OpSite]]]:
        """Every cell's six edges at stride 1, at the stage's channels (C, 2C, 4C) and resolution (the image's,
        halved by each residual reduction)."""
        check_nb201_image_size(image_size)
        c = self.channels if channels is None else channels
        cells = self.cells_per_stage if layers is None else layers
        stage_sites = [OpSite(c * 2**stage, 1, image_size // 2**stage) for stage in range(3) for _ in range(cells)]
        return {"cell": [list(stage_sites) for _ in NB201_EDGES]}

    # ------------------------------------------------------------------ answers

    def parse(self, text: str) -> NB201Arch:
        return NB201Arch.parse(text)

    def format(self, arch: NB201Arch) -> str:
        return str(arch)

    def draw(self, arch: NB201Arch) -> Figure:
        from darts_lightning.spaces.drawing import draw_nb201_cell

        return draw_nb201_cell(arch.ops)

    def ops_of(self, arch: NB201Arch) -> dict[str, list[str]]:
        return {"cell": list(arch.ops)}

    # ------------------------------------------------------------------ discrete search

    def sample(self, generator: random.Random) -> NB201Arch:
        return NB201Arch.sample(generator)

    def mutate(self, arch: NB201Arch, generator: random.Random) -> NB201Arch:
        return arch.mutate(generator)

    def crossover(self, a: NB201Arch, b: NB201Arch, generator: random.Random) -> NB201Arch:
        return a.crossover(b, generator)

    def neighbours(self, arch: NB201Arch) -> list[NB201Arch]:
        return list(arch.neighbours())

    def decisions(self) -> list[int]:
        return [len(NB201_OPS)] * len(NB201_EDGES)

    def from_decisions(self, choices: Sequence[int]) -> NB201Arch:
        return NB201Arch(tuple(NB201_OPS[c] for c in choices))

    def to_decisions(self, arch: NB201Arch) -> list[int]:
        return [NB201_OPS.index(op) for op in arch.ops]

    def key(self, arch: NB201Arch) -> str:
        return arch.canonical_key()
