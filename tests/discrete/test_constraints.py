"""Cost budgets and objectives of a discrete search: an architecture over a budget is refused before it is
evaluated, costs no evaluation, is recorded with its costs and told to the searcher as refused; every entry
records every configured cost; a search with constraints resumes exactly; the NAS-Bench-201 costs of all cells
are the networks' own counts; and every misconfiguration is named."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import DiscreteSearch
from darts_lightning.costs import CostTable, get_cost_model
from darts_lightning.discrete import CostConstraint, CostObjective, DataShape, Pricing, SearchLoop, nasbench201_costs
from darts_lightning.discrete.evaluators import Evaluation, Evaluator, LookupEvaluator, register_evaluator
from darts_lightning.discrete.lookup import NB201_SHAPES
from darts_lightning.discrete.searchers import RandomSearch, Reinforce, build_searcher, list_searchers
from darts_lightning.spaces import NB201Space

#: A small NAS-Bench-201 network on the digits' shape: pricing it takes milliseconds.
SMALL = {"class_path": "darts_lightning.spaces.NB201Space", "init_args": {"channels": 4, "cells_per_stage": 1}}
SHAPE = {"in_channels": 1, "num_classes": 10, "image_size": 8}
SEARCHERS = ["random", "regularized_evolution", "reinforce", "local_search", "pareto_evolution"]


class Recording(Evaluator):
    """Scores a cell by the number of its convolutions (the search climbs towards expensive cells) and records
    every architecture it is asked to score."""

    calls: list[str] = []

    def evaluate(self, arch: Any) -> Evaluation:
        Recording.calls.append(self.space.format(arch))
        return Evaluation(reward=float(sum(op.startswith("nor_conv") for op in arch.ops)))


register_evaluator("_recording_for_tests", Recording)


def _fit(model: DiscreteSearch, root: Path, **kwargs: Any) -> pl.Trainer:
    kwargs = {"max_epochs": -1, "logger": False, "enable_checkpointing": False, **kwargs}
    trainer = pl.Trainer(accelerator="cpu", default_root_dir=str(root), enable_progress_bar=False,
                         enable_model_summary=False, **kwargs)
    trainer.fit(model)
    return trainer


def _search(searcher: str = "regularized_evolution", budget: int = 12, **kwargs: Any) -> DiscreteSearch:
    defaults: dict[str, Any] = dict(space=SMALL, searcher=searcher, evaluator="_recording_for_tests", budget=budget,
                                    seed=1, data_shape=SHAPE, constraints=[{"cost": "multiply_adds", "budget": 60000}],
                                    objectives=["parameters"])
    return DiscreteSearch(**{**defaults, **kwargs})


def test_over_budget_architectures_are_refused_before_evaluation_and_cost_no_budget(tmp_path):
    Recording.calls = []
    model = _search()
    table = CostTable.build(NB201Space(channels=4, cells_per_stage=1), "multiply_adds", in_channels=1, num_classes=10,
                            image_size=8)
    assert table.cheapest() < 60000 < max(table.arch_cost(NB201Space().sample(random.Random(s))) for s in range(20))
    _fit(model, tmp_path)
    evaluated = [h for h in model.history if h["reward"] is not None]
    refused = [h for h in model.history if h["reward"] is None]
    assert len(evaluated) == 12 and model.stop_reason == "budget of 12 distinct architectures spent"
    assert refused, "the climb towards convolutions runs into the budget"
    # Never evaluated: the evaluator saw exactly the evaluated entries, each within the budget.
    assert Recording.calls == [h["arch"] for h in evaluated]
    assert all(h["costs"]["multiply_adds"] <= 60000 for h in evaluated)
    for h in refused:
        assert h["costs"]["multiply_adds"] > 60000 and h["arch"] not in Recording.calls
        assert h["rejected"].startswith("over budget: multiply_adds") and "> 60000" in h["rejected"]
        assert h["costs"]["multiply_adds"] == table.arch_cost(model.space.parse(h["arch"]))
    assert model.samples >= len(model.history)
    assert model.best() in evaluated


def test_every_entry_records_the_costs_of_the_constraints_and_objectives(tmp_path):
    model = _search(objectives=["parameters", {"cost": "multiply_adds", "channels": 8}], budget=6)
    _fit(model, tmp_path)
    space = NB201Space(channels=4, cells_per_stage=1)
    tables = {
        "multiply_adds": CostTable.build(space, "multiply_adds", in_channels=1, num_classes=10, image_size=8),
        "parameters": CostTable.build(space, "parameters", in_channels=1, num_classes=10, image_size=8),
        "multiply_adds[channels=8]": CostTable.build(space, "multiply_adds", in_channels=1, num_classes=10,
                                                     image_size=8, channels=8),
    }
    for h in model.history:
        arch = space.parse(h["arch"])
        assert h["costs"] == pytest.approx({label: t.arch_cost(arch) for label, t in tables.items()}, rel=1e-12)
    # Counted on the network itself, for one entry.
    arch = space.parse(model.history[0]["arch"])
    network = space.build_network(arch, num_classes=10, in_channels=1, image_size=8)
    assert model.history[0]["costs"]["parameters"] == get_cost_model("parameters").measure(network, (1, 8, 8))


class Listening(RandomSearch):
    """Random search that records what it is told."""

    def __init__(self, space, seed=0):
        super().__init__(space, seed)
        self.told: list[tuple[str, float]] = []
        self.rejected: list[str] = []

    def tell(self, arch, reward):
        self.told.append((self.space.format(arch), reward))

    def reject(self, arch):
        self.rejected.append(self.space.format(arch))


def test_the_searcher_is_told_which_proposals_were_refused():
    space = NB201Space(channels=4, cells_per_stage=1)
    constraint = CostConstraint(60000)
    pricing = Pricing(space, [constraint], DataShape(**SHAPE))
    searcher = Listening(space, seed=2)
    loop = SearchLoop(searcher, Recording(space), max_samples=400, pricing=pricing, constraints=[constraint])
    assert loop.run(30).startswith("budget")
    refused = {h["arch"] for h in loop.history if h["reward"] is None}
    assert refused and set(searcher.rejected) >= refused
    # Every proposal was answered once, by tell or reject; refused (and re-proposed refused) ones by reject only.
    assert len(searcher.told) + len(searcher.rejected) == loop.samples
    assert all(pricing.costs(space.parse(a))["multiply_adds"] > 60000 for a in searcher.rejected)
    assert all(pricing.costs(space.parse(a))["multiply_adds"] <= 60000 for a, _ in searcher.told)


@pytest.fixture(scope="module")
def table_search() -> tuple[LookupEvaluator, Pricing]:
    evaluator = LookupEvaluator()
    shape = evaluator.data_shape()
    assert shape == NB201_SHAPES["cifar10"] == DataShape(3, 10, 32)
    return evaluator, Pricing(evaluator.space, [CostObjective("multiply_adds"), CostConstraint(5e7)], shape)


@pytest.mark.parametrize("name", SEARCHERS)
def test_every_shipped_searcher_searches_under_a_budget(table_search, name):
    evaluator, pricing = table_search
    assert name in list_searchers()
    searcher = build_searcher(name, evaluator.space, seed=4, **({"learning_rate": 0.05} if name == "reinforce" else {}))
    loop = SearchLoop(searcher, evaluator, max_samples=2000, pricing=pricing, constraints=[CostConstraint(5e7)],
                      objectives=["multiply_adds"])
    assert loop.run(25) == "budget of 25 distinct architectures spent"
    assert loop.rejected > 0 and loop.evaluated == 25
    assert all(h["costs"]["multiply_adds"] <= 5e7 for h in loop.evaluations())
    if name == "reinforce":
        assert all(torch.isfinite(p).all() for p in searcher.policy.parameters())
    if name in ("regularized_evolution", "pareto_evolution"):  # refused children are not born
        assert all(pricing.costs(member[0])["multiply_adds"] <= 5e7 for member in searcher.population)


def test_reinforce_is_told_a_finite_penalty_for_a_refusal():
    space = NB201Space()
    searcher = Reinforce(space, seed=0, learning_rate=0.1)
    cheap = space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    dear = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    before = [p.detach().clone() for p in searcher.policy.parameters()]
    searcher.reject(dear)  # nothing to compare with yet: no step
    assert all(torch.equal(a, b) for a, b in zip(before, searcher.policy.parameters()))
    for reward in (60.0, 70.0, 80.0):
        searcher.tell(cheap, reward)

    def log_prob(arch):
        return float(searcher.policy.unroll(space.to_decisions(arch), None)[1])

    was = log_prob(dear)
    searcher.reject(dear)
    assert searcher.lowest == 60.0 and math.isfinite(searcher.baseline)
    assert log_prob(dear) < was, "told the lowest reward, below the baseline: the policy moves away"
    restored = Reinforce(space, seed=9, learning_rate=0.1)
    restored.load_state_dict(searcher.state_dict())
    assert restored.lowest == 60.0


@pytest.mark.parametrize("name", ["pareto_evolution", "reinforce"])
def test_a_search_with_constraints_resumes_exactly(tmp_path, name):
    full = _search(name, budget=14)
    _fit(full, tmp_path / "full")
    assert any(h["reward"] is None for h in full.history)

    class SaveAndStop(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if pl_module.loop.evaluated == 6:
                trainer.save_checkpoint(tmp_path / "six.ckpt")
                trainer.should_stop = True

    _fit(_search(name, budget=14), tmp_path / "part", callbacks=[SaveAndStop()])
    saved = torch.load(tmp_path / "six.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["constraints"] == [CostConstraint(60000).config()]
    resumed = _search(name, budget=14)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path / "r"))
    trainer.fit(resumed, ckpt_path=tmp_path / "six.ckpt")
    assert resumed.history == full.history and resumed.samples == full.samples
    other = _search(name, budget=14, constraints=[{"cost": "multiply_adds", "budget": 70000}])
    with pytest.raises(ValueError, match=r"model.constraints\[0\].budget: checkpoint 60000, configured 70000"):
        pl.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   default_root_dir=str(tmp_path / "o")).fit(other, ckpt_path=tmp_path / "six.ckpt")


def test_the_front_file_holds_the_non_dominated_evaluations(tmp_path):
    model = _search("pareto_evolution", budget=15, objectives=["parameters", "multiply_adds"])
    trainer = _fit(model, tmp_path, logger=pl.loggers.TensorBoardLogger(str(tmp_path), name="tb"))
    run_dir = Path(trainer.log_dir)
    written = json.loads((run_dir / "pareto_front.json").read_text())
    assert written["minimised"] == ["parameters", "multiply_adds"] and written["maximised"] == "reward"
    front = written["front"]
    evaluated = [h for h in model.history if h["reward"] is not None]

    def objectives(h):
        return (-h["reward"], h["costs"]["parameters"], h["costs"]["multiply_adds"])

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and a != b

    front_points = [objectives(f) for f in front]
    assert front and all(not any(dominates(objectives(h), p) for h in evaluated) for p in front_points)
    on_front = {f["arch"] for f in front}
    assert all(any(dominates(p, objectives(h)) for p in front_points) for h in evaluated if h["arch"] not in on_front)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert "search/pareto_front" in events.Tags()["images"]
    assert "search/cost/multiply_adds" in events.Tags()["scalars"] and "search/rejected" in events.Tags()["scalars"]


def test_without_objectives_no_front_is_written(tmp_path):
    model = _search("random", budget=3, objectives=None)
    trainer = _fit(model, tmp_path, logger=pl.loggers.CSVLogger(str(tmp_path)))
    assert not (Path(trainer.log_dir) / "pareto_front.json").exists()
    assert set(model.history[0]["costs"]) == {"multiply_adds"}


def test_nasbench201_costs_are_the_networks_own_counts():
    costs = nasbench201_costs()
    assert len(costs) == 15625 and costs is not nasbench201_costs(), "a copy: the cached table stays intact"
    space = NB201Space()
    assert NB201Space().channels == 16 and NB201Space().cells_per_stage == 5, "the benchmark's size"
    parameters, multiply_adds = get_cost_model("parameters"), get_cost_model("multiply_adds")
    for seed in range(2):
        arch = space.sample(random.Random(seed))
        network = space.build_network(arch, num_classes=10, in_channels=3, image_size=32)
        assert costs[space.format(arch)] == (parameters.measure(network, (3, 32, 32)),
                                             multiply_adds.measure(network, (3, 32, 32)))
    table = CostTable.build(space, "multiply_adds", in_channels=3, num_classes=10, image_size=32)
    for text in random.Random(7).sample(sorted(costs), 50):
        assert costs[text][1] == table.arch_cost(space.parse(text))
    # The cheapest and the dearest cell: no op on any edge, and a 3x3 convolution on every edge.
    assert min(costs.values()) == (73306.0, 7783040.0) == costs["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]
    assert max(costs.values()) == (1531546.0, 220119680.0)
    assert set(costs) == set(LookupEvaluator().rows), "the lookup table's strings"
    assert nasbench201_costs("cifar100")["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"][0] == 73306 + 90 * (64 + 1), (
        "CIFAR-100's classifier: 90 more classes of 64 weights and a bias")


def test_misconfigured_costs_are_named():
    with pytest.raises(ValueError, match="unknown cost model 'latencyy'; valid cost models are: .*multiply_adds, parameters"):
        _search(constraints=[{"cost": "latencyy", "budget": 1e6}])
    with pytest.raises(ValueError, match="unknown key 'limit'; valid keys are: budget, cost, channels, layers"):
        _search(constraints=[{"cost": "parameters", "limit": 1e6}])
    with pytest.raises(ValueError, match="budget must be a positive number"):
        CostConstraint(0)
    with pytest.raises(ValueError, match=r"the budget 1000 multiply-adds on multiply_adds is below the cheapest network of "
                                         r"the nasbench201 space at this size \(\d+\): raise the budget"):
        _search(constraints=[{"cost": "multiply_adds", "budget": 1000}])
    with pytest.raises(ValueError, match="the evaluator '_recording_for_tests' does not know: give data_shape="):
        _search(data_shape=None)
    with pytest.raises(ValueError, match="data_shape must be a mapping with the keys in_channels, num_classes, image_size"):
        _search(data_shape={"channels": 1})
    with pytest.raises(ValueError, match="the searcher 'pareto_evolution' ranks architectures by their costs too: "
                                         "configure the search's objectives"):
        _search("pareto_evolution", objectives=None)
    space = NB201Space(channels=4, cells_per_stage=1)
    other = Pricing(NB201Space(channels=8, cells_per_stage=1), [CostConstraint(1e6)], DataShape(**SHAPE))
    with pytest.raises(ValueError, match="the costs were priced for the space .* the search runs the space"):
        SearchLoop(RandomSearch(space), Recording(space), max_samples=10, pricing=other, constraints=[CostConstraint(1e6)])
    with pytest.raises(ValueError, match="the pricing has no cost 'parameters'"):
        SearchLoop(RandomSearch(space), Recording(space), max_samples=10,
                   pricing=Pricing(space, [CostConstraint(1e6)], DataShape(**SHAPE)), objectives=["parameters"])
