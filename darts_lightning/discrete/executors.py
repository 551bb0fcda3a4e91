"""How a discrete search runs its trials: one evaluation of one architecture, with retries.

An :class:`Executor` takes trials (:meth:`Executor.submit`) and hands back finished ones in the order they
finish (:meth:`Executor.wait`); :attr:`Executor.capacity` trials may be in flight at once. A trial whose
evaluator raises, or whose reward is not finite, is run again up to ``max_retries`` times and then reported as
a :class:`TrialFailure` with its last error: the search records it as failed and goes on, never evaluating that
architecture again.

Shipped: :class:`SequentialExecutor` (``sequential``, the default): one trial at a time, in this process;
:class:`ReplayExecutor` (``replay``): several in flight, finished in a recorded order, to repeat a run whose
trials finished in that order.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from darts_lightning.discrete.evaluation import Evaluation, Evaluator
from darts_lightning.utils.components import Component, build_component
from darts_lightning.utils.registry import Registry
from darts_lightning.utils.validation import check_range

__all__ = ["Executor", "SequentialExecutor", "ReplayExecutor", "TrialFailure", "EXECUTORS", "register_executor", "build_executor",
           "run_trial"]


@dataclass(frozen=True)
class TrialFailure:
    """A trial that failed every attempt: the last error and the number of attempts."""

    error: str
    attempts: int


def run_trial(evaluator: Evaluator[Any], arch: Any, max_retries: int) -> Evaluation | TrialFailure:
    """Evaluate ``arch``, again after an exception or a non-finite reward, at most ``1 + max_retries`` times."""
    error = ""
    attempts = max_retries + 1
    for _ in range(attempts):
        try:
            evaluation = evaluator.evaluate(arch)
        except Exception as exception:  # noqa: BLE001 - any failure of the evaluator is the trial's, not the search's
            error = f"{type(exception).__name__}: {exception}"
            continue
        if math.isfinite(evaluation.reward):
            return evaluation
        error = f"the reward is {evaluation.reward}, not a finite number"
    return TrialFailure(error, attempts)


class Executor(Component):
    """Base class: runs trials (``evaluator.evaluate(arch)`` with retries) for a search.

    Args:
        max_retries: how many times a failed trial is run again before it is reported as failed.
    """

    @property
    def capacity(self) -> int:
        """Trials in flight at once (one by default)."""
        return 1

    def __init__(self, max_retries: int = 0) -> None:
        check_range("max_retries", max_retries, 0, integer=True)
        self.max_retries = max_retries

    def submit(self, trial: int, arch: Any, evaluator: Evaluator[Any]) -> None:
        """Start trial number ``trial`` (the search's proposal number) on ``arch``."""
        raise NotImplementedError

    def wait(self) -> list[tuple[int, Evaluation | TrialFailure]]:
        """Block until at least one trial finishes; ``(trial, outcome)`` of the finished ones, in the order they
        finished."""
        raise NotImplementedError

    def pending(self) -> list[int]:
        """The trials submitted and not yet handed back by :meth:`wait`."""
        raise NotImplementedError

    def close(self) -> None:
        """Called when the search ends or stops: drop the trials still in flight (the search state holds them
        and a resumed search submits them again) and free what the executor started. Nothing by default."""


EXECUTORS: Registry[Executor] = Registry("executor")


def register_executor(name: str, factory: Callable[..., Executor] | None = None) -> Any:
    """Register an executor by name; without ``factory``, a decorator."""
    return EXECUTORS.register(name) if factory is None else EXECUTORS.register(name, factory)


@register_executor("sequential")
class SequentialExecutor(Executor):
    """One trial at a time, in the search's own process: :meth:`wait` runs the oldest submitted trial."""

    def __init__(self, max_retries: int = 0) -> None:
        super().__init__(max_retries)
        self._queue: deque[tuple[int, Any, Evaluator[Any]]] = deque()

    def submit(self, trial: int, arch: Any, evaluator: Evaluator[Any]) -> None:
        self._queue.append((trial, arch, evaluator))

    def wait(self) -> list[tuple[int, Evaluation | TrialFailure]]:
        if not self._queue:
            raise RuntimeError("no trial is pending: submit one before waiting")
        trial, arch, evaluator = self._queue.popleft()
        return [(trial, run_trial(evaluator, arch, self.max_retries))]

    def pending(self) -> list[int]:
        return [trial for trial, _, _ in self._queue]


@register_executor("replay")
class ReplayExecutor(SequentialExecutor):
    """Replays a search whose trials finished in some order: ``capacity`` trials in flight, finished in the
    recorded ``order`` (:func:`darts_lightning.discrete.loop.finish_order` of the run's ``history.json``: the
    ``sample`` of each evaluated or failed entry in order; with a fidelity schedule, every rung's trial).
    With the same seed and settings, a searcher whose proposals depend on the order results came back in
    proposes again what it proposed then, so the search repeats the run that recorded the order."""

    def __init__(self, order: list[int], capacity: int = 1, max_retries: int = 0) -> None:
        super().__init__(max_retries)
        check_range("capacity", capacity, 1, integer=True)
        self.order, self._capacity = [int(trial) for trial in order], capacity
        self._next = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    def wait(self) -> list[tuple[int, Evaluation | TrialFailure]]:
        trials = {trial: index for index, (trial, _, _) in enumerate(self._queue)}
        while self._next < len(self.order) and self.order[self._next] not in trials:
            self._next += 1  # a trial of the order that this run never submitted (it stopped earlier)
        if self._next >= len(self.order):
            return super().wait()  # past the recorded order: the oldest first
        trial, arch, evaluator = self._queue[trials[self.order[self._next]]]
        del self._queue[trials[self.order[self._next]]]
        self._next += 1
        return [(trial, run_trial(evaluator, arch, self.max_retries))]


def build_executor(value: str | Executor | dict[str, Any] | None) -> Executor:
    """An executor by registered name, ``{"class_path", "init_args"}``, the instance, or ``None`` (sequential)."""
    if value is None:
        return SequentialExecutor()
    return build_component(value, Executor, "executor", registry=EXECUTORS.get)
