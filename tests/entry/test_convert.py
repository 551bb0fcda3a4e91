"""Checkpoints of the earlier, flat DARTSSearch: refused with the advice to convert them, converted by
``darts-lightning convert-checkpoint``, then resumed and exported like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from darts_lightning import Genotype
from darts_lightning.differentiable.legacy import FLAT_DEFAULTS, flat_checkpoint_error
from darts_lightning.entry.cli import main, run_command

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "darts_digits.yaml")
SPACE = "--model.init_args.space.init_args."
QUICK = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
    "--trainer.enable_progress_bar", "false", SPACE + "channels", "4", SPACE + "layers", "2",
]
#: the flat settings of the search QUICK configures from darts_digits.yaml, as an earlier version recorded them
#: (every argument, the defaults included)
FLAT = {**FLAT_DEFAULTS, "in_channels": 1, "num_classes": 10, "image_size": 8, "channels": 4, "layers": 2, "arch_lr": 0.03}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One tiny first-order search on the digits (today's form); its run folder."""
    root = tmp_path_factory.mktemp("search")
    run_command(["fit", "--config", CONFIG, *QUICK, "--trainer.default_root_dir", str(root)])
    (run_dir,) = (root / "lightning_logs").iterdir()
    return run_dir


def _flat_copy(run: Path, target: Path, **extra) -> Path:
    """The run's last checkpoint as an earlier version wrote it: its settings flat, plus ``extra`` entries."""
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"] = dict(FLAT)
    checkpoint.update(extra)
    torch.save(checkpoint, target)
    return target


def _succeeds(*args: str) -> None:
    """``darts-lightning ARGS`` ends with exit status 0 (the export and convert commands exit)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 0


def _plain(value):
    """Tuples as lists, as YAML and JSON read them back."""
    return json.loads(json.dumps(value))


def _one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_flat_checkpoint_is_refused_in_one_line_that_says_how_to_convert_it(run, tmp_path, capsys):
    flat = str(_flat_copy(run, tmp_path / "old.ckpt"))
    expected = f"darts-lightning: error: {flat_checkpoint_error(flat)} (--verbose shows the traceback)"
    assert "darts-lightning convert-checkpoint OLD.ckpt NEW.ckpt" in expected

    assert main(["fit", "--config", CONFIG, *QUICK, "--trainer.default_root_dir", str(tmp_path),
                 "--ckpt_path", flat]) == 2
    assert _one_error_line(capsys) == expected
    assert not list(tmp_path.rglob("last.ckpt"))  # refused before anything ran

    assert main(["export-genotype", flat, "--out", str(tmp_path / "exported.json")]) == 2
    assert _one_error_line(capsys) == expected
    assert not (tmp_path / "exported.json").exists()


def test_convert_then_resume_and_export(run, tmp_path, capsys):
    """The converted checkpoint holds the settings today's search records for the same run (the parts' class
    paths and arguments), resumes from where it stopped, and exports the answer the run wrote."""
    flat, converted = _flat_copy(run, tmp_path / "old.ckpt"), tmp_path / "new.ckpt"
    _succeeds("convert-checkpoint", str(flat), str(converted))
    printed = capsys.readouterr().out
    assert f"converted {flat} to {converted}" in printed and "class_path: darts_lightning.DARTSSearch" in printed
    original = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    new = torch.load(converted, weights_only=True)
    assert _plain(new["hyper_parameters"]) == _plain(original["hyper_parameters"])
    assert torch.equal(new["state_dict"]["network.alpha_normal"], original["state_dict"]["network.alpha_normal"])

    out = tmp_path / "exported.json"
    _succeeds("export-genotype", str(converted), "--out", str(out))
    assert Genotype.load(out) == Genotype.load(run / "genotype.json")

    resumed = tmp_path / "resumed"
    run_command(["fit", "--config", CONFIG, *QUICK, "--trainer.max_epochs", "2", "--trainer.default_root_dir",
                 str(resumed), "--ckpt_path", str(converted)])
    (run_dir,) = (resumed / "lightning_logs").iterdir()
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 1 and state["global_step"] == 4  # one more epoch of 2 steps after the converted one


def test_converted_early_stopping_state_is_the_callbacks_and_the_export_honours_it(run, tmp_path, capsys):
    """An earlier version kept R-DARTS's early-stopping choice at the checkpoint's top level; converted, it is the
    HessianEigenvalue callback's state, and the export returns the answer of the chosen epoch (here a genotype
    planted in the history, which the final α does not give)."""
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    planted = Genotype.published("DARTS_V2")
    history = [{**checkpoint["genotype_history"][0], "genotype": planted.to_dict()}]
    flat = _flat_copy(run, tmp_path / "old.ckpt", genotype_history=history, selected_epoch=0,
                      eigenvalue_history=[{"epoch": 0, "eigenvalue": 0.5}])
    saved = torch.load(flat, weights_only=True)
    saved["hyper_parameters"].update(hessian_eigenvalue_every=2, eigenvalue_early_stop=True)
    torch.save(saved, flat)
    converted = tmp_path / "new.ckpt"
    _succeeds("convert-checkpoint", str(flat), str(converted))
    assert "darts_lightning.HessianEigenvalue" in capsys.readouterr().out  # the trainer callback the run used
    new = torch.load(converted, weights_only=True)
    assert "selected_epoch" not in new and "eigenvalue_history" not in new
    assert new["callbacks"]["HessianEigenvalue"] == {"history": [{"epoch": 0, "eigenvalue": 0.5}], "selected_epoch": 0}

    out = tmp_path / "exported.json"
    _succeeds("export-genotype", str(converted), "--out", str(out))
    assert Genotype.load(out) == planted != Genotype.load(run / "genotype.json")
    assert "the answer of epoch 0" in capsys.readouterr().out


def test_convert_refuses_what_it_cannot_convert(run, tmp_path, capsys):
    current = run / "checkpoints" / "last.ckpt"
    assert main(["convert-checkpoint", str(current), str(tmp_path / "new.ckpt")]) == 2
    assert "holds no flat DARTSSearch settings" in _one_error_line(capsys)
    flat = _flat_copy(run, tmp_path / "old.ckpt")
    assert main(["convert-checkpoint", str(flat), str(current)]) == 2  # never overwrites
    assert "exists: choose a new path" in _one_error_line(capsys)
    assert main(["convert-checkpoint", str(tmp_path / "missing.ckpt"), str(tmp_path / "new.ckpt")]) == 2
    assert "no checkpoint at this path" in _one_error_line(capsys)
    assert not (tmp_path / "new.ckpt").exists()
