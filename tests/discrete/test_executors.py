"""Trials and their faults: a trial whose evaluator raises or gives a non-finite reward is run again up to
max_retries times, then recorded as failed; the search goes on and never runs that architecture again."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import pytorch_lightning as pl

from darts_lightning import DiscreteSearch
from darts_lightning.discrete.evaluation import Evaluation, Evaluator
from darts_lightning.discrete.evaluators import list_evaluators, register_evaluator
from darts_lightning.discrete.executors import SequentialExecutor, TrialFailure, run_trial
from tests.searches import StopAfterEvaluations, fit_discrete


class _Flaky(Evaluator):
    """Raises for cells whose first edge is ``none``, gives NaN for those whose first edge is ``skip_connect``,
    fails once before succeeding for those whose first edge is ``avg_pool_3x3``, and scores the rest."""

    calls: Counter = Counter()

    def evaluate(self, arch) -> Evaluation:
        text = self.space.format(arch)
        _Flaky.calls[text] += 1
        first = arch.ops[0]
        if first == "none":
            raise RuntimeError("out of memory in this trial")
        if first == "skip_connect":
            return Evaluation(reward=math.nan)
        if first == "avg_pool_3x3" and _Flaky.calls[text] == 1:
            raise ConnectionError("worker lost")
        return Evaluation(reward=float(sum(op.startswith("nor_conv") for op in arch.ops)))


if "_flaky_for_tests" not in list_evaluators():
    register_evaluator("_flaky_for_tests", _Flaky)


def test_run_trial_retries_and_then_reports_the_last_error():
    class Counting(Evaluator):
        def __init__(self, failures: int) -> None:
            super().__init__("nasbench201")
            self.failures, self.calls = failures, 0

        def evaluate(self, arch) -> Evaluation:
            self.calls += 1
            if self.calls <= self.failures:
                raise ValueError(f"attempt {self.calls}")
            return Evaluation(reward=1.0)

    assert run_trial(Counting(2), None, max_retries=2) == Evaluation(reward=1.0)
    failure = run_trial(Counting(5), None, max_retries=2)
    assert failure == TrialFailure("ValueError: attempt 3", 3)
    with pytest.raises(RuntimeError, match="no trial is pending"):
        SequentialExecutor().wait()


def test_a_search_records_failed_trials_and_goes_on(tmp_path):
    _Flaky.calls.clear()
    model = DiscreteSearch(evaluator="_flaky_for_tests", executor={"class_path":
                           "darts_lightning.discrete.executors.SequentialExecutor", "init_args": {"max_retries": 1}},
                           budget=30, seed=0)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, default_root_dir=str(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, logger=False)
    trainer.fit(model)
    evaluated = [h for h in model.history if h["reward"] is not None]
    failed = [h for h in model.history if "failed" in h]
    assert len(evaluated) == 30, "failures spend no budget"
    assert failed and all(h["attempts"] == 2 for h in failed)
    assert {h["failed"] for h in failed} <= {"RuntimeError: out of memory in this trial",
                                             "the reward is nan, not a finite number"}
    assert all(not h["arch"].startswith(("|none~0|", "|skip_connect~0|")) for h in evaluated)
    retried = [h for h in evaluated if h["arch"].startswith("|avg_pool_3x3~0|")]
    assert retried and all(_Flaky.calls[h["arch"]] == 2 for h in retried), "one failure, one retry that succeeded"
    assert max(_Flaky.calls.values()) <= 2, "a failed architecture is never run again"
    assert model.hparams["executor"]["init_args"] == {"max_retries": 1}


class _LastFirst(SequentialExecutor):
    """Three trials in flight, finished newest first: an executor whose trials complete out of order."""

    capacity = 3

    def wait(self):
        trial, arch, evaluator = self._queue.pop()
        return [(trial, run_trial(evaluator, arch, self.max_retries))]


@pytest.mark.parametrize("searcher", ["random", "regularized_evolution", "local_search", "reinforce"])
def test_several_trials_in_flight_complete_out_of_order(searcher):
    from darts_lightning.discrete.evaluators import build_evaluator
    from darts_lightning.discrete.loop import SearchLoop
    from darts_lightning.discrete.searchers import build_searcher

    def run(executor):
        evaluator = build_evaluator("lookup", "nasbench201")
        submitted = []
        submit = executor.submit
        executor.submit = lambda trial, arch, ev: (submitted.append(evaluator.space.key(arch)), submit(trial, arch, ev))
        loop = SearchLoop(build_searcher(searcher, "nasbench201", seed=4), evaluator, max_samples=2000,
                          executor=executor)
        loop.run(budget=25)
        return loop, submitted

    loop, submitted = run(_LastFirst())
    assert loop.evaluated == 25 and not loop._pending, "the budget is spent exactly, nothing left in flight"
    assert len(submitted) == len(set(submitted)) == 25, "no architecture is run twice"
    assert [h["sample"] for h in loop.history] != sorted(h["sample"] for h in loop.history), "completion order"
    if searcher == "random":
        sequential, _ = run(SequentialExecutor())
        assert {h["arch"] for h in loop.history} == {h["arch"] for h in sequential.history}


def test_a_resumed_search_runs_again_the_trials_its_checkpoint_left_in_flight(tmp_path):
    import torch

    def fit(root, callbacks=(), ckpt_path=None):
        model = DiscreteSearch(executor=_LastFirst(), budget=20, seed=1)
        return model, fit_discrete(model, root, callbacks, ckpt_path)

    first, trainer = fit(tmp_path / "first", [StopAfterEvaluations(5)])
    state_path = tmp_path / "first" / "lightning_logs" / "version_0" / "checkpoints" / "search_state.ckpt"
    pending = torch.load(state_path, weights_only=True)["discrete_search"]["pending"]
    # three in flight, one just finished: two were still running when the state was saved
    assert first.loop.evaluated == 5 and len(pending) == 2
    resumed, _ = fit(tmp_path / "resumed", ckpt_path=state_path)
    samples = {h["sample"]: h for h in resumed.history}
    assert all(record["sample"] in samples and samples[record["sample"]]["arch"] == record["arch"]
               and samples[record["sample"]]["reward"] is not None for record in pending)
    keys = [resumed.space.key(resumed.space.parse(h["arch"])) for h in resumed.history]
    assert resumed.loop.evaluated == 20 and len(keys) == len(set(keys)) == 20


@pytest.mark.parametrize("searcher", ["regularized_evolution", "reinforce"])
def test_the_recorded_completion_order_replays_the_run(searcher):
    from darts_lightning.discrete.evaluators import build_evaluator
    from darts_lightning.discrete.executors import ReplayExecutor
    from darts_lightning.discrete.loop import SearchLoop
    from darts_lightning.discrete.searchers import build_searcher

    def run(executor):
        loop = SearchLoop(build_searcher(searcher, "nasbench201", seed=7, **({"population_size": 5} if "evol" in searcher
                                                                             else {})),
                          build_evaluator("lookup", "nasbench201"), max_samples=2000, executor=executor)
        loop.run(budget=25)
        return [(h["sample"], h["arch"]) for h in loop.history]

    recorded = run(_LastFirst())
    assert run(ReplayExecutor([sample for sample, _ in recorded], capacity=3)) == recorded
    in_submission_order = run(ReplayExecutor(sorted(sample for sample, _ in recorded), capacity=3))
    assert in_submission_order != recorded, "another completion order makes another run"
