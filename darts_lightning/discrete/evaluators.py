"""The evaluator registry: how a discrete searcher scores an architecture, chosen by name in a config. A
searcher never knows which evaluator it uses.

Registered evaluators:

* ``lookup``: a benchmark table (:class:`~darts_lightning.discrete.lookup.LookupEvaluator`; NAS-Bench-201
  with 12-epoch accuracies ships with the package).
* ``weight_sharing``: accuracy with the shared weights of a single-path supernet
  (:class:`~darts_lightning.discrete.weight_sharing.WeightSharingEvaluator`).
* ``scratch``: a short proxy training from scratch on the holdout split
  (:class:`~darts_lightning.discrete.scratch.ScratchEvaluator`).

Add one by subclassing :class:`~darts_lightning.discrete.evaluation.Evaluator` and registering it
(``@register_evaluator("mine")``); its constructor takes the space first and keyword arguments after it
(a configuration's ``evaluator_args``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from darts_lightning.discrete.evaluation import Evaluation, Evaluator
from darts_lightning.discrete.lookup import NB201_TABLE, LookupEvaluator
from darts_lightning.discrete.scratch import ScratchEvaluator
from darts_lightning.discrete.weight_sharing import WeightSharingEvaluator
from darts_lightning.spaces import SearchSpace
from darts_lightning.utils.registry import Registry
from darts_lightning.utils.validation import check_keywords

__all__ = [
    "Evaluation", "Evaluator", "LookupEvaluator", "WeightSharingEvaluator", "ScratchEvaluator", "NB201_TABLE",
    "EVALUATORS", "register_evaluator", "build_evaluator", "list_evaluators",
]

EVALUATORS: Registry[Evaluator[Any]] = Registry("evaluator")
EVALUATORS.register("lookup", LookupEvaluator)
EVALUATORS.register("weight_sharing", WeightSharingEvaluator)
EVALUATORS.register("scratch", ScratchEvaluator)


def register_evaluator(name: str, factory: Callable[..., Evaluator[Any]] | None = None) -> Any:
    """Register an evaluator (an :class:`Evaluator` subclass or a factory taking the space first) by name;
    without ``factory``, a decorator."""
    return EVALUATORS.register(name) if factory is None else EVALUATORS.register(name, factory)


def list_evaluators() -> list[str]:
    return EVALUATORS.names()


def build_evaluator(name: str, space: SearchSpace[Any] | str | Mapping[str, Any], **kwargs: Any) -> Evaluator[Any]:
    """The evaluator registered as ``name`` for ``space``; ``kwargs`` (a configuration's ``evaluator_args``)
    are checked against its constructor's keywords before it is built, so that a misspelt key is named
    before anything is loaded."""
    factory = EVALUATORS.get(name)
    check_keywords(f"evaluator_args of the evaluator {name!r}", kwargs, factory, given=("space",))
    return factory(space, **kwargs)
