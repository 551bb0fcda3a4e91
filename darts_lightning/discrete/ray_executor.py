"""Trials on a Ray cluster (``executor: ray``): several at once, each a Ray task with its own resources.

Why Ray core tasks rather than Ray Tune: the search loop is the package's own (ask/tell, the budget counted in
distinct architectures by the space's isomorphism-aware key, refusals over cost budgets, failed and in-flight
architectures never run twice, its state in Lightning checkpoints after every result). Tune would own that loop
and its checkpoints instead. What the loop needs from Ray is what its core gives directly: a task per trial with
per-trial resources (``num_cpus``, ``num_gpus``), results in the order they finish (``ray.wait``), a worker that
dies reported as an error (``WorkerCrashedError``), and cancellation for a trial that runs too long.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from darts_lightning.discrete.evaluation import Evaluation, Evaluator
from darts_lightning.discrete.executors import Executor, TrialFailure, register_executor
from darts_lightning.utils.validation import check_keywords, check_range

__all__ = ["RayExecutor", "RAY_INSTALL"]

#: What installs Ray for the ``ray`` executor.
RAY_INSTALL = "pip install darts-lightning[ray]"


def _evaluate(evaluator: Evaluator[Any], arch: Any, threads: int) -> Evaluation:
    """One trial in a Ray worker: the evaluator on ``arch`` with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    return evaluator.evaluate(arch)


@dataclass
class _Trial:
    trial: int
    arch: Any
    evaluator: Evaluator[Any]
    attempts: int
    started: float


@register_executor("ray")
class RayExecutor(Executor):
    """Run up to ``workers`` trials at once as Ray tasks.

    Args:
        address: the Ray cluster to join (``ray.init(address)``; ``"auto"``: the one started on this machine);
            ``None``: start a local Ray instance (no dashboard) unless one is running in this process.
        workers: trials in flight at once.
        resources_per_trial: ``{"cpu": ..., "gpu": ...}`` each trial reserves (1 CPU, no GPU by default). A request
            the cluster cannot meet (a GPU on a cluster without one) is refused at the first trial instead of
            waiting forever.
        trial_timeout: seconds after which a running trial is cancelled and counts as failed (``None``: none).
        max_retries: runs of a failed trial again (an exception, a non-finite reward, a dead worker, a timeout).
        threads_per_trial: torch threads in each trial (one per reserved CPU by default).
    """

    def __init__(self, address: str | None = None, workers: int = 2, resources_per_trial: Mapping[str, float] | None = None,
                 trial_timeout: float | None = None, max_retries: int = 0, threads_per_trial: int | None = None) -> None:
        super().__init__(max_retries)
        check_range("workers", workers, 1, integer=True)
        check_range("trial_timeout", trial_timeout, 0, low_open=True, optional=True, hint="seconds; None: no limit")
        check_range("threads_per_trial", threads_per_trial, 1, integer=True, optional=True)
        resources = {"cpu": 1.0, "gpu": 0.0, **dict(resources_per_trial or {})}
        check_keywords("resources_per_trial", {k: v for k, v in resources.items()}, lambda cpu=1.0, gpu=0.0: None)
        for name, amount in resources.items():
            check_range(f"resources_per_trial.{name}", amount, 0)
        self.address, self.capacity = address, workers
        self.resources, self.trial_timeout = resources, trial_timeout
        self.threads = threads_per_trial or max(1, int(resources["cpu"]))
        self._in_flight: dict[Any, _Trial] = {}
        self._task: Any = None
        self._shared: dict[int, Any] = {}  # evaluators put in the object store once, by id

    # ------------------------------------------------------------------ Ray

    def _ray(self) -> Any:
        try:
            return importlib.import_module("ray")
        except ImportError as error:
            raise ImportError(f"the ray executor needs Ray: {RAY_INSTALL}") from error

    def _start(self) -> Any:
        ray = self._ray()
        if self._task is not None:
            return ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        available = ray.cluster_resources()
        for name, key in (("cpu", "CPU"), ("gpu", "GPU")):
            if self.resources[name] > available.get(key, 0.0):
                raise ValueError(
                    f"resources_per_trial asks for {self.resources[name]:g} {name.upper()} per trial, but the Ray "
                    f"cluster has {available.get(key, 0.0):g}: no trial could ever start; lower the request or join "
                    "a cluster that has them (address)"
                )
        self._task = ray.remote(_evaluate).options(num_cpus=self.resources["cpu"], num_gpus=self.resources["gpu"],
                                                   max_retries=0)
        return ray

    def _submit(self, record: _Trial) -> None:
        ray = self._start()
        key = id(record.evaluator)
        if key not in self._shared:
            self._shared[key] = ray.put(record.evaluator)
        record.started = time.monotonic()
        self._in_flight[self._task.remote(self._shared[key], record.arch, self.threads)] = record

    # ------------------------------------------------------------------ the executor contract

    def submit(self, trial: int, arch: Any, evaluator: Evaluator[Any]) -> None:
        self._submit(_Trial(trial, arch, evaluator, 1, 0.0))

    def pending(self) -> list[int]:
        return [record.trial for record in self._in_flight.values()]

    def wait(self) -> list[tuple[int, Evaluation | TrialFailure]]:
        if not self._in_flight:
            raise RuntimeError("no trial is pending: submit one before waiting")
        ray = self._start()
        while True:
            timeout = None
            if self.trial_timeout is not None:
                earliest = min(record.started for record in self._in_flight.values())
                timeout = max(0.0, earliest + self.trial_timeout - time.monotonic())
            ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=timeout)
            finished: list[tuple[Any, str | Evaluation]] = []
            if ready:
                try:
                    evaluation = ray.get(ready[0])
                    finished.append((ready[0], evaluation if math.isfinite(evaluation.reward) else
                                     f"the reward is {evaluation.reward}, not a finite number"))
                except ray.exceptions.RayError as error:
                    finished.append((ready[0], _describe(error)))
            else:
                now = time.monotonic()
                for ref, record in list(self._in_flight.items()):
                    if now - record.started >= (self.trial_timeout or math.inf):
                        ray.cancel(ref, force=True)
                        finished.append((ref, f"timed out after {self.trial_timeout:g} s"))
            results: list[tuple[int, Evaluation | TrialFailure]] = []
            for ref, outcome in finished:
                record = self._in_flight.pop(ref)
                if isinstance(outcome, Evaluation):
                    results.append((record.trial, outcome))
                elif record.attempts <= self.max_retries:
                    record.attempts += 1
                    self._submit(record)
                else:
                    results.append((record.trial, TrialFailure(outcome, record.attempts)))
            if results:
                return results


def _describe(error: BaseException) -> str:
    """A one-line reason for a failed Ray task: the trial's own exception, or what happened to its worker."""
    cause = getattr(error, "cause", None)
    if cause is not None and not isinstance(cause, type):
        return f"{type(cause).__name__}: {cause}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}"[:500]
