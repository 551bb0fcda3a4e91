"""Multi-fidelity trials: asynchronous successive halving over training epochs (ASHA; Li et al., "A System for
Massively Parallel Hyperparameter Tuning", MLSys 2020, Algorithm 2).

Every new architecture is first trained for the fewest epochs (rung 0). Rung ``k`` trains for
``min_epochs · eta^k`` epochs, up to ``max_epochs``. Whenever a trial can start, the highest rung with an
architecture among the best ``1/eta`` of its results that has not been promoted yet promotes it: that
architecture is trained again at the next rung's epochs. Only when no rung can promote does the searcher propose
a new architecture. No trial waits for a rung to fill, so workers never idle (the asynchronous variant).

It combines with any searcher, as BOHB combines a model with Hyperband: the searcher proposes the new
architectures and is told their reward at rung 0, where every architecture is measured, so that it compares
like with like; the promotions are the schedule's. The search's answer is the best architecture of the highest
rung any architecture reached.

A promoted architecture trains from scratch at its rung's epochs rather than continuing its previous training:
the training's cosine schedule spans its whole length, so a longer training is a different run (as the 12- and
200-epoch results of NAS-Bench-201 are). This costs up to ``1/(eta - 1)`` more epochs than continuing would.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from darts_lightning.utils.components import Component, build_component
from darts_lightning.utils.validation import check_keywords, check_range

__all__ = ["SuccessiveHalving", "build_fidelity"]


class SuccessiveHalving(Component):
    """ASHA's rungs and promotion rule over training epochs.

    Args:
        min_epochs: epochs of rung 0, where every new architecture starts.
        max_epochs: the most epochs a rung trains; the rungs are ``min_epochs · eta^k`` up to it.
        eta: the reduction factor: the best ``1/eta`` of a rung's results are promoted (3, as in the paper).
    """

    def __init__(self, min_epochs: int = 1, max_epochs: int = 9, eta: int = 3) -> None:
        check_range("min_epochs", min_epochs, 1, integer=True)
        check_range("eta", eta, 2, integer=True, hint="the best 1/eta of a rung are promoted (ASHA: 3)")
        check_range("max_epochs", max_epochs, min_epochs * eta, integer=True,
                    hint=f"at least min_epochs · eta = {min_epochs * eta}, so that there are two rungs")
        self.min_epochs, self.max_epochs, self.eta = min_epochs, max_epochs, eta
        rungs = [min_epochs]
        while rungs[-1] * eta <= max_epochs:
            rungs.append(rungs[-1] * eta)
        #: epochs of each rung, from rung 0
        self.rungs: list[int] = rungs

    def promotion(
        self, results: Sequence[Mapping[Hashable, float]], started: Sequence[set[Hashable]],
    ) -> tuple[Hashable, int] | None:
        """The architecture to promote now and the rung it goes to, or ``None``.

        ``results[k]``: reward by architecture key of the finished trials of rung ``k``, in the order they
        finished; ``started[k]``: the keys with a trial at rung ``k`` (finished or in flight). From the top rung
        down, the first architecture among the ``len(results[k]) // eta`` best of rung ``k`` (ties: the earlier
        result) that has no trial at rung ``k + 1``.
        """
        for k in reversed(range(len(self.rungs) - 1)):
            finished = results[k] if k < len(results) else {}
            best = sorted(finished, key=lambda key: -finished[key])[: len(finished) // self.eta]
            for key in best:
                if key not in (started[k + 1] if k + 1 < len(started) else set()):
                    return key, k + 1
        return None


def build_fidelity(value: SuccessiveHalving | Mapping[str, Any] | None) -> SuccessiveHalving | None:
    """The schedule from an instance, ``{"class_path", "init_args"}`` or its arguments; ``None``: one fidelity."""
    if value is None:
        return None
    if isinstance(value, Mapping) and "class_path" not in value:
        check_keywords("fidelity", value, SuccessiveHalving)
        return SuccessiveHalving(**value)
    return build_component(value, SuccessiveHalving, "fidelity")
