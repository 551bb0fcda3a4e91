"""What a discrete search's architectures cost, and the budgets they must keep.

A hardware-aware search prices every proposal before it spends anything on it. The prices come from the
cost models of :mod:`darts_lightning.costs` (``parameters``, ``multiply_adds``), read from one
:class:`~darts_lightning.costs.CostTable` per cost model and network size: building a table measures each op
of the space once, after which pricing an architecture is a sum over its ops (exactly the count of its whole
network, as ``tests/costs/test_table.py`` checks).

* :class:`CostObjective` (``cost``, ``channels``, ``layers``): a cost of the network an architecture
  describes, at the size ``channels``/``layers`` (``None``: the space's own size). Every history entry of a
  search records the costs of its objectives and constraints; a multi-objective searcher minimises the
  objectives' costs and the search's Pareto front is taken over them.
* :class:`CostConstraint` (``budget`` and the same three): an objective with a budget. An architecture over
  it is refused before it is evaluated.
* :class:`Pricing`: the tables of a search's objectives and constraints for one space and one data shape
  (:class:`~darts_lightning.discrete.evaluation.DataShape`), built once and shared by everything that prices.

Costs are named by their *label*: the cost model's name (``multiply_adds``) at the space's own size, with the
size appended when one is given (``multiply_adds[channels=8,layers=2]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic

from darts_lightning.costs import CostModel, CostTable, get_cost_model
from darts_lightning.discrete.evaluation import DataShape
from darts_lightning.spaces import SearchSpace, get_space
from darts_lightning.spaces.base import Arch
from darts_lightning.spaces.mixing import SoftmaxRelaxation
from darts_lightning.utils.components import Component, build_component
from darts_lightning.utils.validation import check_keywords, check_range

__all__ = ["CostObjective", "CostConstraint", "Pricing", "build_objective", "build_constraint"]


class CostObjective(Component):
    """A cost of an architecture's network, to record and (for a multi-objective searcher) to minimise.

    Args:
        cost: the cost model: ``multiply_adds``, ``parameters`` (:data:`~darts_lightning.costs.COST_MODELS`) or
            a :class:`~darts_lightning.costs.CostModel`.
        channels, layers: the size of the network that is priced, as the space reads them (NAS-Bench-201:
            first-stage channels and cells per stage; DARTS: C and cells); ``None``: the space's own size.
    """

    def __init__(self, cost: str | CostModel = "multiply_adds", channels: int | None = None,
                 layers: int | None = None) -> None:
        check_range("channels", channels, 1, integer=True, optional=True, hint="None: the space's own size")
        check_range("layers", layers, 1, integer=True, optional=True, hint="None: the space's own size")
        self.model: CostModel = get_cost_model(cost)
        self.channels, self.layers = channels, layers

    @property
    def label(self) -> str:
        """The name of this cost in histories, logs and fronts."""
        size = ",".join(f"{name}={value}" for name, value in (("channels", self.channels), ("layers", self.layers))
                        if value is not None)
        return f"{self.model.name}[{size}]" if size else self.model.name

    def table_key(self) -> tuple[Any, ...]:
        """What the table of this cost depends on: two objectives with equal keys share one table."""
        return (repr(self.model.config()), self.channels, self.layers)


class CostConstraint(CostObjective):
    """A budget on a cost: an architecture whose network costs more than ``budget`` (in the cost model's
    unit, for the network of ``channels`` and ``layers``) is refused before it is evaluated.

    Args:
        budget: the largest cost allowed.
        cost, channels, layers: as in :class:`CostObjective`.
    """

    def __init__(self, budget: float, cost: str | CostModel = "multiply_adds", channels: int | None = None,
                 layers: int | None = None) -> None:
        check_range("budget", budget, 0, low_open=True, hint="in the cost model's unit, for the network of channels and layers")
        super().__init__(cost, channels, layers)
        self.budget = float(budget)

    def violation(self, costs: Mapping[str, float]) -> str | None:
        """Why the architecture of ``costs`` (its costs by label) is refused, or ``None`` within the budget."""
        value = costs[self.label]
        if value <= self.budget:
            return None
        return f"over budget: {self.label} {value:g} > {self.budget:g}"


def build_objective(value: str | CostObjective | Mapping[str, Any]) -> CostObjective:
    """An objective from a cost model's name (``"multiply_adds"``), the instance, ``{"class_path",
    "init_args"}`` or its arguments (``{"cost": "parameters", "channels": 8}``)."""
    if isinstance(value, str):
        return CostObjective(value)
    return _build(value, CostObjective, "objectives")


def build_constraint(value: CostConstraint | Mapping[str, Any]) -> CostConstraint:
    """A constraint from the instance, ``{"class_path", "init_args"}`` or its arguments (``{"cost":
    "multiply_adds", "budget": 1e8}``)."""
    return _build(value, CostConstraint, "constraints")


def _build(value: Any, base: type[Any], what: str) -> Any:
    if isinstance(value, Mapping) and "class_path" not in value:
        check_keywords(f"an entry of {what}", value, base)
        return base(**value)
    return build_component(value, base, f"an entry of {what}")


class Pricing(Generic[Arch]):
    """The costs of ``space``'s architectures for ``objectives`` (constraints are objectives too), on the
    networks of the data ``shape``: one :class:`~darts_lightning.costs.CostTable` per cost model and size,
    built here, once (the space's supernet, which names the ops of each edge, is built once for all).

    :meth:`costs` prices an architecture by every label (remembered by its text form: a search that is told a
    re-proposed architecture again prices it once).
    """

    def __init__(self, space: SearchSpace[Arch] | str | Mapping[str, Any], objectives: Iterable[CostObjective],
                 shape: DataShape) -> None:
        self.space: SearchSpace[Arch] = get_space(space)
        self.shape = shape
        self.objectives: dict[str, CostObjective] = {}
        for objective in objectives:
            known = self.objectives.setdefault(objective.label, objective)
            if known.table_key() != objective.table_key():
                raise ValueError(
                    f"two different cost models are both named {objective.label!r} ({known.model!r} and "
                    f"{objective.model!r}): give one of them another name"
                )
        self.tables: dict[str, CostTable] = {}
        if self.objectives:
            supernet = self.space.build_supernet(SoftmaxRelaxation(), in_channels=shape.in_channels,
                                                 num_classes=shape.num_classes, image_size=shape.image_size)
            shared: dict[tuple[Any, ...], CostTable] = {}
            for label, objective in self.objectives.items():
                key = objective.table_key()
                if key not in shared:
                    shared[key] = CostTable.build(
                        self.space, objective.model, in_channels=shape.in_channels, num_classes=shape.num_classes,
                        image_size=shape.image_size, channels=objective.channels, layers=objective.layers,
                        supernet=supernet,
                    )
                self.tables[label] = shared[key]
        self._prices: dict[str, dict[str, float]] = {}

    @property
    def labels(self) -> list[str]:
        return list(self.tables)

    def costs(self, arch: Arch) -> dict[str, float]:
        """The cost of ``arch``'s network by every label."""
        text = self.space.format(arch)
        if text not in self._prices:
            self._prices[text] = {label: table.arch_cost(arch) for label, table in self.tables.items()}
        return dict(self._prices[text])

    def cheapest(self, label: str) -> float:
        """A lower bound of every architecture's cost ``label`` (:meth:`darts_lightning.costs.CostTable.cheapest`)."""
        return self.tables[label].cheapest()

    def check(self, space: SearchSpace[Any], labels: Sequence[str] = ()) -> None:
        """Refuse to price another space than ``space``, or without one of ``labels``."""
        if self.space.signature() != space.signature():
            raise ValueError(
                f"the costs were priced for the space {self.space.signature()}, the search runs the space "
                f"{space.signature()}: build the Pricing for the search's space"
            )
        missing = [label for label in labels if label not in self.tables]
        if missing:
            raise ValueError(
                f"the pricing has no cost {', '.join(map(repr, missing))} (it prices {', '.join(self.labels) or 'nothing'}): "
                "build it with every constraint and objective of the search"
            )

    def check_budgets(self, constraints: Iterable[CostConstraint]) -> None:
        """Refuse a budget that no architecture of the space can keep (below its cheapest network)."""
        for constraint in constraints:
            cheapest = self.cheapest(constraint.label)
            if cheapest > constraint.budget:
                raise ValueError(
                    f"the budget {constraint.budget:g} {constraint.model.unit} on {constraint.label} is below the "
                    f"cheapest network of the {self.space.name} space at this size ({cheapest:g}): raise the budget "
                    "or price a smaller network (channels, layers)"
                )
