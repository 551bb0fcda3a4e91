"""Retraining a genotype: the LightningModule, its data, export, checkpoints and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import ClassificationDataModule, Genotype, GenotypeClassifier, GenotypeError
from darts_lightning.data import DIGITS_TEST_SIZE

from .conftest import quick_trainer


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
    scripted = torch.jit.load(str(export / "model.torchscript.pt"))
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(scripted(x), model.network(x), rtol=1e-4, atol=1e-5)
    rebuilt = GenotypeClassifier(genotype=str(export / "genotype.json"), in_channels=1, num_classes=10, image_size=8,
                                 channels=4, layers=3).network.eval()
    rebuilt.load_state_dict(saved["state_dict"])
    torch.testing.assert_close(rebuilt(x), model.network(x))


def test_resume_with_a_different_genotype_is_a_clear_error(tmp_path):
    data = ClassificationDataModule("digits", batch_size=32, cutout_length=0)
    trainer = quick_trainer(tmp_path, max_epochs=1, callbacks=[pl.callbacks.ModelCheckpoint(save_last=True)])
    trainer.fit(tiny_classifier(), data)
    checkpoint = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
    assert torch.load(checkpoint, weights_only=True)["genotype"]["repr"] == repr(Genotype.published("DARTS_V2"))
    with pytest.raises(GenotypeError, match="configured with .*configure the checkpoint's genotype"):
        quick_trainer(tmp_path / "b", max_epochs=2).fit(tiny_classifier(genotype="DARTS_V1"), data, ckpt_path=checkpoint)
    resumed = quick_trainer(tmp_path / "c", max_epochs=2)
    resumed.fit(tiny_classifier(), data, ckpt_path=checkpoint)
    assert resumed.current_epoch == 2


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
