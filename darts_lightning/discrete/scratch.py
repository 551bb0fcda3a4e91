"""Scoring by training from scratch (evaluator ``scratch``): the expensive reference of the evaluators.

The partial training behind Li & Talwalkar's other baseline, random search with early stopping ("Random
Search and Reproducibility for Neural Architecture Search", UAI 2019): a few epochs of each cell as a cheap
stand-in for its final training. The space builds the network (:meth:`SearchSpace.build_network
<darts_lightning.spaces.SearchSpace.build_network>`, a plain classifier) and one generic module,
:class:`ScratchClassifier`, trains it: cross-entropy on the logits, SGD with a cosine schedule, gradient
clipping, as the DARTS retraining does without its auxiliary head and drop-path (which a few epochs cannot
use).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.accelerators import AcceleratorRegistry
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from darts_lightning.data import ClassificationDataModule
from darts_lightning.discrete.evaluation import Evaluation, Evaluator, classification_scores
from darts_lightning.spaces import SearchSpace
from darts_lightning.spaces.base import Arch
from darts_lightning.utils.layout import ChannelsLastMixin
from darts_lightning.utils.training import planned_epochs
from darts_lightning.utils.validation import check_choice, check_keywords, check_range

__all__ = ["ScratchClassifier", "ScratchEvaluator"]


class ScratchClassifier(ChannelsLastMixin, pl.LightningModule):
    """Train a fixed network from scratch: cross-entropy on its logits, SGD, cosine schedule over
    ``max_epochs`` (one epoch when the trainer sets none).

    The network is any classifier whose ``forward(x)`` gives logits (a space's :meth:`build_network`). The
    gradient clip is the trainer's ``gradient_clip_val``. ``channels_last``: the memory layout (``None``: on
    a CPU only, as the other modules of the package).
    """

    def __init__(self, network: nn.Module, lr: float = 0.025, lr_min: float = 0.0, momentum: float = 0.9,
                 weight_decay: float = 3e-4, nesterov: bool = False, channels_last: bool | None = None) -> None:
        super().__init__()
        for name, value in (("lr", lr), ("lr_min", lr_min), ("weight_decay", weight_decay)):
            check_range(name, value, 0)
        check_range("momentum", momentum, 0, 1, high_open=True)
        check_choice("nesterov", nesterov, (True, False))
        check_choice("channels_last", channels_last, (None, True, False))
        self.save_hyperparameters(ignore=["network"])
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        return self.network(self._layout(x))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.SGD(self.parameters(), lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["nesterov"],
                                    weight_decay=hp["weight_decay"])
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=planned_epochs(self.trainer, 1), eta_min=hp["lr_min"]
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence the trainer's informational messages (device summary etc.) for the nested proxy runs;
    warnings filtered inside are restored on exit."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class ScratchEvaluator(Evaluator[Arch]):
    """Score a cell by a short training from scratch: reward = accuracy on the holdout split, cost = seconds.

    The model trains on search-train and is scored on search-val (``ClassificationDataModule(holdout=True)``),
    never on the test split. The space builds the cell's network at the size ``channels``/``layers``
    (:meth:`~darts_lightning.spaces.SearchSpace.build_network`), and :class:`ScratchClassifier` trains it.
    The weights are initialised from ``seed`` inside a forked random state, so the caller's random streams
    are untouched and equal cells get equal rewards.

    Args:
        space: the space of the cells (an instance, a registered name or ``{"class_path", "init_args"}``).
        epochs: training epochs. channels, layers: the network's size, as the space reads them
            (``nasbench201``: first-stage channels and cells per stage, benchmark 16 and 5; ``darts``: C and
            cells, DARTS 36 and 20).
        data: a ``ClassificationDataModule(holdout=True)`` or its arguments (``holdout`` is set; batch 64
            and no cutout unless given); ``None``: the digits, batch 64, no cutout.
        lr, lr_min, momentum, weight_decay: SGD with a cosine schedule (the DARTS retraining optimiser).
        grad_clip: gradient-norm clip (5).
        seed: initialisation seed. accelerator: the proxy trainer's accelerator.
        trainer_args: further ``pl.Trainer`` arguments (e.g. ``limit_train_batches``).
        log_dir: where each trial writes its TensorBoard logs (training loss per epoch, holdout accuracy and
            loss at the end) and the cell's text form (``arch.txt``): ``{log_dir}/{digest of the cell}/epochs_{n}``;
            ``None``: trials log nothing.
    """

    def __init__(
        self,
        space: SearchSpace[Arch] | str | Mapping[str, Any] = "nasbench201",
        epochs: int = 2,
        channels: int = 8,
        layers: int = 1,
        data: ClassificationDataModule | Mapping[str, Any] | None = None,
        lr: float = 0.025,
        lr_min: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        seed: int = 0,
        accelerator: str = "cpu",
        trainer_args: Mapping[str, Any] | None = None,
        log_dir: str | None = None,
    ) -> None:
        super().__init__(space)
        for name, value in (("epochs", epochs), ("channels", channels), ("layers", layers)):
            check_range(name, value, 1, integer=True)
        for name, rate in (("lr", lr), ("lr_min", lr_min), ("weight_decay", weight_decay), ("grad_clip", grad_clip)):
            check_range(name, rate, 0)
        check_range("momentum", momentum, 0, 1, high_open=True)
        check_range("seed", seed, 0, integer=True)
        check_choice("accelerator", accelerator, ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())])
        check_keywords("trainer_args", trainer_args, pl.Trainer)
        if isinstance(data, Mapping):
            check_keywords("data", data, ClassificationDataModule)
        if data is None:
            data = ClassificationDataModule("digits", batch_size=64, cutout_length=0, holdout=True)
        elif isinstance(data, Mapping):
            data = ClassificationDataModule(**{"batch_size": 64, "cutout_length": 0, **data, "holdout": True})
        if not data.holdout:
            raise ValueError("the scratch evaluator scores on the holdout split: use ClassificationDataModule(holdout=True)")
        data.setup("fit")
        self.data = data
        self.epochs, self.channels, self.layers = epochs, channels, layers
        self.optim = {"lr": lr, "lr_min": lr_min, "momentum": momentum, "weight_decay": weight_decay}
        self.grad_clip, self.seed, self.accelerator = grad_clip, seed, accelerator
        self.trainer_args = dict(trainer_args or {})
        self.log_dir = log_dir

    def with_epochs(self, epochs: int) -> ScratchEvaluator:
        """This evaluator with ``epochs`` training epochs (the same data, network size and seed); one object per
        number of epochs, so that an executor ships each once."""
        check_range("epochs", epochs, 1, integer=True)
        if epochs == self.epochs:
            return self
        by_epochs = self.__dict__.setdefault("_by_epochs", {})
        if epochs not in by_epochs:
            other = copy.copy(self)
            other.epochs = epochs
            other.__dict__["_by_epochs"] = {}
            by_epochs[epochs] = other
        return by_epochs[epochs]

    def build_model(self, arch: Arch) -> ScratchClassifier:
        """The module that trains ``arch`` (call inside a seeded random state)."""
        data = self.data
        network = self.space.build_network(
            arch, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size,
            channels=self.channels, layers=self.layers,
        )
        optim = self.optim
        return ScratchClassifier(network, lr=optim["lr"], lr_min=optim["lr_min"], momentum=optim["momentum"],
                                 weight_decay=optim["weight_decay"])

    def trial_dir(self, arch: Arch) -> Path | None:
        """Where the trial of ``arch`` at this evaluator's epochs logs (``None`` without ``log_dir``)."""
        if self.log_dir is None:
            return None
        digest = hashlib.sha1(self.space.format(arch).encode()).hexdigest()[:12]
        return Path(self.log_dir) / digest / f"epochs_{self.epochs}"

    def evaluate(self, arch: Arch) -> Evaluation:
        start = time.perf_counter()
        directory = self.trial_dir(arch)
        logger: TensorBoardLogger | bool = False
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "arch.txt").write_text(self.space.format(arch) + "\n")
            logger = TensorBoardLogger(save_dir=str(directory.parent), name="", version=directory.name)
        with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as root, _quiet_lightning():
            warnings.filterwarnings("ignore", message=".*validation_step.*val_dataloader")  # scored below instead
            torch.manual_seed(self.seed)
            model = self.build_model(arch)
            trainer = pl.Trainer(**{
                "accelerator": self.accelerator, "devices": 1, "max_epochs": self.epochs, "logger": logger,
                "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
                "num_sanity_val_steps": 0, "limit_val_batches": 0, "gradient_clip_val": self.grad_clip,
                "default_root_dir": root, **self.trainer_args,
            })
            train_set, test_set = self.data.splits()
            trainer.fit(model, train_dataloaders=self._loader(train_set, shuffle=True))
            model.eval()
            scores = classification_scores(model, self._loader(test_set, shuffle=False),
                                           next(model.parameters()))
        seconds = time.perf_counter() - start
        if isinstance(logger, TensorBoardLogger):
            logger.log_metrics({"holdout/acc": scores.accuracy, "holdout/loss": scores.loss}, step=trainer.global_step)
            logger.finalize("success")
        parameters = sum(p.numel() for p in model.parameters())
        return Evaluation(reward=scores.accuracy, cost=seconds,
                          metrics={"accuracy": scores.accuracy, "loss": scores.loss, "seconds": seconds,
                                   "parameters": float(parameters), "steps": float(trainer.global_step)})

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, batch_size=self.data.batch_size, shuffle=shuffle, generator=generator)
