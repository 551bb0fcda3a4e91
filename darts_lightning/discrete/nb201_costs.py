"""The parameters and multiply-adds of every NAS-Bench-201 cell's network, counted on the package's own networks.

The networks are :class:`~darts_lightning.spaces.NB201Space`'s at the benchmark's size (16 channels in the first
stage, 5 cells per stage) for the data of one of the benchmark's data sets (:data:`~darts_lightning.discrete.
lookup.NB201_SHAPES`: CIFAR-10 is 3×32×32 images of 10 classes). They are priced as every search prices them,
by a :class:`~darts_lightning.discrete.constraints.Pricing` (one :class:`~darts_lightning.costs.CostTable` per
cost model, whose sum over a cell's ops is exactly the count of its whole network): the tables are built once,
then each of the 15,625 cells is a sum over its six edges, a few seconds for all of them. The result is kept
for the process (nothing is written to disk), so later calls return at once.
"""

from __future__ import annotations

import itertools
from functools import cache

from darts_lightning.discrete.constraints import CostObjective, Pricing
from darts_lightning.discrete.lookup import NB201_SHAPES
from darts_lightning.spaces import NB201Space
from darts_lightning.utils.validation import check_choice

__all__ = ["nasbench201_costs"]


def nasbench201_costs(dataset: str = "cifar10") -> dict[str, tuple[float, float]]:
    """``{cell string: (parameters, multiply-adds)}`` of all NAS-Bench-201 cells' networks for ``dataset``
    (``cifar10``, ``cifar100`` or ``imagenet16``; the classifier's size and the image size differ). The
    strings are the benchmark's (``|nor_conv_3x3~0|+|...|``), as the shipped lookup table and
    :meth:`NB201Space.format` write them. A new dictionary on every call (the cached one stays intact)."""
    check_choice("dataset", dataset, sorted(NB201_SHAPES))
    return dict(_costs(dataset))


@cache
def _costs(dataset: str) -> dict[str, tuple[float, float]]:
    space = NB201Space()
    pricing: Pricing = Pricing(space, [CostObjective("parameters"), CostObjective("multiply_adds")], NB201_SHAPES[dataset])
    parameters, multiply_adds = pricing.tables["parameters"], pricing.tables["multiply_adds"]
    costs = {}
    for choices in itertools.product(*(range(n) for n in space.decisions())):
        arch = space.from_decisions(choices)
        costs[space.format(arch)] = (parameters.arch_cost(arch), multiply_adds.arch_cost(arch))
    return costs
