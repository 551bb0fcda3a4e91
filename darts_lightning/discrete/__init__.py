"""Discrete architecture search: a searcher proposes architectures, an evaluator scores them, and
:class:`DiscreteSearch` runs the two under a budget. Everything here knows a space only through the
:class:`~darts_lightning.spaces.SearchSpace` contract.

* :mod:`~darts_lightning.discrete.module`: :class:`DiscreteSearch`, the LightningModule.
* :mod:`~darts_lightning.discrete.searchers`: the searchers and their registry;
  :mod:`~darts_lightning.discrete.pareto`: Pareto fronts, NSGA-II's rankings and the ``pareto_evolution``
  searcher.
* :mod:`~darts_lightning.discrete.loop`: :class:`SearchLoop`, one search's rule (propose, refuse, evaluate,
  tell) without Lightning; :mod:`~darts_lightning.discrete.constraints`: cost objectives and budgets, priced
  by :class:`Pricing`; :mod:`~darts_lightning.discrete.nb201_costs`: the costs of all NAS-Bench-201 cells.
* :mod:`~darts_lightning.discrete.evaluation`: what an evaluator is (:class:`Evaluator`, :class:`Evaluation`)
  and the accuracy loop of the evaluators that run networks.
* :mod:`~darts_lightning.discrete.lookup`, :mod:`~darts_lightning.discrete.weight_sharing` (with the
  single-path supernet training, :class:`SinglePathSupernet`) and :mod:`~darts_lightning.discrete.scratch`:
  the evaluators; :mod:`~darts_lightning.discrete.evaluators`: their registry.
* :mod:`~darts_lightning.discrete.executors`: how trials run (sequentially, replayed in a recorded order) and
  :mod:`~darts_lightning.discrete.ray_executor`: on a Ray cluster.
"""

from darts_lightning.discrete.constraints import CostConstraint, CostObjective, Pricing
from darts_lightning.discrete.evaluation import DataShape, Evaluation, Evaluator
from darts_lightning.discrete.evaluators import build_evaluator, list_evaluators, register_evaluator
from darts_lightning.discrete.lookup import LookupEvaluator
from darts_lightning.discrete.loop import SearchLoop
from darts_lightning.discrete.module import DiscreteSearch
from darts_lightning.discrete.nb201_costs import nasbench201_costs
from darts_lightning.discrete.pareto import ParetoEvolution, pareto_front
from darts_lightning.discrete.ray_executor import RayExecutor
from darts_lightning.discrete.scratch import ScratchClassifier, ScratchEvaluator
from darts_lightning.discrete.searchers import Searcher, build_searcher, list_searchers, register_searcher
from darts_lightning.discrete.weight_sharing import SinglePathRelaxation, SinglePathSupernet, WeightSharingEvaluator

__all__ = [
    "DiscreteSearch", "Searcher", "register_searcher", "build_searcher", "list_searchers", "Evaluation",
    "Evaluator", "register_evaluator", "build_evaluator", "list_evaluators", "LookupEvaluator",
    "SinglePathRelaxation", "SinglePathSupernet", "WeightSharingEvaluator", "ScratchClassifier", "ScratchEvaluator",
    "CostConstraint", "CostObjective", "Pricing", "DataShape", "SearchLoop", "ParetoEvolution", "pareto_front",
    "nasbench201_costs", "RayExecutor",
]
