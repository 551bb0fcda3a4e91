"""The search-space contract, used by the differentiable search, the discrete searchers, the evaluators, the
retraining and the command line alike.

A :class:`SearchSpace` is everything the rest of the package knows about a space of architectures ("answers":
a DARTS :class:`~darts_lightning.Genotype`, a NAS-Bench-201 :class:`~darts_lightning.NB201Arch`, or a user's
own type). It

* builds the supernet for a relaxation (:meth:`SearchSpace.build_supernet`), whose :meth:`derive` gives the
  answer by the space's rule (the space's configuration holds the rule and edge normalisation);
* reads, writes, records and draws answers (:meth:`parse`, :meth:`format`, :meth:`to_record`,
  :meth:`from_record`, :meth:`write`, :meth:`draw`, :meth:`ops_of`);
* builds the network an answer describes (:meth:`build_network`);
* samples, mutates, crosses and encodes answers for the discrete searchers, and keys them so that isomorphic
  answers count once;
* signs checkpoints (:meth:`signature`).

Nothing outside a space knows which space it is running. A space is a
:class:`~darts_lightning.utils.components.Component`: chosen in YAML by class path and recorded in a
checkpoint by its class path and arguments. Spaces are registered by name (``@register_space("darts")``).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

from torch import nn

from darts_lightning.spaces.mixing import Relaxation
from darts_lightning.spaces.supernet import Arch, Supernet
from darts_lightning.utils.components import Component, build_component
from darts_lightning.utils.files import atomic_write_text
from darts_lightning.utils.registry import Registry

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SearchSpace", "Arch", "OpSite", "SPACES", "register_space", "list_spaces", "get_space"]


@dataclass(frozen=True)
class OpSite:
    """Where a candidate op runs in a network: its channels, its stride and the resolution of its (square) input.
    A cost model measures the op there (:mod:`darts_lightning.costs`)."""

    channels: int
    stride: int
    resolution: int

class SearchSpace(Component, ABC, Generic[Arch]):
    """The interface every space implements (see the module docstring)."""

    #: the registered name, also recorded in checkpoints
    name: str = "base"
    #: the file a search writes its answer to, in its log directory
    answer_file: str = "arch.txt"

    # ------------------------------------------------------------------ networks

    @abstractmethod
    def build_supernet(
        self, relaxation: Relaxation, *, in_channels: int, num_classes: int, image_size: int | None = None,
        auxiliary_skip: bool = False,
    ) -> Supernet[Arch]:
        """The supernet of this space for ``relaxation`` (``auxiliary_skip``: DARTS-'s skip connection on every
        mixed edge). A space that cannot serve the relaxation or the option says so with a clear error (a
        relaxation that runs :attr:`~darts_lightning.spaces.mixing.Relaxation.paths_only` leaves options that
        act through the architecture parameters without effect)."""

    @abstractmethod
    def build_network(
        self, arch: Arch, *, num_classes: int, in_channels: int = 3, image_size: int | None = None,
        channels: int | None = None, layers: int | None = None,
    ) -> nn.Module:
        """The network ``arch`` describes, from the package's cell code (``channels``, ``layers``: its size,
        ``None``: the space's evaluation size).

        Its ``forward(x)`` returns the logits, so that one generic training (cross-entropy on the logits)
        trains the network of any space; extras that need a training of their own (DARTS's auxiliary head)
        are keyword options of a space, off by default."""

    def op_sites(
        self, *, in_channels: int, image_size: int, channels: int | None = None, layers: int | None = None,
    ) -> dict[str, list[list[OpSite]]]:
        """Where each row of the architecture parameters runs in :meth:`build_network`'s network of this size:
        per cell type (the keys of the supernet's ``alphas()``) and row (edge), every :class:`OpSite` at which
        the op the answer chooses for that row runs (once per cell of that type). The network's cost is then
        its fixed parts' plus, over the rows an answer uses, its ops' costs at their sites
        (:class:`darts_lightning.costs.CostTable`). Needed by the hardware-aware searches only."""
        raise NotImplementedError(
            f"the {self.name} space does not say where its ops run in its network (SearchSpace.op_sites), which "
            "cost models need: implement op_sites in the space to search it under a budget"
        )

    # ------------------------------------------------------------------ answers

    @abstractmethod
    def parse(self, text: str) -> Arch:
        """Read an answer from its text form; a clear error when it does not parse or does not fit."""

    @abstractmethod
    def format(self, arch: Arch) -> str:
        """The text form of an answer (what :meth:`parse` reads)."""

    def to_record(self, arch: Arch) -> Any:
        """An answer as plain data (JSON, a checkpoint's history); default: its text form."""
        return self.format(arch)

    def from_record(self, record: Any, *, allow_import_paths: bool = False) -> Arch:
        """The answer of :meth:`to_record`'s ``record``."""
        return self.parse(str(record))

    def write(self, arch: Arch, directory: Path) -> Path:
        """Write ``arch`` into ``directory`` as :attr:`answer_file` (atomically) and return the file."""
        path = Path(directory) / self.answer_file
        atomic_write_text(path, self.format(arch) + "\n")
        return path

    def read(self, path: Path, *, allow_import_paths: bool = False) -> Arch:
        """Read an answer written by :meth:`write`."""
        return self.parse(Path(path).read_text())

    @abstractmethod
    def draw(self, arch: Arch) -> Figure:
        """A matplotlib figure of the answer."""

    @abstractmethod
    def ops_of(self, arch: Arch) -> dict[str, list[str]]:
        """The ops the answer uses, per cell type (``{"normal": [...], "reduce": [...]}``)."""

    # ------------------------------------------------------------------ discrete search

    @abstractmethod
    def sample(self, generator: random.Random) -> Arch:
        """An answer drawn uniformly."""

    @abstractmethod
    def mutate(self, arch: Arch, generator: random.Random) -> Arch:
        """A valid answer that differs from ``arch`` in one decision."""

    @abstractmethod
    def crossover(self, a: Arch, b: Arch, generator: random.Random) -> Arch:
        """A valid answer whose decisions each come from ``a`` or ``b``."""

    @abstractmethod
    def neighbours(self, arch: Arch) -> list[Arch]:
        """Every answer that differs from ``arch`` in exactly one decision."""

    @abstractmethod
    def decisions(self) -> list[int]:
        """Number of choices of each categorical decision that encodes an answer."""

    @abstractmethod
    def from_decisions(self, choices: Sequence[int]) -> Arch:
        """The answer of one choice per decision."""

    @abstractmethod
    def to_decisions(self, arch: Arch) -> list[int]:
        """The choices that encode ``arch`` (inverse of :meth:`from_decisions`)."""

    @abstractmethod
    def key(self, arch: Arch) -> Hashable:
        """Equal for answers that compute the same function (isomorphism-aware where the space needs it)."""

    def size(self) -> int:
        """Number of encodings (not of distinct functions)."""
        total = 1
        for n in self.decisions():
            total *= n
        return total

    # ------------------------------------------------------------------ checkpoints

    def signature(self) -> dict[str, Any]:
        """What a checkpoint records of the space (it must match to resume): its class and arguments."""
        return self.config()


SPACES: Registry[SearchSpace[Any]] = Registry("search space", plural="spaces")


def register_space(name: str, factory: Callable[..., SearchSpace[Any]] | None = None) -> Any:
    """Register a space (a :class:`SearchSpace` subclass or a factory) by name; without ``factory``, a decorator."""
    return SPACES.register(name) if factory is None else SPACES.register(name, factory)


def list_spaces() -> list[str]:
    return SPACES.names()


def get_space(name: str | SearchSpace[Any] | Mapping[str, Any]) -> SearchSpace[Any]:
    """A search space by registered name (``darts``, ``nasbench201``), by ``{"class_path", "init_args"}``,
    or the instance itself."""
    # build_component only tests instances and subclasses against the abstract base, which mypy cannot see.
    return build_component(name, SearchSpace, "search space", registry=SPACES.get)  # type: ignore[type-abstract]
