"""Trials on Ray (the ``ray`` executor), on one local Ray instance shared by these tests (2 CPUs, no dashboard):
parity with the sequential executor, a dying worker survived, a trial that runs too long, a search resumed with
trials in flight, and a GPU request that no worker can meet."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import ray  # the dev extra installs it
import torch

from darts_lightning import DiscreteSearch
from darts_lightning.discrete.evaluation import Evaluation, Evaluator
from darts_lightning.discrete.evaluators import build_evaluator
from darts_lightning.discrete.executors import SequentialExecutor
from darts_lightning.discrete.loop import SearchLoop
from darts_lightning.discrete.ray_executor import RayExecutor
from darts_lightning.discrete.searchers import build_searcher
from tests.searches import StopAfterEvaluations, fit_discrete


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import the tests
    yield
    ray.shutdown()


class _Faulty(Evaluator):
    """Scores a cell by its convolutions; kills its worker process every time on the cells of ``die_always`` and
    the first time on those of ``die_once`` (a marker file remembers it); sleeps ``sleep`` seconds on the cells
    whose first edge is ``avg_pool_3x3``."""

    def __init__(self, space, markers: str, die_always=(), die_once=(), sleep: float = 0.0) -> None:
        super().__init__(space)
        self.markers, self.die_always, self.die_once, self.sleep = markers, set(die_always), set(die_once), sleep

    def evaluate(self, arch) -> Evaluation:
        text = self.space.format(arch)
        marker = Path(self.markers) / str(sorted(self.die_once).index(text) if text in self.die_once else "")
        if text in self.die_always or (text in self.die_once and not marker.exists()):
            marker.touch()
            os._exit(1)
        if arch.ops[0] == "avg_pool_3x3" and self.sleep:
            time.sleep(self.sleep)
        return Evaluation(reward=float(sum(op.startswith("nor_conv") for op in arch.ops)))


def test_seeded_random_search_evaluates_the_same_cells_on_two_workers():
    def run(executor):
        loop = SearchLoop(build_searcher("random", "nasbench201", seed=3), build_evaluator("lookup", "nasbench201"),
                          max_samples=1000, executor=executor)
        loop.run(budget=8)
        return {h["arch"]: h["reward"] for h in loop.history}

    assert run(RayExecutor(workers=2)) == run(SequentialExecutor())


def test_a_dying_worker_is_retried_and_then_recorded_as_failed(tmp_path):
    """A cell whose worker process exits every time is run twice (max_retries 1) and recorded as failed with
    what happened to its worker; the search evaluates its budget of other cells. (Each death costs a new worker
    process, so one cell dies: a retry that succeeds is the sequential executor's test.)"""
    proposals = build_searcher("random", "nasbench201", seed=0)
    first = [proposals.space.format(proposals.ask()) for _ in range(3)]
    evaluator = _Faulty("nasbench201", str(tmp_path), die_always=[first[1]])
    loop = SearchLoop(build_searcher("random", "nasbench201", seed=0), evaluator, max_samples=1000,
                      executor=RayExecutor(workers=2, max_retries=1))
    loop.run(budget=6)
    entries = {h["arch"]: h for h in loop.history}
    assert entries[first[1]]["reward"] is None and entries[first[1]]["attempts"] == 2, entries[first[1]]
    assert "Worker" in entries[first[1]]["failed"] or "died" in entries[first[1]]["failed"], entries[first[1]]
    assert loop.evaluated == 6 and loop.failed == 1


def test_a_trial_that_runs_too_long_is_cancelled_and_recorded(tmp_path):
    """The cells whose first edge is avg_pool_3x3 sleep for a minute; the others take milliseconds (a limit of
    several seconds leaves room for a worker that restarts after a cancellation to import torch again)."""
    evaluator = _Faulty("nasbench201", str(tmp_path), sleep=60.0)
    loop = SearchLoop(build_searcher("random", "nasbench201", seed=5), evaluator, max_samples=1000,
                      executor=RayExecutor(workers=2, trial_timeout=6.0))
    started = time.monotonic()
    loop.run(budget=4)
    assert time.monotonic() - started < 45, "the search waited for the sleeping trials"
    timed_out = [h for h in loop.history if h.get("failed") == "timed out after 6 s"]
    assert timed_out and all(h["arch"].startswith("|avg_pool_3x3~0|") for h in timed_out), loop.history
    assert loop.evaluated == 4 and all(not h["arch"].startswith("|avg_pool_3x3~0|") for h in loop.evaluations())


def test_a_gpu_request_on_a_cluster_without_gpus_is_refused_instead_of_waiting():
    executor = RayExecutor(resources_per_trial={"gpu": 1})
    with pytest.raises(ValueError, match="asks for 1 GPU per trial, but the Ray cluster has 0: no trial could ever start"):
        executor.submit(1, None, build_evaluator("lookup", "nasbench201"))


def test_workers_default_to_what_the_cluster_holds():
    assert RayExecutor().capacity == 2  # the 2 CPUs of the test instance, 1 per trial
    assert RayExecutor(resources_per_trial={"cpu": 2}).capacity == 1
    assert RayExecutor(workers=3).capacity == 3


def test_a_search_on_ray_resumes_with_its_trials_in_flight(tmp_path):
    def fit(root, callbacks=(), ckpt_path=None):
        model = DiscreteSearch(executor={"class_path": "darts_lightning.discrete.ray_executor.RayExecutor",
                                         "init_args": {"workers": 2}}, budget=10, seed=2)
        fit_discrete(model, root, callbacks, ckpt_path)
        return model

    fit(tmp_path / "first", [StopAfterEvaluations(4)])
    state = tmp_path / "first" / "lightning_logs" / "version_0" / "checkpoints" / "search_state.ckpt"
    pending = torch.load(state, weights_only=True)["discrete_search"]["pending"]
    assert pending, "a trial was in flight when the search stopped"
    resumed = fit(tmp_path / "resumed", ckpt_path=state)
    samples = {h["sample"]: h["arch"] for h in resumed.history}
    assert all(samples.get(record["sample"]) == record["arch"] for record in pending)
    assert resumed.loop.evaluated == 10


def test_the_protocol_runs_each_stage_as_ray_tasks(tmp_path):
    """Two searches and their two selections, each stage at once as Ray tasks, then the final run:
    the record is complete, and each run did what its stage asks (the checks of the sequential protocol test)."""
    from darts_lightning import Genotype
    from darts_lightning.data import DIGITS_TEST_SIZE
    from darts_lightning.entry.protocol import choose, run_protocol
    from tests.entry.test_protocol import REPO, RETRAIN_ARGS, SEARCH_ARGS

    record = run_protocol(REPO / "configs" / "darts_digits.yaml", REPO / "configs" / "retrain_digits.yaml",
                          search_seeds=[0, 1], selection_epochs=1, final_seeds=[0], output=tmp_path / "ray",
                          search_args=SEARCH_ARGS.split(), retrain_args=RETRAIN_ARGS.split(), executor="ray")
    assert [s["seed"] for s in record["searches"]] == [0, 1]
    for search in record["searches"]:
        assert Genotype.load(search["genotype_file"]) == Genotype.parse(search["genotype"])
        assert 0.15 <= search["selection_score"] <= 1.0
        assert "holdout: true" in (Path(search["selection_log_dir"]) / "config.yaml").read_text()
    assert record["chosen_seed"] == choose(record["searches"])["seed"]
    assert record["selection_eval_size"] == 750 and record["final_eval_size"] == DIGITS_TEST_SIZE
    assert [f["seed"] for f in record["final"]] == [0] and 0.5 <= record["final"][0]["test_acc"] <= 1.0
    with pytest.raises(ValueError, match="each run asks for 1 GPU, but the Ray cluster has 0"):
        run_protocol(search_seeds=[0], final_seeds=[0], output=tmp_path / "gpu", executor="ray", gpus_per_run=1)
