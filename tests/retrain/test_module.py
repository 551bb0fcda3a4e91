"""Retraining a genotype: the LightningModule, its data, export, checkpoints and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import ClassificationDataModule, Genotype, GenotypeClassifier, GenotypeError, NonFiniteLossError
from darts_lightning.data import DIGITS_TEST_SIZE
from darts_lightning.retrain.module import ExportNetwork
from darts_lightning.utils.resume import ResumeMismatchError
from tests.conftest import quick_trainer


def light_trainer(root, **overrides) -> pl.Trainer:
    """quick_trainer whose export writes the state dict and the answer only (the deployable files are
    tests/retrain/test_export.py's)."""
    callbacks = [*overrides.pop("callbacks", []), ExportNetwork(deployable=False)]
    return quick_trainer(root, callbacks=callbacks, **overrides)


def tiny_classifier(**overrides) -> GenotypeClassifier:
    kwargs = dict(genotype="DARTS_V2", in_channels=1, num_classes=10, image_size=8, channels=4, layers=3)
    kwargs.update(overrides)
    return GenotypeClassifier(**kwargs)


def test_digits_data_trains_on_the_search_pool_and_tests_on_the_fixed_split():
    data = ClassificationDataModule("digits", batch_size=32, cutout_length=0)
    data.setup()
    assert len(data.train_set) == 1500 and len(data.test_set) == DIGITS_TEST_SIZE
    x, y = next(iter(data.test_dataloader()))
    assert x.shape == (32, 1, 8, 8)


def test_fit_test_and_export(tmp_path):
    pl.seed_everything(0)
    model = tiny_classifier(drop_path_prob=0.2)
    before = model.network.stem[0].weight.detach().clone()
    data = ClassificationDataModule("digits", batch_size=32, cutout_length=0)
    trainer = quick_trainer(tmp_path, max_epochs=2, gradient_clip_val=5.0,
                            callbacks=[pl.callbacks.ModelCheckpoint(save_last=True)])
    trainer.fit(model, data)
    assert not torch.equal(before, model.network.stem[0].weight)
    # drop-path rises linearly: 0 in epoch 0, 0.2 · 1/2 in epoch 1
    assert model.network.drop_path_prob == pytest.approx(0.1)
    assert {"val/acc", "val/acc_top5", "train/loss_epoch"} <= set(trainer.callback_metrics)
    (result,) = trainer.test(model, data)
    assert 0.0 <= result["test/acc"] <= 1.0 and result["test/acc_top5"] >= result["test/acc"]

    export = Path(trainer.log_dir) / "export"
    saved = torch.load(export / "model.pt", weights_only=True)
    assert Genotype.from_dict(saved["genotype"]) == Genotype.published("DARTS_V2")
    assert saved["build"]["channels"] == 4
    program = torch.export.load(str(export / "model.pt2")).module()
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(program(x), model.network(x), rtol=1e-4, atol=1e-5)
    assert (export / "model.onnx").is_file() and (export / "summary.json").is_file()
    rebuilt = GenotypeClassifier(genotype=str(export / "genotype.json"), in_channels=1, num_classes=10, image_size=8,
                                 channels=4, layers=3).network.eval()
    rebuilt.load_state_dict(saved["state_dict"])
    torch.testing.assert_close(rebuilt(x), model.network(x))


def test_resume_with_a_different_genotype_is_a_clear_error(tmp_path):
    data = ClassificationDataModule("digits", batch_size=32, cutout_length=0)
    trainer = light_trainer(tmp_path, max_epochs=1, callbacks=[pl.callbacks.ModelCheckpoint(save_last=True)])
    trainer.fit(tiny_classifier(), data)
    checkpoint = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
    assert torch.load(checkpoint, weights_only=True)["genotype"]["repr"] == repr(Genotype.published("DARTS_V2"))
    mismatch = (r"model\.genotype: checkpoint \"Genotype\(normal=\[\('sep_conv_3x3', 0\).*"
                r"configured \"Genotype\(normal=\[\('sep_conv_3x3', 1\)")
    with pytest.raises(ResumeMismatchError, match=mismatch):
        light_trainer(tmp_path / "b", max_epochs=2).fit(tiny_classifier(genotype="DARTS_V1"), data, ckpt_path=checkpoint)
    resumed = light_trainer(tmp_path / "c", max_epochs=2)
    resumed.fit(tiny_classifier(), data, ckpt_path=checkpoint)
    assert resumed.current_epoch == 2


def test_a_non_finite_training_loss_stops_the_run_naming_its_first_step(tmp_path):
    """The loss is checked on the device at every step and read at the logging steps and the end of the epoch
    (here the last of three batches): the error names the first bad step, and no checkpoint is written."""
    model = tiny_classifier()
    with torch.no_grad():
        model.network.classifier.weight.fill_(float("nan"))
    data = ClassificationDataModule("digits", batch_size=32, cutout_length=0)
    trainer = light_trainer(tmp_path, max_epochs=1, log_every_n_steps=50,
                            callbacks=[pl.callbacks.ModelCheckpoint(save_last=True)])
    expected = r"the training loss is nan at global step 0 \(epoch 0, batch 0\); lower the learning rate \(model\.lr\)"
    with pytest.raises(NonFiniteLossError, match=expected):
        trainer.fit(model, data)
    assert trainer.global_step == 2  # raised in the epoch's last step (two optimizer steps done), not in the first
    assert not list(tmp_path.rglob("*.ckpt"))


def test_without_max_epochs_the_schedules_plan_the_papers_600_epochs():
    """A run bounded by steps only: the learning rate anneals, and the drop-path probability rises, over the
    paper's 600 epochs (the drop-path probability never passes its final value)."""
    model = tiny_classifier()
    model.trainer = pl.Trainer(accelerator="cpu", max_steps=5, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, enable_model_summary=False)
    assert model.epochs() == 600
    assert model.configure_optimizers()["lr_scheduler"]["scheduler"].T_max == 600


def test_genotype_errors():
    with pytest.raises(GenotypeError, match="known names"):
        tiny_classifier(genotype="DARTS_V9")
    with pytest.raises(ValueError, match="unknown op 'conv_9x9'"):
        tiny_classifier(genotype=repr(Genotype.published("DARTS_V2")).replace("dil_conv_3x3", "conv_9x9"))


def test_holdout_mode_trains_on_search_train_and_evaluates_on_search_val():
    from darts_lightning import SearchDataModule

    search = SearchDataModule("digits", seed=3)
    search.setup()
    holdout = ClassificationDataModule("digits", seed=3, cutout_length=0, holdout=True)
    holdout.setup()
    assert holdout.train_set.indices == search.search_train.indices
    assert holdout.test_set.indices == search.search_val.indices


def test_a_genotype_file_naming_an_import_path_is_refused_unless_allowed(tmp_path, monkeypatch):
    import sys

    from tests.spaces.darts.test_genotype import write_canary_genotype

    monkeypatch.syspath_prepend(str(tmp_path))
    path, op, marker = write_canary_genotype(tmp_path)
    with pytest.raises(GenotypeError) as error:
        tiny_classifier(genotype=str(path))
    message = str(error.value)
    assert op in message and str(path) in message and "allow_import_paths" in message
    assert not marker.exists() and op.split(":")[0] not in sys.modules
    model = tiny_classifier(genotype=str(path), allow_import_paths=True)
    assert marker.exists() and model.genotype.normal[0] == (op, 0)
    # Not a hyperparameter: a checkpoint cannot turn it on for whoever loads it.
    assert "allow_import_paths" not in model.hparams


def test_import_paths_in_the_configuration_own_text_need_no_consent():
    """A repr string written in the config, or a Genotype given in Python, is the user's own text, like the
    search's ops list (test_cli.test_op_given_by_import_path_in_yaml)."""
    op = "tests.custom_ops:conv_1x1"
    genotype = Genotype(((op, 0),) + Genotype.published("DARTS_V2").normal[1:], [2, 3, 4, 5],
                        Genotype.published("DARTS_V2").reduce, [2, 3, 4, 5])
    assert tiny_classifier(genotype=repr(genotype)).genotype == genotype
    assert tiny_classifier(genotype=genotype).genotype == genotype


def test_comparing_a_checkpoint_genotype_imports_nothing(tmp_path, monkeypatch):
    import json

    from tests.spaces.darts.test_genotype import write_canary_genotype

    monkeypatch.syspath_prepend(str(tmp_path))
    path, op, marker = write_canary_genotype(tmp_path)
    model = tiny_classifier()
    with pytest.raises(ValueError, match="genotype"):
        model.on_load_checkpoint({"genotype": json.loads(path.read_text()), "hyper_parameters": dict(model.hparams)})
    assert not marker.exists()


def test_console_refuses_an_import_path_in_a_genotype_file(tmp_path, monkeypatch, capsys):
    """``darts-lightning fit`` (``main`` is the console script's function) fails in one line while
    instantiating the model, before any data is read and before the op's module is imported."""
    from darts_lightning.entry.cli import main
    from tests.spaces.darts.test_genotype import write_canary_genotype

    monkeypatch.syspath_prepend(str(tmp_path))
    path, op, marker = write_canary_genotype(tmp_path)
    status = main(["fit", "--config", str(Path(__file__).resolve().parents[2] / "configs" / "retrain_digits.yaml"),
                   "--model.genotype", str(path), "--model.channels", "4", "--model.layers", "3",
                   "--trainer.default_root_dir", str(tmp_path / "run")])
    assert status == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert "allow_import_paths" in line and op in line
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_epoch_level_values_are_reduced_across_ranks(tmp_path, monkeypatch):
    """Under DDP, a value logged per epoch must be reduced across the ranks (``sync_dist=True``, or a
    torchmetrics metric, which reduces itself); otherwise Lightning warns at every epoch of a multi-process
    run and each rank reports its own value. Checked on every log call of a short fit (the two-process
    command line is checked for the search in tests/entry/test_cli.py)."""
    from torchmetrics import Metric

    calls = []
    log = pl.LightningModule.log

    def recording_log(self, name, value, *args, **kwargs):
        calls.append((name, value, kwargs))
        return log(self, name, value, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", recording_log)
    data = ClassificationDataModule("digits", batch_size=32, cutout_length=0)
    light_trainer(tmp_path, max_epochs=1).fit(tiny_classifier(), data)
    epoch_level = {name for name, value, kwargs in calls
                   if kwargs.get("on_epoch", True) and not isinstance(value, Metric)}
    assert {"train/drop_path_prob", "lr", "val/loss"} <= epoch_level
    unsynced = {name for name, value, kwargs in calls
                if name in epoch_level and not kwargs.get("sync_dist", False)}
    assert not unsynced


def test_arch_classifier_trains_any_space_and_resumes_only_the_same_answer(tmp_path):
    """The retraining of any space's answer: a NAS-Bench-201 cell given as text, then as the answer file a search
    writes, is the same run; another cell is refused, naming both."""
    from darts_lightning import ArchClassifier, NB201Arch
    from darts_lightning.spaces import NB201Space

    space = NB201Space(channels=4, cells_per_stage=1)
    cell = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
    shape = dict(in_channels=1, num_classes=10, image_size=8)
    model = ArchClassifier(space=space, arch=cell, **shape)
    assert model.arch == NB201Arch.parse(cell) and model.hparams["space"]["class_path"].endswith("NB201Space")
    data = ClassificationDataModule("digits", batch_size=32, cutout_length=0)
    trainer = light_trainer(tmp_path, max_epochs=1, callbacks=[pl.callbacks.ModelCheckpoint(save_last=True)])
    trainer.fit(model, data)
    export = Path(trainer.log_dir) / "export"
    assert (export / "arch.txt").read_text().strip() == cell
    assert torch.load(export / "model.pt", weights_only=True)["arch"] == cell
    checkpoint = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"

    other = cell.replace("none~1", "nor_conv_3x3~1")
    with pytest.raises(ResumeMismatchError, match=r"model\.arch: checkpoint .*none~1.*, configured .*nor_conv_3x3~1"):
        light_trainer(tmp_path / "b", max_epochs=2).fit(ArchClassifier(space=space, arch=other, **shape), data,
                                                        ckpt_path=checkpoint)
    resumed = light_trainer(tmp_path / "c", max_epochs=2)
    resumed.fit(ArchClassifier(space=space, arch=str(export / "arch.txt"), **shape), data, ckpt_path=checkpoint)
    assert resumed.current_epoch == 2


@pytest.mark.parametrize(("arguments", "message"), [
    (dict(arch=""), "no answer to retrain: give model.arch, the answer file a search wrote \\(arch.txt\\)"),
    (dict(arch="|bad~0|"), "3 nodes separated by"),
    (dict(arch="|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", layers=0), "layers"),
    (dict(arch="|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", space="nowhere"), "valid spaces are: "),
])
def test_arch_classifier_names_what_is_wrong(arguments, message):
    from darts_lightning import ArchClassifier

    with pytest.raises(ValueError, match=message):
        ArchClassifier(**{"space": "nasbench201", **arguments})


def test_the_export_callback_is_added_once_and_can_skip_the_deployable_files(tmp_path):
    model = tiny_classifier()
    data = ClassificationDataModule("digits", batch_size=32, cutout_length=0)
    trainer = light_trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    trainer.fit(model, data)
    assert [type(c).__name__ for c in trainer.callbacks].count("ExportNetwork") == 1, "the trainer's, not a second"
    export = Path(trainer.log_dir) / "export"
    assert sorted(p.name for p in export.iterdir()) == ["genotype.json", "model.pt"]
    with pytest.raises(TypeError, match="ExportNetwork exports a retraining"):
        ExportNetwork().on_fit_end(trainer, pl.LightningModule())
