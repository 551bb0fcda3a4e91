"""Exact resumption with augmentation on: a search and a retraining resumed from an epoch-boundary
checkpoint end bit-identical to the uninterrupted run, whatever torch's global seed and ``num_workers``.

Three data sources: the digits with cutout (their only augmentation: no crop or flip on 8×8 digits), a
generated ImageFolder tree (flip and cutout) and a generated ``cifar-10-batches-py`` tree (crop, flip
and cutout, as the DARTS CIFAR-10 pipeline).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import ClassificationDataModule, GenotypeClassifier, SearchDataModule
from darts_lightning.data import ImageDataModule
from darts_lightning.retrain.module import ExportNetwork

from .conftest import quick_trainer
from .scenarios import state_snapshot
from .searches import StopAfterFirstEpoch, checkpointing, last_ckpt, tiny_search


def _image_folder(root: Path) -> Path:
    """3 classes × 8 random 16×16 RGB images."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for cls in ("a", "b", "c"):
        (root / cls).mkdir(parents=True)
        for i in range(8):
            pixels = torch.randint(0, 256, (16, 16, 3), generator=generator, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def _cifar10_tree(root: Path) -> Path:
    """torchvision's ``cifar-10-batches-py`` layout: five training batches of 4 images, a test batch of 8,
    ``batches.meta``; pickled dictionaries with the real key names (``data`` rows of 3·32·32 uint8)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in batches:
        n = 8 if name == "test_batch" else 4
        entry = {
            "batch_label": name,
            "labels": torch.randint(0, 10, (n,), generator=generator).tolist(),
            "data": torch.randint(0, 256, (n, 3 * 32 * 32), generator=generator, dtype=torch.uint8).numpy(),
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"label_names": names, "num_cases_per_batch": 4, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return root


def _data(kind: str, dataset: str, workers: int, tmp_path: Path, monkeypatch) -> ImageDataModule:
    if dataset == "digits":
        args = dict(dataset="digits", batch_size=16, cutout_length=4)
    elif dataset == "imagefolder":
        root = _image_folder(tmp_path / "images")
        args = dict(dataset="imagefolder", root=str(root), resize=8, batch_size=4, cutout_length=4)
        if kind == "retrain":
            args["test_root"] = str(root)
    else:
        # The generated files cannot carry the real files' MD5 sums: torchvision checks existence only here.
        monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
        args = dict(dataset="cifar10", root=str(_cifar10_tree(tmp_path / "cifar")), batch_size=4, cutout_length=8)
    data_class = SearchDataModule if kind == "search" else ClassificationDataModule
    return data_class(num_workers=workers, **args)


def _model(kind: str, data: ImageDataModule) -> pl.LightningModule:
    shape = dict(in_channels=data.in_channels, num_classes=data.num_classes, image_size=data.image_size)
    if kind == "search":
        return tiny_search(layers=2, sample_seed=0, ops=["none", "skip_connect", "avg_pool_3x3", "sep_conv_3x3"], **shape)
    # drop-path on (0.1 in the second epoch, the resumed one): its masks must not come from the global generator
    return GenotypeClassifier("DARTS_V2", channels=4, layers=2, drop_path_prob=0.2, drop_path_seed=0, **shape)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("dataset", ["digits", "imagefolder", "cifar10"])
@pytest.mark.parametrize("kind", ["search", "retrain"])
def test_resume_with_augmentation_equals_uninterrupted_run(tmp_path, monkeypatch, kind, dataset, workers):

    def run(name, global_seed, ckpt_path=None, stop_early=False):
        pl.seed_everything(0)  # the same initial model in every run
        data = _data(kind, dataset, workers, tmp_path / name, monkeypatch)
        model = _model(kind, data)
        torch.manual_seed(global_seed)  # a different global generator in every run: augmentation must not use it
        # the state dict and answer only: the deployable files are the export tests'
        callbacks = checkpointing() + ([ExportNetwork(deployable=False)] if kind == "retrain" else [])
        callbacks += [StopAfterFirstEpoch()] if stop_early else []
        trainer = quick_trainer(tmp_path / name, max_epochs=2, limit_train_batches=2, limit_val_batches=1,
                                num_sanity_val_steps=0, logger=False, callbacks=callbacks)
        trainer.fit(model, data, ckpt_path=ckpt_path)
        return model, trainer

    full, full_trainer = run("full", global_seed=1)
    _, first = run("part", global_seed=2, stop_early=True)
    assert first.global_step == 2
    resumed, trainer = run("resumed", global_seed=3, ckpt_path=last_ckpt(first))
    assert trainer.global_step == full_trainer.global_step == 4
    expected, got = state_snapshot(full, full_trainer), state_snapshot(resumed, trainer)
    assert expected.keys() == got.keys()
    assert any(key.startswith("optimizer") for key in expected)
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key
    if kind == "search":
        assert resumed.genotype_history == full.genotype_history
