"""Trials on a Ray cluster (``executor: ray``): several at once, each a Ray task with its own resources.

Why Ray core tasks rather than Ray Tune: the search loop is the package's own (ask/tell, the budget counted in
distinct architectures by the space's isomorphism-aware key, refusals over cost budgets, failed and in-flight
architectures never run twice, promotions between fidelities, its state in Lightning checkpoints after every
result, resumed with ``fit --ckpt_path``). A Tune ``Tuner`` owns the loop instead: its searcher interface
(``suggest``/``on_trial_complete``) would have to carry all of that, and its experiment restore would hold a
second copy of the search state beside the Lightning checkpoint. What the loop needs from Ray is what its core
gives directly: a task per trial with per-trial resources (``num_cpus``, ``num_gpus``), results in the order
they finish (``ray.wait``), a worker that dies reported as an error (``WorkerCrashedError``), and cancellation
of a trial that runs too long. Ray's own task retries are off: retries are the executor's (``max_retries``,
the same rule as the sequential executor's).

On a cluster, every node needs the package (and the evaluator's data) where the driver has them: install it
there, or give a ``runtime_env`` (e.g. ``{"pip": ["darts-lightning"]}``).
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
RAY_INSTALL = 'pip install "darts-lightning[ray]"'


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
    """Run several trials at once as Ray tasks.

    Args:
        address: the Ray cluster to join (``ray.init(address)``; ``"auto"``: the one started on this machine
            with ``ray start``); ``None``: start a local Ray instance (no dashboard), unless this process has
            one already.
        workers: trials in flight at once; ``None``: as many as the cluster's CPUs (and GPUs) hold at
            ``resources_per_trial``.
        resources_per_trial: ``{"cpu": ..., "gpu": ...}`` each trial reserves (1 CPU and no GPU by default). A
            request the cluster cannot meet (a GPU on a cluster without one) is refused at the first trial with
            an error, instead of waiting forever.
        trial_timeout: seconds after which a running trial is cancelled (its worker is killed) and counts as a
            failed attempt; ``None``: no limit.
        max_retries: runs of a failed trial again: after an exception, a non-finite reward, a dead worker or a
            timeout; then the trial is recorded as failed with its last error.
        threads_per_trial: torch threads in each trial (the reserved CPUs, at least one, by default).
        runtime_env: Ray's runtime environment for the trials (packages, working directory) on a cluster.
    """

    def __init__(self, address: str | None = None, workers: int | None = None,
                 resources_per_trial: Mapping[str, float] | None = None, trial_timeout: float | None = None,
                 max_retries: int = 0, threads_per_trial: int | None = None,
                 runtime_env: Mapping[str, Any] | None = None) -> None:
        super().__init__(max_retries)
        check_range("workers", workers, 1, integer=True, optional=True, hint="None: as many as the cluster holds")
        check_range("trial_timeout", trial_timeout, 0, low_open=True, optional=True, hint="seconds; None: no limit")
        check_range("threads_per_trial", threads_per_trial, 1, integer=True, optional=True)
        resources = {"cpu": 1.0, "gpu": 0.0, **dict(resources_per_trial or {})}
        check_keywords("resources_per_trial", resources, lambda cpu=1.0, gpu=0.0: None)
        for name, amount in resources.items():
            check_range(f"resources_per_trial.{name}", amount, 0)
        self.address, self.workers = address, workers
        self.resources, self.trial_timeout = resources, trial_timeout
        self.threads = threads_per_trial or max(1, int(resources["cpu"]))
        self.runtime_env = dict(runtime_env) if runtime_env is not None else None
        self._in_flight: dict[Any, _Trial] = {}
        self._task: Any = None
        self._capacity: int | None = workers
        self._started_ray = False
        self._shared: dict[int, tuple[Evaluator[Any], Any]] = {}  # evaluators in the object store, by id

    @property
    def capacity(self) -> int:
        """Trials in flight at once (``workers``, or what the cluster holds; asking starts Ray)."""
        if self._capacity is None:
            self._start()
        assert self._capacity is not None
        return self._capacity

    # ------------------------------------------------------------------ Ray

    @staticmethod
    def _ray() -> Any:
        try:
            return importlib.import_module("ray")
        except ImportError as error:
            raise ImportError(f"the ray executor needs Ray, which is not installed: {RAY_INSTALL}") from error

    def _start(self) -> Any:
        ray = self._ray()
        if self._task is not None:
            return ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     runtime_env=self.runtime_env)
            self._started_ray = True
        available = ray.cluster_resources()
        fits = []
        for name, key in (("cpu", "CPU"), ("gpu", "GPU")):
            have, need = available.get(key, 0.0), self.resources[name]
            if need > have:
                raise ValueError(
                    f"resources_per_trial asks for {need:g} {name.upper()} per trial, but the Ray cluster has "
                    f"{have:g}: no trial could ever start; lower resources_per_trial.{name} or join a cluster that "
                    "has them (address)"
                )
            if need > 0:
                fits.append(int(have // need))
        if self._capacity is None:
            self._capacity = max(1, min(fits, default=1))
        self._task = ray.remote(_evaluate).options(num_cpus=self.resources["cpu"], num_gpus=self.resources["gpu"],
                                                   max_retries=0)
        return ray

    def _submit(self, record: _Trial) -> None:
        ray = self._start()
        key = id(record.evaluator)
        if key not in self._shared:  # the evaluator is kept with its reference, so that its id stays its own
            self._shared[key] = (record.evaluator, ray.put(record.evaluator))
        record.started = time.monotonic()
        self._in_flight[self._task.remote(self._shared[key][1], record.arch, self.threads)] = record

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
                    if self.trial_timeout is not None and now - record.started >= self.trial_timeout:
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

    def close(self) -> None:
        """Cancel the trials in flight (a resumed search submits them again) and shut down the Ray instance this
        executor started."""
        if self._task is None:
            return
        ray = self._ray()
        for ref in self._in_flight:
            ray.cancel(ref, force=True)
        self._in_flight.clear()
        self._shared.clear()
        self._task = None
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False
        self._capacity = self.workers


def _describe(error: BaseException) -> str:
    """A one-line reason for a failed Ray task: the trial's own exception, or what happened to its worker."""
    cause = getattr(error, "cause", None)
    if cause is not None and not isinstance(cause, type):
        return f"{type(cause).__name__}: {cause}"
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}"[:500]
