"""Resuming continues the configured run: a checkpoint of a different run is refused, from the command line
and from Python, naming each differing setting with both values; what may change on resume is honoured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import ArchOptimizer, DARTSSearch, DartsSpace, Genotype, SearchDataModule
from darts_lightning.entry.cli import run_command
from darts_lightning.utils.resume import MODULE_KEY, OutdatedCheckpointError, ResumeMismatchError, check_resume, read_checkpoint

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
#: the search space's arguments on the command line
SPACE = "--model.init_args.space.init_args."
QUICK = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
    "--trainer.enable_progress_bar", "false", SPACE + "channels", "4", SPACE + "layers", "2",
]
SOFTMAX = "darts_lightning.spaces.mixing.SoftmaxRelaxation"
RETRAIN = [
    "--config", str(CONFIGS / "retrain_digits.yaml"), "--model.channels", "4", "--model.layers", "2",
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
    "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false",
]


def _only_run(root: Path) -> Path:
    (run_dir,) = (root / "lightning_logs").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def search_checkpoint(tmp_path_factory) -> Path:
    """One epoch of a first-order DARTS search (C = 4, 2 cells) on the digits, from the command line."""
    root = tmp_path_factory.mktemp("search")
    run_command(["fit", "--config", str(CONFIGS / "darts_digits.yaml"), *QUICK, "--trainer.default_root_dir", str(root)])
    return _only_run(root) / "checkpoints" / "last.ckpt"


def _resume(checkpoint: Path, root: Path, *args: str, config: str = "darts_digits.yaml") -> None:
    run_command(["fit", "--config", str(CONFIGS / config), *QUICK, "--trainer.default_root_dir", str(root),
                 "--ckpt_path", str(checkpoint), *args])


def test_console_refuses_a_checkpoint_of_another_method_in_one_line(search_checkpoint, tmp_path):
    """LightningCLI alone re-parses the checkpoint's hyperparameters over the configuration and silently
    continues the checkpoint's run; here the configured PC-DARTS search refuses the DARTS checkpoint."""
    result = subprocess.run(
        [sys.executable, "-m", "darts_lightning", "fit", "--config", str(CONFIGS / "pcdarts_digits.yaml"), *QUICK,
         "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(search_checkpoint)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = errors
    assert line.startswith("darts-lightning: error: the checkpoint ")
    assert (f"model.relaxation.class_path: checkpoint '{SOFTMAX}', configured "
            "'darts_lightning.differentiable.relaxations.PCDartsRelaxation'") in line
    assert "model.space.edge_normalization: checkpoint False, configured True" in line
    assert f"--config {search_checkpoint.parent.parent / 'config.yaml'}" in line
    assert not list(tmp_path.rglob("*.ckpt"))  # refused before anything ran


def test_a_changed_network_shape_or_data_setting_is_refused_not_dropped(search_checkpoint, tmp_path):
    with pytest.raises(ResumeMismatchError, match=r"model\.space\.channels: checkpoint 4, configured 8") as error:
        _resume(search_checkpoint, tmp_path, SPACE + "channels", "8")
    assert "model.space.layers" not in str(error.value)  # only what differs, argument by argument
    assert "model.space:" not in str(error.value)
    with pytest.raises(ResumeMismatchError, match=r"data\.batch_size: checkpoint 64, configured 32"):
        _resume(search_checkpoint, tmp_path, "--data.batch_size", "32")


def test_a_search_checkpoint_is_refused_by_the_retraining(search_checkpoint, tmp_path):
    with pytest.raises(ResumeMismatchError, match="model: checkpoint 'DARTSSearch', configured 'GenotypeClassifier'"):
        run_command(["fit", *RETRAIN, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(search_checkpoint)])


def test_settings_that_may_change_are_honoured(search_checkpoint, tmp_path):
    """max_epochs, the data's num_workers and the memory layout may change; the run continues where the
    checkpoint stopped and keeps its configuration."""
    _resume(search_checkpoint, tmp_path, "--trainer.max_epochs", "2", "--data.num_workers", "1",
            "--model.channels_last", "false")
    state = torch.load(_only_run(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 1 and state["global_step"] == 4  # one more epoch of 2 steps
    assert state["hyper_parameters"]["space"]["init_args"]["channels"] == 4 and state[MODULE_KEY] == "DARTSSearch"


def test_retraining_refuses_another_genotype_and_accepts_the_same_cell_from_a_file(tmp_path):
    root = tmp_path / "retrain"
    run_command(["fit", *RETRAIN, "--model.genotype", "DARTS_V2", "--trainer.default_root_dir", str(root)])
    checkpoint = _only_run(root) / "checkpoints" / "last.ckpt"
    with pytest.raises(ResumeMismatchError, match=r"model\.genotype: checkpoint \"Genotype\(normal=\[\('sep_conv_3x3', 0\)"):
        run_command(["test", *RETRAIN, "--model.genotype", "PC_DARTS", "--trainer.default_root_dir", str(root),
                     "--ckpt_path", str(checkpoint)])
    same_cell = Genotype.published("DARTS_V2").save(tmp_path / "darts_v2.json")
    run_command(["test", *RETRAIN, "--model.genotype", str(same_cell), "--trainer.default_root_dir", str(root),
                 "--ckpt_path", str(checkpoint)])


def test_python_api_refuses_a_differently_configured_module(search_checkpoint, tmp_path):
    data = SearchDataModule("digits", batch_size=64)
    model = DARTSSearch(space=DartsSpace(channels=4, layers=2), relaxation="snas", arch_optimizer=ArchOptimizer(lr=3e-2),
                        in_channels=1, num_classes=10, image_size=8)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, limit_train_batches=2, limit_val_batches=1,
                         default_root_dir=tmp_path)
    with pytest.raises(ResumeMismatchError, match=f"model.relaxation.class_path: checkpoint '{SOFTMAX}', "
                       "configured 'darts_lightning.differentiable.relaxations.SNASRelaxation'"):
        trainer.fit(model, data, ckpt_path=search_checkpoint)


def test_an_unreadable_checkpoint_is_named_with_the_fix(tmp_path):
    truncated = tmp_path / "epoch=1-step=24.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot read the checkpoint .*truncated or not a checkpoint; resume from another"):
        read_checkpoint(truncated)
    with pytest.raises(FileNotFoundError, match="no checkpoint at this path"):
        read_checkpoint(tmp_path / "missing.ckpt")


class _Module:
    """A stand-in module: settings made of parts, and a checkpoint form of an earlier version it recognises."""

    def __init__(self, **hparams):
        self.hparams = hparams

    @classmethod
    def outdated_checkpoint(cls, checkpoint, path=None):
        if "width" in (checkpoint.get("hyper_parameters") or {}):
            return f"the checkpoint {path} has the earlier flat form; convert it"
        return None


def _part(class_path: str, **init_args) -> dict:
    return {"class_path": class_path, "init_args": init_args}


def test_parts_are_compared_argument_by_argument_and_an_outdated_form_is_refused_first():
    current = _Module(space=_part("pkg.Space", channels=4, layers=2), remedies=[_part("pkg.Warmup", epochs=3)])
    same = {MODULE_KEY: "_Module", "hyper_parameters": dict(current.hparams)}
    check_resume(current, same)
    other = {MODULE_KEY: "_Module", "hyper_parameters": {
        "space": _part("pkg.Space", channels=8, layers=2), "remedies": [_part("pkg.Decay", weight=1.0)]}}
    with pytest.raises(ResumeMismatchError) as error:
        check_resume(current, other)
    message = str(error.value)
    assert "space.channels: checkpoint 8, configured 4" in message and "space.layers" not in message
    assert "remedies[0].class_path: checkpoint 'pkg.Decay', configured 'pkg.Warmup'" in message
    # An earlier version's form: the module's advice, not a list of differences.
    outdated = {MODULE_KEY: "_Module", "hyper_parameters": {"width": 4}}
    with pytest.raises(OutdatedCheckpointError, match="^the checkpoint old.ckpt has the earlier flat form; convert it$"):
        check_resume(current, outdated, path="old.ckpt")
    # A checkpoint of another module is named as such, whatever its form.
    with pytest.raises(ResumeMismatchError, match="model: checkpoint 'Other', configured '_Module'"):
        check_resume(current, {**outdated, MODULE_KEY: "Other"})
