"""Measured latency: the per-op lookup table of a space, written and read back with what it was measured on,
refused for another setting, validated against whole networks, and used as a budget."""

from __future__ import annotations

import json
import random

import pytest

from darts_lightning import DARTSSearch
from darts_lightning.costs import MeasuredLatency, load_latency_table, profile_space, save_latency_table, validate_latency
from darts_lightning.costs.latency import kendall_tau
from darts_lightning.differentiable.budget import CostBudget
from darts_lightning.entry.cli import main
from darts_lightning.spaces import NB201Space
from darts_lightning.spaces.mixing import SoftmaxRelaxation

SIZE = dict(in_channels=1, num_classes=10, image_size=8, channels=4, layers=1)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    space = NB201Space(channels=4, cells_per_stage=1)
    model = MeasuredLatency(threads=1, runs=3, warmup=1)
    table = profile_space(space, model, **SIZE)
    path = save_latency_table(table, tmp_path_factory.mktemp("latency") / "nb201.json", space, model, SIZE)
    return space, model, table, path


def test_a_saved_table_reads_back_and_prices_every_cell(profiled):
    space, model, table, path = profiled
    record = json.loads(path.read_text())
    assert record["measured_on"]["threads"] == 1 and record["measured_on"]["batch_size"] == 1
    assert record["network"]["space"] == space.signature() and record["network"]["image_size"] == 8
    supernet = space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=10, image_size=8)
    loaded = load_latency_table(path, space, supernet, SIZE, expected=MeasuredLatency(threads=1))
    for seed in range(5):
        arch = space.sample(random.Random(seed))
        assert loaded.arch_cost(arch) == pytest.approx(table.arch_cost(arch)) and table.arch_cost(arch) > 0


def test_a_table_made_for_another_setting_is_refused(profiled, tmp_path):
    space, model, table, path = profiled
    supernet = space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=10, image_size=8)
    with pytest.raises(ValueError, match=r"made for another setting \(channels: table 4, wanted 8\).*darts-lightning profile"):
        load_latency_table(path, space, supernet, {**SIZE, "channels": 8})
    with pytest.raises(ValueError, match=r"threads: table 1, wanted 2"):
        load_latency_table(path, space, supernet, SIZE, expected=MeasuredLatency(threads=2))
    other = NB201Space(channels=4, cells_per_stage=1, pool_batch_norm=True)
    with pytest.raises(ValueError, match=r"space: table .*pool_batch_norm': False.*wanted .*pool_batch_norm': True"):
        load_latency_table(path, other, supernet, SIZE)
    with pytest.raises(FileNotFoundError, match="no latency table at .*darts-lightning profile --space nasbench201"):
        load_latency_table(tmp_path / "missing.json", space, supernet, SIZE)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a latency table written by 'darts-lightning profile'"):
        load_latency_table(tmp_path / "other.json", space, supernet, SIZE)


def test_validation_compares_predictions_with_whole_networks(profiled):
    space, model, table, _ = profiled
    result = validate_latency(table, space, model, 4, **SIZE)
    assert len(result["measured_ms"]) == 4 and all(m > 0 for m in result["measured_ms"])
    assert -1.0 <= result["kendall_tau"] <= 1.0 and result["mean_relative_error"] >= 0


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def test_a_latency_table_is_a_budget(profiled):
    space, model, table, path = profiled
    # linear: a pull whatever the measured figures are (a hinge has none below the budget)
    budget = CostBudget(budget=table.cheapest() * 1.5, cost=MeasuredLatency(table=str(path), threads=1),
                        form="linear", channels=4, layers=1)
    search = DARTSSearch(space=space, remedies=[budget], in_channels=1, num_classes=10, image_size=8)
    assert budget.table is not None and budget.table.matrices["cell"].tolist() == table.matrices["cell"].tolist()
    term = budget.arch_loss(search.network, 0, 1)
    term.backward()
    assert search.network.alpha.grad is not None and search.network.alpha.grad.abs().sum() > 0


def test_the_profile_command_writes_a_table_and_prints_the_validation_last(tmp_path, capsys):
    table = tmp_path / "nb201.json"
    common = ["profile", "--space", "nasbench201", "--threads", "1", "--in-channels", "1", "--image-size", "8",
              "--channels", "4", "--layers", "1", "--warmup", "1", "--table", str(table)]
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--runs", "3"])
    assert exit_info.value.code == 0 and table.is_file()
    with pytest.raises(SystemExit):
        main([*common, "--runs", "20", "--validate", "3"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2] == f"read {table}"
    result = json.loads(out[-1])
    assert set(result) == {"kendall_tau", "mean_relative_error", "networks"} and result["networks"] == 3
    assert main([*common, "--runs", "5", "--validate", "3"]) == 2, "fewer than 20 runs per network is refused"


def test_the_shipped_nasbench201_table_fits_the_benchmark_network():
    """The table of the development machine loads for the benchmark's network (its device is that machine's, so
    it is read here without the device check) and ranks a cell of 3x3 convolutions above an empty one."""
    from pathlib import Path

    import darts_lightning
    from darts_lightning import NB201Arch

    path = Path(darts_lightning.__file__).parent / "discrete" / "tables" / "nb201_latency_cpu.json"
    space = NB201Space()
    supernet = space.build_supernet(SoftmaxRelaxation(), in_channels=3, num_classes=10, image_size=32)
    size = dict(in_channels=3, num_classes=10, image_size=32, channels=None, layers=None)
    table = load_latency_table(path, space, supernet, size)
    assert json.loads(path.read_text())["measured_on"]["threads"] == 1
    convs, empty = NB201Arch(("nor_conv_3x3",) * 6), NB201Arch(("none",) * 6)
    assert table.arch_cost(convs) > 2 * table.arch_cost(empty) > 0
