"""Evaluators: how a discrete searcher scores an architecture. A searcher never knows which one it uses.

* :class:`LookupEvaluator` (``lookup``): a benchmark table (NAS-Bench-201 with 12-epoch accuracies ships
  with the package): the reward is a table column (``cifar10_valid`` by default, the NAS-Bench-201 protocol).
* ``weight_sharing``: accuracy with the shared weights of a single-path supernet
  (:class:`~darts_lightning.discrete.weight_sharing.WeightSharingEvaluator`).
* ``scratch``: a short proxy training from scratch on the holdout split
  (:class:`~darts_lightning.discrete.weight_sharing.ScratchEvaluator`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from darts_lightning.utils.registry import Registry
from darts_lightning.spaces import SearchSpace, get_space
from darts_lightning.utils.validation import check_keywords

__all__ = ["Evaluation", "Evaluator", "LookupEvaluator", "NB201_TABLE", "register_evaluator", "build_evaluator", "list_evaluators"]

NB201_TABLE = Path(__file__).parent / "tables" / "nasbench201_12epoch.csv"
"""The NAS-Bench-201 table shipped with the package (see ``tables/NOTICE.md`` for its MIT notice)."""


@dataclass
class Evaluation:
    """What an evaluation returns: the reward the searcher maximises, its cost, and other metrics."""

    reward: float
    cost: float = 1.0
    metrics: dict[str, float] = field(default_factory=dict)


class Evaluator:
    """Base class: ``evaluate(arch) -> Evaluation`` for architectures of ``space``."""

    def __init__(self, space: SearchSpace | str) -> None:
        self.space = get_space(space)

    def evaluate(self, arch: Any) -> Evaluation:
        raise NotImplementedError


class LookupEvaluator(Evaluator):
    """Rewards from a benchmark table with one row per architecture.

    Args:
        space: the space the table covers (``nasbench201`` for the shipped table).
        path: a CSV with an ``arch`` column (the space's text form) and one column per metric;
            default: the shipped NAS-Bench-201 table.
        dataset: prefix of the columns to use (``cifar10``, ``cifar100``, ``imagenet16``).
        metric: the reward column suffix (``valid``); every ``<dataset>_*`` column is reported as a metric.
    """

    def __init__(self, space: SearchSpace | str = "nasbench201", path: str | Path | None = None,
                 dataset: str = "cifar10", metric: str = "valid") -> None:
        super().__init__(space)
        self.path = Path(path) if path else NB201_TABLE
        if not self.path.is_file():
            raise FileNotFoundError(f"no lookup table at {str(self.path)!r}")
        self.dataset, self.metric = dataset, metric
        self.rows: dict[Any, dict[str, float]] = {}
        with self.path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if "arch" not in (reader.fieldnames or []):
                raise ValueError(f"lookup table {str(self.path)!r} has no 'arch' column")
            columns = [c for c in reader.fieldnames if c.startswith(f"{dataset}_")]
            if f"{dataset}_{metric}" not in columns:
                named = [c.split("_", 1) for c in reader.fieldnames if c not in ("index", "arch") and "_" in c]
                raise ValueError(
                    f"lookup table {str(self.path)!r} has no column {dataset}_{metric!s} (dataset {dataset!r}, metric "
                    f"{metric!r}); valid datasets are: {', '.join(dict.fromkeys(d for d, _ in named))}; valid metrics "
                    f"are: {', '.join(dict.fromkeys(m for _, m in named))}"
                )
            for line, row in enumerate(reader, start=2):
                try:
                    arch = self.space.parse(row["arch"])
                except ValueError as error:
                    raise ValueError(
                        f"row {line} of {str(self.path)!r} does not fit the {self.space.name} space: {error}"
                    ) from error
                self.rows[self.space.format(arch)] = {c: float(row[c]) for c in columns}
        if len(self.rows) != self.space.size():
            raise ValueError(
                f"lookup table {str(self.path)!r} holds {len(self.rows)} distinct architectures, but the "
                f"{self.space.name} space has {self.space.size()}: the table does not match the space"
            )

    def evaluate(self, arch: Any) -> Evaluation:
        row = self.rows[self.space.format(arch)]
        return Evaluation(reward=row[f"{self.dataset}_{self.metric}"], cost=1.0, metrics=dict(row))


_EVALUATORS: Registry[Evaluator] = Registry("evaluator")
_EVALUATORS.register("lookup", LookupEvaluator)


def register_evaluator(name: str, factory: Callable[..., Evaluator]) -> None:
    _EVALUATORS.register(name, factory)


def list_evaluators() -> list[str]:
    return _EVALUATORS.names()


def build_evaluator(name: str, space: SearchSpace | str, **kwargs: Any) -> Evaluator:
    """The evaluator registered as ``name``; ``kwargs`` (a configuration's ``evaluator_args``) are checked
    against its constructor's keywords before it is built."""
    factory = _EVALUATORS.get(name)
    check_keywords(f"evaluator_args of the evaluator {name!r}", kwargs, factory, given=("space",))
    return factory(space, **kwargs)


def _weight_sharing_evaluator(space: SearchSpace | str, **kwargs: Any) -> Evaluator:
    from darts_lightning.discrete.weight_sharing import WeightSharingEvaluator

    check_keywords("evaluator_args of the evaluator 'weight_sharing'", kwargs, WeightSharingEvaluator, given=("space",))
    return WeightSharingEvaluator(space, **kwargs)


def _scratch_evaluator(space: SearchSpace | str, **kwargs: Any) -> Evaluator:
    from darts_lightning.discrete.weight_sharing import ScratchEvaluator

    check_keywords("evaluator_args of the evaluator 'scratch'", kwargs, ScratchEvaluator, given=("space",))
    return ScratchEvaluator(space, **kwargs)


# Imported when first built: darts_lightning.discrete.weight_sharing imports this module.
register_evaluator("weight_sharing", _weight_sharing_evaluator)
register_evaluator("scratch", _scratch_evaluator)
