"""The benchmark scripts stay runnable: their methods are built from the shipped configs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from darts_lightning import (
    ArchWarmup,
    AuxiliarySkip,
    BetaDecay,
    DARTSSearch,
    FirstOrderGradient,
    NB201Space,
    RandomSmoothing,
    SecondOrderGradient,
)

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


search_step = _load("search_step")

#: what each method's paper config sets, as its header cites it: relaxation, weight lr, remedies other than the
#: α warm-up, step order
PAPER = {
    "darts": ("darts", 0.025, set(), "arch_first"),
    "pcdarts": ("pcdarts", 0.1, set(), "arch_first"),
    "gdas": ("gdas", 0.025, set(), "weight_first"),
    "snas": ("snas", 0.025, set(), "joint"),
    "drnas": ("drnas", 0.1, set(), "arch_first"),
    "darts_minus": ("darts", 0.025, {AuxiliarySkip}, "arch_first"),
    "beta_darts": ("darts", 0.025, {BetaDecay, RandomSmoothing}, "arch_first"),
}


@pytest.mark.parametrize("method", search_step.METHODS)
def test_search_step_builds_each_method_as_its_paper_config(method):
    kwargs = search_step.method_arguments(method)
    assert not {"in_channels", "num_classes", "image_size"} & set(kwargs), "the data's shape is the command line's"
    assert not any(isinstance(r, ArchWarmup) for r in kwargs["remedies"]), "every timed step moves α"
    model = DARTSSearch(in_channels=1, num_classes=10, image_size=8, **search_step.with_shape(kwargs, 4, 2))
    assert (model.space.channels, model.space.layers) == (4, 2), "the shape is the command line's"
    relaxation, weight_lr, remedies, step_order = PAPER[method]
    assert model.relaxation.name == relaxation
    assert model.weight_optimizer.lr == weight_lr
    assert {type(r) for r in model.remedies} == remedies
    assert model.step_order == step_order
    if method == "pcdarts":
        assert model.relaxation.partial_channels == 4 and model.space.edge_normalization


def test_order_partial_channels_and_shape_replace_only_what_they_name():
    gdas = search_step.method_arguments("gdas", partial_channels=2)
    assert gdas["relaxation"].partial_channels == 2 and gdas["relaxation"].tau_max == 10.0
    second = search_step.with_order(gdas, 2)["estimator"]
    assert isinstance(second, SecondOrderGradient) and second.hessian == "finite_difference"
    snas = search_step.with_order(search_step.with_order(search_step.method_arguments("snas"), 2), 1)["estimator"]
    assert isinstance(snas, FirstOrderGradient) and snas.arch_batch == "train", "the architecture batch is kept"
    darts2 = search_step.method_arguments("darts2")
    assert search_step.with_order(darts2, 2)["estimator"] is darts2["estimator"], "the config's own second order"
    shaped = search_step.with_shape(gdas, 4, 3, nodes=1)["space"]
    assert (shaped.channels, shaped.layers, shaped.nodes, shaped.multiplier) == (4, 3, 1, 1)
    assert shaped.genotype_rule == "gdas" and shaped.pool_batch_norm is False, "the space's options are kept"
    nb201 = search_step.with_shape({"space": NB201Space()}, 4, 1)["space"]
    assert (nb201.channels, nb201.cells_per_stage) == (4, 1)


def test_search_step_prints_one_line_of_figures(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "search_step.py", "--method", "pcdarts", "--partial-channels", "2", "--order", "2", "--channels", "4",
        "--layers", "3", "--batch-size", "4", "--image-size", "8", "--steps", "1", "--warmup", "0", "--device", "cpu",
    ])
    search_step.main()
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["method"] == "pcdarts" and record["order"] == 2 and record["partial_channels"] == 2
    assert (record["channels"], record["layers"], record["compile"]) == (4, 3, False)
    assert len(record["step_times"]) == 1 and record["seconds_per_step"] > 0 and record["peak_memory_mb"] > 0


def test_nb201_pareto_prints_its_figures_and_dumps_every_seeds_front(monkeypatch, capsys, tmp_path):
    from darts_lightning.discrete.pareto import dominates
    from darts_lightning.spaces import NB201Space

    nb201_pareto = _load("nb201_pareto")
    dump = tmp_path / "fronts.json"
    monkeypatch.setattr(sys, "argv", ["nb201_pareto.py", "--budget", "20", "--seeds", "3", "--dump", str(dump)])
    nb201_pareto.main()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["budget"] == 20 and summary["seeds"] == 3 and summary["reward"] == "cifar10_valid"
    assert summary["reference_point"]["multiply_adds"] == 220119680.0, "the space's largest multiply-adds"
    searchers = summary["searchers"]
    assert list(searchers) == list(nb201_pareto.SEARCHERS)
    assert all(0 < s["hv_mean"] <= summary["space_front_hypervolume"] + 1e-9 for s in searchers.values())
    assert len(searchers["pareto_evolution"]["vs_random_ci95"]) == 2 and "vs_random_mean" not in searchers["random"]
    fronts = json.loads(dump.read_text())
    assert set(fronts) == set(searchers) and all(len(per_seed) == 3 for per_seed in fronts.values())
    space, costs = NB201Space(), nb201_pareto.nasbench201_costs()
    table = nb201_pareto.LookupEvaluator(space).rows
    for front in fronts["pareto_evolution"]:
        points = [(-table[arch]["cifar10_valid"], costs[space.format(space.parse(arch))][1]) for arch in front]
        assert front and not any(dominates(p, q) for p in points for q in points)
