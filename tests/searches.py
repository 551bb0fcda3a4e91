"""Tiny differentiable searches for the tests, and the checkpoint helpers the resume tests share.

Many tests describe a search by a handful of settings of the DARTS family (``relaxation="gdas"``,
``order=2``, ``auxiliary_skip=True``, ...). They are written as the flat settings that
:func:`darts_lightning.differentiable.legacy.convert_flat_settings` maps onto the search's parts, so that a
test names what it varies in one line; the tests of the parts themselves construct the parts directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from darts_lightning import DARTSSearch
from darts_lightning.differentiable.legacy import convert_flat_settings

#: A 3-cell (one normal, two reduction cells), 4-channel supernet of two nodes per cell (five mixed edges)
#: for the 8×8 one-channel digits, with an architecture learning rate large enough for α to move visibly in
#: a few steps.
TINY: dict[str, Any] = dict(in_channels=1, num_classes=10, image_size=8, channels=4, layers=3, nodes=2, multiplier=2,
                            arch_lr=3e-2)


def search_parts(**flat: Any) -> tuple[dict[str, Any], list[pl.Callback]]:
    """``(DARTSSearch arguments, trainer callbacks)`` of the tiny search with the flat settings ``flat``
    (in the NAS-Bench-201 space, without the DARTS cell's nodes)."""
    tiny = dict(TINY)
    if flat.get("space") == "nasbench201":
        del tiny["nodes"], tiny["multiplier"]
    return convert_flat_settings({**tiny, **flat})


def flat_search(**flat: Any) -> tuple[DARTSSearch, list[pl.Callback]]:
    """The tiny search with the flat settings ``flat`` and the trainer callbacks they need
    (R-DARTS's eigenvalue, compilation)."""
    model, callbacks = search_parts(**flat)
    return DARTSSearch(**model), callbacks


def tiny_search(**flat: Any) -> DARTSSearch:
    """The tiny search with the flat settings ``flat``, for settings that need no trainer callback."""
    model, callbacks = flat_search(**flat)
    if callbacks:
        raise ValueError(f"the settings {sorted(flat)} need trainer callbacks {callbacks}: use flat_search")
    return model


def checkpointing() -> list[pl.Callback]:
    """A checkpoint at the end of every epoch, and ``last.ckpt``."""
    return [pl.callbacks.ModelCheckpoint(save_last=True, every_n_epochs=1)]


def last_ckpt(trainer: pl.Trainer) -> Path:
    return Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"


class StopAfterFirstEpoch(pl.Callback):
    """Ends the fit after its first epoch (a run interrupted at an epoch boundary)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


class StopAfterEvaluations(pl.Callback):
    """Stops a discrete search once ``evaluations`` architectures are evaluated, as an interruption would."""

    def __init__(self, evaluations: int) -> None:
        self.evaluations = evaluations

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.loop.evaluated >= self.evaluations:
            trainer.should_stop = True


def fit_discrete(model: Any, root: Path, callbacks=(), ckpt_path=None) -> pl.Trainer:
    """``model`` (a ``DiscreteSearch``) fitted on the CPU into ``root``, quietly; resumed from ``ckpt_path``."""
    trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, default_root_dir=str(root), enable_progress_bar=False,
                         enable_model_summary=False, callbacks=list(callbacks))
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer
