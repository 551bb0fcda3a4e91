"""The DARTS evaluation protocol end to end, shrunk to seconds: searches, selection, final evaluation."""

from __future__ import annotations

import json
import shlex
import statistics
from pathlib import Path

import pytest

from darts_lightning import Genotype
from darts_lightning.data import DIGITS_TEST_SIZE
from darts_lightning.entry.cli import main
from darts_lightning.entry.protocol import choose, run_protocol

REPO = Path(__file__).resolve().parents[2]
SEARCH_ARGS = ("--model.init_args.space.init_args.channels 4 --model.init_args.space.init_args.layers 2 "
               "--trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 1")
#: two epochs of a 4-channel, 2-cell network: enough to learn the digits far above chance (selection and
#: final runs; both are trained for the retrain arguments' max_epochs)
#: the retrainings export their state dicts only (the deployable files are tests/retrain/test_export.py's)
RETRAIN_ARGS = ("--model.channels 4 --model.layers 2 --trainer.max_epochs 2 "
                "--trainer.callbacks+=darts_lightning.ExportNetwork --trainer.callbacks.deployable=false")


def test_protocol_searches_selects_on_the_holdout_split_and_evaluates_on_the_test_split(tmp_path, capsys):
    output = tmp_path / "protocol"
    with pytest.raises(SystemExit) as exit_info:
        main([
            "protocol", "--search-config", str(REPO / "configs" / "darts_digits.yaml"),
            "--retrain-config", str(REPO / "configs" / "retrain_digits.yaml"),
            "--search-seeds", "0", "1", "--selection-epochs", "1", "--final-seeds", "0", "1",
            "--output", str(output), "--search-args", SEARCH_ARGS, "--retrain-args", RETRAIN_ARGS,
        ])
    assert exit_info.value.code == 0
    record = json.loads((output / "protocol.json").read_text())

    searches = record["searches"]
    assert [s["seed"] for s in searches] == [0, 1]
    for search in searches:
        genotype = Genotype.parse(search["genotype"])
        assert Genotype.load(search["genotype_file"]) == genotype
        assert 0.15 <= search["selection_score"] <= 1.0  # chance is 0.1; here 0.24 and 0.69

    best = max(searches, key=lambda s: (s["selection_score"], -s["seed"]))
    assert record["chosen_seed"] == best["seed"]
    assert record["chosen_genotype"] == best["genotype"]

    # Selection trained on search-train and scored on search-val (750 images), never on the test split;
    # the saved configs of the selection runs say so too.
    assert record["selection_eval_size"] == 750 != DIGITS_TEST_SIZE
    for search in searches:
        assert "holdout: true" in (Path(search["selection_log_dir"]) / "config.yaml").read_text()
    assert record["final_eval_size"] == DIGITS_TEST_SIZE

    accuracies = [f["test_acc"] for f in record["final"]]
    assert [f["seed"] for f in record["final"]] == [0, 1] and len(accuracies) == 2
    assert all(0.5 <= a <= 1.0 for a in accuracies)  # chance is 0.1; here 0.94 and 0.90
    assert record["test_acc_mean"] == pytest.approx(statistics.fmean(accuracies))
    assert record["test_acc_std"] == pytest.approx(statistics.stdev(accuracies))
    assert record["search_args"] == shlex.split(SEARCH_ARGS) and record["retrain_args"] == shlex.split(RETRAIN_ARGS)

    printed = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(printed[-1])
    assert summary["chosen_seed"] == record["chosen_seed"]
    assert summary["test_acc_mean"] == pytest.approx(record["test_acc_mean"])
    assert any("test accuracy" in line for line in printed)


def test_choice_takes_the_highest_score_and_breaks_ties_by_the_lowest_seed():
    searches = [{"seed": 3, "selection_score": 0.9}, {"seed": 1, "selection_score": 0.9}, {"seed": 0, "selection_score": 0.8}]
    assert choose(searches)["seed"] == 1
    assert choose(list(reversed(searches)))["seed"] == 1
    assert choose([{"seed": 5, "selection_score": 0.5}, {"seed": 2, "selection_score": 0.4}])["seed"] == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"search_seeds": [0, 0]}, "repeat"),
    ({"final_seeds": []}, "at least one"),
    ({"selection_epochs": 0}, "selection_epochs"),
])
def test_invalid_settings_are_refused_before_any_training(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_protocol(output=tmp_path, **kwargs)


def test_protocol_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["protocol", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--search-seeds" in out and "--selection-epochs" in out and "holdout" in out


def test_retrainings_trust_import_paths_only_in_genotypes_the_protocol_searches_wrote(tmp_path, monkeypatch):
    """A search config with an op given by import path derives genotypes naming it: their retrainings get
    --model.allow_import_paths true, those of other genotypes do not (the runs themselves are stand-ins)."""
    from types import SimpleNamespace

    from darts_lightning.entry import protocol

    darts_v2 = Genotype.published("DARTS_V2")
    custom = Genotype((("tests.custom_ops:conv_1x1", 0),) + darts_v2.normal[1:], [2, 3, 4, 5], darts_v2.reduce, [2, 3, 4, 5])
    derived = {0: custom, 1: darts_v2}
    calls: list[list[str]] = []

    def run_cli(args):
        args = list(args)
        calls.append(args)
        trainer = SimpleNamespace(log_dir=str(tmp_path), test=lambda *a, **k: None,
                                  callback_metrics={"val/acc": 0.5, "test/acc": 0.9})
        if "--model.genotype" not in args:  # a search
            seed = int(args[args.index("--seed_everything") + 1])
            return SimpleNamespace(model=SimpleNamespace(selected_answer=lambda: derived[seed]), trainer=trainer)
        holdout = args[args.index("--data.init_args.holdout") + 1] == "true"
        return SimpleNamespace(model=None, trainer=trainer, datamodule=SimpleNamespace(holdout=holdout, test_set=[0, 1]))

    monkeypatch.setattr(protocol, "run_cli", run_cli)
    record = run_protocol(search_seeds=[0, 1], final_seeds=[0], selection_epochs=1, output=tmp_path)
    files = {search["seed"]: search["genotype_file"] for search in record["searches"]}
    retrainings = [args for args in calls if "--model.genotype" in args]
    assert len(retrainings) == 3 and record["chosen_seed"] == 0  # equal scores: the lowest seed
    for args in retrainings:
        at = args.index("--model.genotype")
        trusted = args[at + 1] == files[0]
        assert (args[at + 2 : at + 4] == ["--model.allow_import_paths", "true"]) == trusted
        assert ("--model.allow_import_paths" in args) == trusted


def test_a_search_outside_the_darts_space_is_refused_with_the_reason(tmp_path, monkeypatch):
    """The retrainings train DARTS genotypes: a search config of another space ends after its first search with a
    clear message, not with an error deep inside the genotype file handling (the run is a stand-in)."""
    from types import SimpleNamespace

    from darts_lightning import NB201Arch
    from darts_lightning.entry import protocol

    arch = NB201Arch.parse("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|")
    model = SimpleNamespace(selected_answer=lambda: arch, space=SimpleNamespace(name="nasbench201"))
    monkeypatch.setattr(protocol, "run_cli", lambda args: SimpleNamespace(model=model, trainer=None))
    with pytest.raises(ValueError, match="retrains DARTS genotypes .* searches the nasbench201 space"):
        run_protocol(search_config="configs/darts_nb201_digits.yaml", search_seeds=[0], final_seeds=[0],
                     selection_epochs=1, output=tmp_path)
