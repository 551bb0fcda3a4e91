"""Search spaces as objects: what discrete searchers need to know about a space of cells.

A :class:`SearchSpace` samples cells, varies them (mutation, crossover, neighbours), encodes them as a
sequence of categorical decisions (for policy-gradient searchers), gives each a key that is equal for
isomorphic cells (so that a query budget counts distinct functions once), reads and writes their text
form, and builds the network a cell describes from the package's cell code.

Registered spaces: ``darts`` (the DARTS CNN cell, architectures are :class:`~darts_lightning.Genotype`)
and ``nasbench201`` (architectures are :class:`~darts_lightning.nasbench201.NB201Arch`).
"""

from __future__ import annotations

import itertools
import random
from abc import ABC, abstractmethod
from typing import Any, Callable, Hashable, Sequence

from torch import nn

from .genotype import Genotype
from .ops import DARTS_OPS
from .nasbench201 import NB201_EDGES, NB201Arch, NB201Network
from .ops import NB201_OPS
from .registry import Registry

__all__ = ["SearchSpace", "DartsSpace", "NB201Space", "register_space", "list_spaces", "get_space"]


class SearchSpace(ABC):
    """The interface discrete searchers and evaluators use."""

    name: str = "base"

    @abstractmethod
    def sample(self, generator: random.Random) -> Any:
        """A cell drawn uniformly."""

    @abstractmethod
    def mutate(self, arch: Any, generator: random.Random) -> Any:
        """A valid cell that differs from ``arch`` in one decision (one op or one input)."""

    @abstractmethod
    def crossover(self, a: Any, b: Any, generator: random.Random) -> Any:
        """A valid cell whose decisions each come from ``a`` or ``b``."""

    @abstractmethod
    def neighbours(self, arch: Any) -> list[Any]:
        """Every cell that differs from ``arch`` in exactly one decision."""

    @abstractmethod
    def decisions(self) -> list[int]:
        """Number of choices of each categorical decision that encodes a cell."""

    @abstractmethod
    def from_decisions(self, choices: Sequence[int]) -> Any:
        """The cell of one choice per decision."""

    @abstractmethod
    def to_decisions(self, arch: Any) -> list[int]:
        """The choices that encode ``arch`` (inverse of :meth:`from_decisions`)."""

    @abstractmethod
    def key(self, arch: Any) -> Hashable:
        """Equal for cells that compute the same function (isomorphism-aware where the space needs it)."""

    @abstractmethod
    def parse(self, text: str) -> Any:
        """Read a cell from its text form; a clear error when it does not parse or does not fit."""

    @abstractmethod
    def format(self, arch: Any) -> str:
        """The text form of a cell."""

    @abstractmethod
    def build_network(self, arch: Any, *, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
        """The network the cell describes, from the package's cell code."""

    def size(self) -> int:
        """Number of encodings (not of distinct functions)."""
        total = 1
        for n in self.decisions():
            total *= n
        return total


class NB201Space(SearchSpace):
    """NAS-Bench-201: six edges, five ops each, 15,625 cells (Dong & Yang, ICLR 2020)."""

    name = "nasbench201"

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

    def parse(self, text: str) -> NB201Arch:
        return NB201Arch.parse(text)

    def format(self, arch: NB201Arch) -> str:
        return str(arch)

    def build_network(self, arch: NB201Arch, *, num_classes: int, in_channels: int = 3, **kwargs: Any) -> NB201Network:
        return NB201Network(arch, num_classes=num_classes, in_channels=in_channels, **kwargs)


class DartsSpace(SearchSpace):
    """The DARTS CNN cell: per node of the normal and the reduction cell, two distinct inputs among the
    earlier states and one op per input (``none`` excluded, as in a derived genotype)."""

    name = "darts"

    def __init__(self, op_names: Sequence[str] = tuple(o for o in DARTS_OPS if o != "none"), nodes: int = 4) -> None:
        self.op_names = tuple(op_names)
        self.nodes = nodes
        # For node i, the unordered input pairs among states 0..i+1.
        self._pairs = [list(itertools.combinations(range(i + 2), 2)) for i in range(nodes)]

    def sample(self, generator: random.Random) -> Genotype:
        return Genotype.random(generator, self.op_names, self.nodes)

    def decisions(self) -> list[int]:
        per_cell = []
        for i in range(self.nodes):
            per_cell += [len(self._pairs[i]), len(self.op_names), len(self.op_names)]
        return per_cell * 2

    def to_decisions(self, arch: Genotype) -> list[int]:
        choices = []
        for edges in (arch.normal, arch.reduce):
            for i in range(self.nodes):
                (op_a, a), (op_b, b) = sorted(edges[2 * i : 2 * i + 2], key=lambda e: e[1])
                if a == b:
                    raise ValueError(f"node {i} takes state {a} twice; the discrete DARTS space needs distinct inputs")
                choices += [self._pairs[i].index((a, b)), self.op_names.index(op_a), self.op_names.index(op_b)]
        return choices

    def from_decisions(self, choices: Sequence[int]) -> Genotype:
        cells = []
        for c in range(2):
            edges = []
            for i in range(self.nodes):
                pair, op_a, op_b = choices[(c * self.nodes + i) * 3 : (c * self.nodes + i) * 3 + 3]
                a, b = self._pairs[i][pair]
                edges += [(self.op_names[op_a], a), (self.op_names[op_b], b)]
            cells.append(tuple(edges))
        concat = tuple(range(2, 2 + self.nodes))
        return Genotype(cells[0], concat, cells[1], concat)

    def mutate(self, arch: Genotype, generator: random.Random) -> Genotype:
        choices = self.to_decisions(arch)
        sizes = self.decisions()
        candidates = [k for k, n in enumerate(sizes) if n > 1]
        k = generator.choice(candidates)
        choices[k] = generator.choice([c for c in range(sizes[k]) if c != choices[k]])
        return self.from_decisions(choices)

    def crossover(self, a: Genotype, b: Genotype, generator: random.Random) -> Genotype:
        return self.from_decisions(
            [x if generator.random() < 0.5 else y for x, y in zip(self.to_decisions(a), self.to_decisions(b))]
        )

    def neighbours(self, arch: Genotype) -> list[Genotype]:
        choices, out = self.to_decisions(arch), []
        for k, n in enumerate(self.decisions()):
            for c in range(n):
                if c != choices[k]:
                    out.append(self.from_decisions(choices[:k] + [c] + choices[k + 1 :]))
        return out

    def key(self, arch: Genotype) -> tuple:
        # The two edges of a node are a sum: their order does not matter.
        return tuple(
            tuple(tuple(sorted(edges[2 * i : 2 * i + 2])) for i in range(self.nodes)) for edges in (arch.normal, arch.reduce)
        )

    def parse(self, text: str) -> Genotype:
        return Genotype.resolve(text)

    def format(self, arch: Genotype) -> str:
        return repr(arch)

    def build_network(self, arch: Genotype, *, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
        from .eval_network import EvalNetwork

        return EvalNetwork(arch, num_classes=num_classes, in_channels=in_channels, **kwargs)


_SPACES: Registry[SearchSpace] = Registry("search space", plural="spaces")
_SPACES.register("darts", DartsSpace)
_SPACES.register("nasbench201", NB201Space)


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    _SPACES.register(name, factory)


def list_spaces() -> list[str]:
    return _SPACES.names()


def get_space(name: str | SearchSpace) -> SearchSpace:
    """A search space by name (``darts``, ``nasbench201``) or the instance itself."""
    if isinstance(name, SearchSpace):
        return name
    return _SPACES.build(name)
