"""Successive halving over training epochs (ASHA): rungs, the promotion rule, the search loop with promotions
(in and out of order, replayed, resumed), and the scratch evaluator trained at each rung's epochs."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest
import pytorch_lightning as pl

from darts_lightning import DiscreteSearch
from darts_lightning.discrete.evaluation import Evaluation, Evaluator
from darts_lightning.discrete.executors import ReplayExecutor, SequentialExecutor, run_trial
from darts_lightning.discrete.fidelity import SuccessiveHalving, build_fidelity
from darts_lightning.discrete.loop import SearchLoop, finish_order
from darts_lightning.discrete.scratch import ScratchEvaluator
from darts_lightning.discrete.searchers import build_searcher


class _Trains(Evaluator):
    """Scores a cell by its convolutions plus a cell-specific offset that more epochs shrink (so the ranking
    changes between rungs), and counts its trials by (cell, epochs)."""

    def __init__(self, space="nasbench201", epochs: int = 1, calls: Counter | None = None) -> None:
        super().__init__(space)
        self.epochs = epochs
        self.calls = Counter() if calls is None else calls

    def with_epochs(self, epochs: int) -> _Trains:
        return _Trains(self.space, epochs, self.calls)

    def evaluate(self, arch) -> Evaluation:
        text = self.space.format(arch)
        self.calls[text, self.epochs] += 1
        convs = sum(op.startswith("nor_conv") for op in arch.ops)
        noise = (zlib.crc32(text.encode()) % 1000) / 1000 / self.epochs
        return Evaluation(reward=convs + noise + self.epochs / 100, cost=float(self.epochs))


class _LastFirst(SequentialExecutor):
    """Three trials in flight, finished newest first."""

    capacity = 3

    def wait(self):
        trial, arch, evaluator = self._queue.pop()
        return [(trial, run_trial(evaluator, arch, self.max_retries))]


def test_rungs_are_min_epochs_times_powers_of_eta_up_to_max_epochs():
    assert SuccessiveHalving(1, 9, 3).rungs == [1, 3, 9]
    assert SuccessiveHalving(1, 10, 3).rungs == [1, 3, 9]
    assert SuccessiveHalving(2, 16, 2).rungs == [2, 4, 8, 16]
    assert build_fidelity({"min_epochs": 1, "max_epochs": 4, "eta": 2}).rungs == [1, 2, 4]
    assert build_fidelity(None) is None
    with pytest.raises(ValueError, match="max_epochs.*at least min_epochs · eta = 6"):
        SuccessiveHalving(2, 5, 3)
    with pytest.raises(ValueError, match="eta"):
        SuccessiveHalving(1, 9, 1)
    with pytest.raises(ValueError, match="fidelity.*min_epoch"):
        build_fidelity({"min_epoch": 1})


def test_the_promotion_rule_takes_the_best_third_of_the_highest_rung_first():
    rule = SuccessiveHalving(1, 9, 3)
    results = [{"a": 0.1, "b": 0.5, "c": 0.3}, {}, {}]
    assert rule.promotion(results, [{"a", "b", "c"}, set(), set()]) == ("b", 1)
    assert rule.promotion(results, [{"a", "b", "c"}, {"b"}, set()]) is None  # 3 // 3 = 1 promoted already
    results[0].update({"d": 0.9, "e": 0.0, "f": 0.2})
    assert rule.promotion(results, [set("abcdef"), {"b"}, set()]) == ("d", 1)  # 6 // 3 = 2: d, b
    results[1].update({"b": 0.6, "d": 0.4, "a": 0.7})
    assert rule.promotion(results, [set("abcdef"), {"a", "b", "d"}, set()]) == ("a", 2)  # the top rung first
    tie = [{"x": 0.5, "y": 0.5, "z": 0.5}, {}, {}]
    assert rule.promotion(tie, [{"x", "y", "z"}, set(), set()]) == ("x", 1), "ties: the earlier result"


def _check_asha(loop: SearchLoop, budget: int) -> None:
    """What every ASHA search must satisfy when it ends."""
    rungs = loop.fidelity.rungs
    assert loop.evaluated == budget, "the budget counts distinct architectures"
    assert not loop._pending
    for entry in loop.evaluations():
        assert [r["epochs"] for r in entry["rungs"]] == rungs[: len(entry["rungs"])]
        assert entry["epochs"] == entry["rungs"][-1]["epochs"] and entry["reward"] == entry["rungs"][-1]["reward"]
        assert entry["cost"] == pytest.approx(sum(r["cost"] for r in entry["rungs"]))
    for k in range(len(rungs) - 1):  # at the end, the best 1/eta of every rung has been promoted
        finished = [e for e in loop.evaluations() if len(e["rungs"]) > k]
        best = sorted(finished, key=lambda e: -e["rungs"][k]["reward"])[: len(finished) // loop.fidelity.eta]
        assert all(len(e["rungs"]) > k + 1 for e in best)
    top = max(len(e["rungs"]) for e in loop.evaluations())
    assert loop.best()["epochs"] == rungs[top - 1], "the answer comes from the highest rung reached"


@pytest.mark.parametrize("executor", [SequentialExecutor, _LastFirst])
def test_a_search_promotes_the_best_third_and_runs_each_cell_once_per_rung(executor):
    evaluator = _Trains()
    searcher = build_searcher("regularized_evolution", "nasbench201", seed=1, population_size=6, sample_size=3)
    told = []
    tell = searcher.tell
    searcher.tell = lambda arch, reward: (told.append(reward), tell(arch, reward))[1]
    loop = SearchLoop(searcher, evaluator, max_samples=2000, executor=executor(),
                      fidelity=SuccessiveHalving(1, 9, 3))
    reason = loop.run(budget=27)
    assert reason == "budget of 27 distinct architectures spent"
    _check_asha(loop, 27)
    assert max(evaluator.calls.values()) == 1, "no cell trains twice at one rung"
    by_epochs = Counter(epochs for _, epochs in evaluator.calls)
    # ASHA promotes at least the final best third of each rung, and more when a rung's ranking changes after an
    # early promotion (here the evolution's later cells are better), never all of them
    assert by_epochs[1] == 27 and 9 <= by_epochs[3] < 27 and by_epochs[3] // 3 <= by_epochs[9] < by_epochs[3], by_epochs
    rung0 = [e["rungs"][0]["reward"] for e in loop.history]
    assert len(told) >= 27 and set(told) <= set(rung0), "the searcher is told rung 0's rewards only"


def test_a_recorded_finish_order_replays_an_asynchronous_asha_run():
    def run(executor):
        loop = SearchLoop(build_searcher("regularized_evolution", "nasbench201", seed=4, population_size=5, sample_size=2),
                          _Trains(), max_samples=2000, executor=executor, fidelity=SuccessiveHalving(1, 4, 2))
        loop.run(budget=16)
        return loop.history, finish_order(loop.history)

    history, order = run(_LastFirst())
    assert any(trial < 0 for trial in order), "promotions are trials too"
    replayed, _ = run(ReplayExecutor(order, capacity=3))
    assert replayed == history
    other, _ = run(ReplayExecutor(sorted(order, key=abs), capacity=3))
    assert other != history


def test_a_resumed_asha_search_reruns_its_pending_promotions_at_their_rung():
    class Oldest3(SequentialExecutor):  # three in flight, finished oldest first: a promotion waits its turn
        capacity = 3

    def fresh():
        return SearchLoop(build_searcher("random", "nasbench201", seed=2), _Trains(), max_samples=2000,
                          executor=Oldest3(), fidelity=SuccessiveHalving(1, 9, 3))

    first = fresh()
    for _ in range(40):
        if any(rung > 0 for rung in first._rung_of.values()):
            break
        assert first.step(budget=18) is not None
    pending = first.pending_record()
    assert any(record["rung"] > 0 for record in first.pending_record())
    resumed = fresh()
    state = first.searcher.state_dict()
    resumed.restore(first.history, first.samples, pending)
    resumed.searcher.load_state_dict(state)
    calls = resumed.evaluator.calls
    resumed.run(budget=18)
    _check_asha(resumed, 18)
    for record in pending:
        epochs = resumed.fidelity.rungs[record["rung"]]
        assert calls[record["arch"], epochs] == 1, f"{record} was not run again at {epochs} epochs"
    assert max(calls.values()) == 1


def test_an_evaluator_that_does_not_train_is_refused():
    with pytest.raises(ValueError, match="LookupEvaluator does not train, so it has no epochs to vary"):
        DiscreteSearch(evaluator="lookup", fidelity={"min_epochs": 1, "max_epochs": 3})


def test_scratch_trials_train_for_their_rungs_epochs_and_the_answer_is_from_the_top_rung(tmp_path):
    evaluator_args = {"channels": 4, "layers": 1, "data": {"batch_size": 128}, "trainer_args": {"limit_train_batches": 2},
                      "log_dir": str(tmp_path / "trials")}
    model = DiscreteSearch(evaluator="scratch", evaluator_args=evaluator_args, budget=4, seed=0,
                           fidelity={"min_epochs": 1, "max_epochs": 2, "eta": 2})
    trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, default_root_dir=str(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, logger=False)
    trainer.fit(model)
    _check_asha(model.loop, 4)
    steps = {(e["arch"], r["epochs"]): r for e in model.history for r in e["rungs"]}
    promoted = [e for e in model.history if len(e["rungs"]) == 2]
    assert 2 <= len(promoted) < 4 and all(e["metrics"]["steps"] == 4.0 for e in promoted), "2 epochs of 2 batches"
    assert all(e["rungs"][0]["reward"] is not None for e in model.history) and len(steps) == 4 + len(promoted)
    assert model.best() in promoted
    # every trial is a Lightning training with its own logger directory: {log_dir}/{cell digest}/epochs_{n}
    trials = sorted((tmp_path / "trials").glob("*/epochs_*"))
    assert len(trials) == len(steps)
    for directory in trials:
        assert (directory / "arch.txt").read_text().strip() in {e["arch"] for e in model.history}
        assert list(directory.glob("events.out.tfevents.*")), f"no TensorBoard log in {directory}"
    assert {d.name for d in trials} == {"epochs_1", "epochs_2"}
    assert model.hparams["fidelity"]["init_args"] == {"min_epochs": 1, "max_epochs": 2, "eta": 2}
    assert ScratchEvaluator(epochs=2).with_epochs(3).epochs == 3


def test_the_shipped_asha_config_runs_from_the_command_line(tmp_path):
    import json
    from pathlib import Path

    from darts_lightning.entry.runner import run_cli

    repo = Path(__file__).resolve().parents[2]
    cli = run_cli([
        "fit", "--config", str(repo / "configs" / "nb201_asha_digits.yaml"), "--model.init_args.budget", "3",
        "--model.init_args.evaluator_args", "{channels: 4, layers: 1, trainer_args: {limit_train_batches: 2}}",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
    ])
    history = json.loads((Path(cli.trainer.log_dir) / "history.json").read_text())
    assert len(history) == 3 and all(e["rungs"][0]["epochs"] == 1 for e in history)
    assert [len(e["rungs"]) for e in history].count(2) == 1, "3 // 3 = 1 promoted to 3 epochs"
    assert cli.model.hparams["fidelity"]["init_args"] == {"min_epochs": 1, "max_epochs": 9, "eta": 3}
