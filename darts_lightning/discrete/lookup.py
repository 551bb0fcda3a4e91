"""Rewards from a benchmark table (evaluator ``lookup``): the NAS-Bench-201 table with 12-epoch accuracies
ships with the package; the reward is a table column (``cifar10_valid`` by default, the NAS-Bench-201
protocol). The shipped table's networks saw the benchmark's data (:data:`NB201_SHAPES`), at which a search
prices them."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from darts_lightning.discrete.evaluation import DataShape, Evaluation, Evaluator
from darts_lightning.spaces import SearchSpace
from darts_lightning.spaces.base import Arch

__all__ = ["LookupEvaluator", "NB201_TABLE", "NB201_SHAPES"]

NB201_TABLE = Path(__file__).parent / "tables" / "nasbench201_12epoch.csv"
"""The NAS-Bench-201 table shipped with the package (see ``tables/NOTICE.md`` for its MIT notice)."""

NB201_SHAPES: dict[str, DataShape] = {
    "cifar10": DataShape(in_channels=3, num_classes=10, image_size=32),
    "cifar100": DataShape(in_channels=3, num_classes=100, image_size=32),
    "imagenet16": DataShape(in_channels=3, num_classes=120, image_size=16),
}
"""The data of each NAS-Bench-201 data set (ImageNet16-120: 120 classes of 16×16 images), by the table's
column prefix."""


class LookupEvaluator(Evaluator[Arch]):
    """Rewards from a benchmark table with one row per architecture.

    Args:
        space: the space the table covers (``nasbench201`` for the shipped table).
        path: a CSV with an ``arch`` column (the space's text form) and one column per metric;
            default: the shipped NAS-Bench-201 table.
        dataset: prefix of the columns to use (``cifar10``, ``cifar100``, ``imagenet16``).
        metric: the reward column suffix (``valid``); every ``<dataset>_*`` column is reported as a metric.

    The table must hold every architecture of the space once (by its text form), so that no proposal can
    miss it.
    """

    def __init__(self, space: SearchSpace[Arch] | str | Mapping[str, Any] = "nasbench201",
                 path: str | Path | None = None, dataset: str = "cifar10", metric: str = "valid") -> None:
        super().__init__(space)
        self.path = Path(path) if path else NB201_TABLE
        if not self.path.is_file():
            raise FileNotFoundError(f"no lookup table at {str(self.path)!r}")
        self.dataset, self.metric = dataset, metric
        #: the metrics of every architecture, by its text form
        self.rows: dict[str, dict[str, float]] = {}
        with self.path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or [])
            if "arch" not in fields:
                raise ValueError(f"lookup table {str(self.path)!r} has no 'arch' column")
            columns = [c for c in fields if c.startswith(f"{dataset}_")]
            if f"{dataset}_{metric}" not in columns:
                named = [c.split("_", 1) for c in fields if c not in ("index", "arch") and "_" in c]
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

    def data_shape(self) -> DataShape | None:
        """The benchmark's data for the shipped table (:data:`NB201_SHAPES`); ``None`` for another table."""
        return NB201_SHAPES.get(self.dataset) if self.path == NB201_TABLE else None

    def evaluate(self, arch: Arch) -> Evaluation:
        row = self.rows[self.space.format(arch)]
        return Evaluation(reward=row[f"{self.dataset}_{self.metric}"], cost=1.0, metrics=dict(row))
