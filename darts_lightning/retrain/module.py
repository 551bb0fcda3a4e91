"""Training the network an answer describes from scratch (DARTS, Liu et al., sec. 3.2 and A.2).

:class:`NetworkClassifier` is the training every retraining shares: an image classifier with standard
(automatic) optimisation, cross-entropy on the logits, SGD cosine-annealed over the run, top-1 and top-5
accuracy on the validation and test sets, a non-finite loss stopping the run, and the trained network exported
at the end of ``fit``. Its defaults are the paper's CIFAR-10 recipe: learning rate 0.025, momentum 0.9, weight
decay 3·10⁻⁴, cosine-annealed to 0 (batch 96, cutout 16 and gradient clip 5 live in the data module and the
trainer; see ``configs/retrain_cifar10.yaml``).

Two modules build on it:

* :class:`ArchClassifier` trains the answer of any search space (a registered space or a user's own) on the
  network the space builds from it (:meth:`darts_lightning.spaces.SearchSpace.build_network`): the same cell
  code the search ran;
* :class:`GenotypeClassifier` trains a DARTS genotype with the paper's extras: the auxiliary head (weight 0.4)
  and the drop-path probability rising linearly from 0 to 0.2.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.export import ExportedProgram
from torchmetrics.classification import MulticlassAccuracy

from darts_lightning.costs.models import MultiplyAdds, Parameters
from darts_lightning.spaces.base import SearchSpace, get_space
from darts_lightning.spaces.darts.genotype import Genotype
from darts_lightning.spaces.darts.network import EvalNetwork, Variant
from darts_lightning.utils.distributed import broadcast_
from darts_lightning.utils.files import (
    atomic_open,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    use_atomic_checkpoints,
)
from darts_lightning.utils.layout import ChannelsLastMixin
from darts_lightning.utils.resume import check_resume, record_module
from darts_lightning.utils.training import (
    BatchMean,
    NonFiniteLoss,
    log_every_n_steps,
    planned_epochs,
    trainer_callbacks,
    trainer_datamodule,
)
from darts_lightning.utils.validation import check_choice, check_range

__all__ = ["NetworkClassifier", "ArchClassifier", "GenotypeClassifier", "ExportNetwork", "export_network", "onnx_latency"]

#: The planned epochs when the trainer sets no ``max_epochs``: the paper's CIFAR-10 retraining (sec. A.2).
DEFAULT_EPOCHS = 600


def _check_optimizer(lr: float, lr_min: float, momentum: float, weight_decay: float) -> None:
    for name, amount in (("lr", lr), ("lr_min", lr_min), ("weight_decay", weight_decay)):
        check_range(name, amount, 0)
    check_range("momentum", momentum, 0, 1, high_open=True)


class NetworkClassifier(ChannelsLastMixin, pl.LightningModule):
    """The training every retraining shares (see the module docstring); a subclass builds ``self.network``,
    calls :meth:`_init_training` and says what its answer is (:meth:`export_record`, :meth:`write_answer`).

    The hyperparameters ``lr``, ``lr_min``, ``momentum``, ``weight_decay``, ``in_channels`` and ``image_size``
    are the subclass's. :meth:`training_loss` is the one place a subclass adds terms (the auxiliary head).
    """

    network: nn.Module

    def _init_training(self, num_classes: int) -> None:
        top_k = min(5, num_classes)
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        # train/loss per step is this rank's batch; its epoch mean is reduced across ranks by the metric, once
        # per epoch (sync_dist=True on a value logged on_step would all-reduce at every step).
        self.train_loss = BatchMean()
        self.nonfinite = NonFiniteLoss(("training",), "lower the learning rate (model.lr) or check the data")
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
        self.test_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_top5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.network(self._layout(x))

    def epochs(self) -> int:
        """The planned epochs, over which the learning rate anneals: the trainer's ``max_epochs`` (600, the
        paper's, when it sets none)."""
        return planned_epochs(self.trainer, DEFAULT_EPOCHS)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs(), eta_min=hp["lr_min"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def training_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss, logits)`` of one training batch: cross-entropy on the network's logits."""
        logits = self.network(self._layout(x))
        return F.cross_entropy(logits, y), logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss, logits = self.training_loss(x, y)
        # Noted on the device; read (and raised, naming this step) where the host reads the device anyway.
        self.nonfinite.record(loss, "training", self.global_step, self.current_epoch, batch_idx)
        self.train_top1(logits.detach(), y)
        self.train_loss(loss.detach(), len(y))
        # Lightning turns every progress-bar value into a number after every batch (a read from the device,
        # whether a bar is shown or not): the loss goes to the bar only when there is one.
        shown = self.trainer.progress_bar_callback is not None
        self.log("train/loss", self.train_loss, prog_bar=shown, on_step=True, on_epoch=True)
        self.log("train/acc", self.train_top1, on_step=False, on_epoch=True)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True, sync_dist=True)
        # The steps Lightning logs read the logged values from the device; the last batch precedes the epoch's
        # validation and checkpoint.
        every = log_every_n_steps(self.trainer)
        if self.trainer.is_last_batch or (every > 0 and (self.global_step + 1) % every == 0):
            self.nonfinite.raise_if_any()
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, top1: MulticlassAccuracy, top5: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        top1(logits, y)
        top5(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        self.log(f"{stage}/acc", top1, prog_bar=True)
        self.log(f"{stage}/acc_top5", top5)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_top1, self.val_top5)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_top1, self.test_top5)

    # ------------------------------------------------------------------ checkpoints and export

    def setup(self, stage: str) -> None:
        use_atomic_checkpoints(self.trainer)  # a full disk must not leave a truncated checkpoint
        super().setup(stage)  # the memory layout (ChannelsLastMixin)

    def on_train_end(self) -> None:
        # A run that stops between logging steps (max_steps, an interrupted epoch) reports a non-finite loss too.
        self.nonfinite.raise_if_any()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite.raise_if_any()  # never save the state of a diverged run
        record_module(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_resume(self, checkpoint, datamodule=trainer_datamodule(self._trainer))

    def configure_callbacks(self) -> list[pl.Callback]:
        """The export at the end of ``fit`` (:class:`ExportNetwork`), unless the trainer has its own."""
        given = trainer_callbacks(self._trainer) if self._trainer is not None else []
        return [] if any(isinstance(c, ExportNetwork) for c in given) else [ExportNetwork()]

    def export_record(self) -> dict[str, Any]:
        """What ``model.pt`` holds beside the state dict: the answer and the network's build arguments (plain
        data, loadable with ``weights_only=True``)."""
        raise NotImplementedError

    def write_answer(self, directory: Path) -> Path:
        """Write the answer the network was built from into ``directory``; returns the file."""
        raise NotImplementedError


class ArchClassifier(NetworkClassifier):
    """Train and test the network of one answer of any search space.

    Args:
        space: the space of the answer: a :class:`~darts_lightning.spaces.SearchSpace`, a registered name or
            ``{"class_path", "init_args"}`` (a user's space by its class path); recorded as the latter.
        arch: the answer: the path of an answer file a search wrote (the space's :attr:`answer_file`, read with
            :meth:`~darts_lightning.spaces.SearchSpace.read`), its text form (:meth:`parse`), or the answer itself.
        in_channels, num_classes, image_size: from the data (the CLI links them to the data module).
        channels, layers: the network's size as the space reads them (``None``: the space's evaluation size).
        lr, lr_min, momentum, weight_decay: SGD and its cosine schedule (the DARTS retraining's).
        channels_last: channels-last memory layout; ``None``: on a CPU only.
        allow_import_paths: a security setting for answer files (see
            :class:`GenotypeClassifier`); not saved with the hyperparameters.

    The answer is compared as the answer it names (by its text form) when a checkpoint resumes.
    """

    # ``arch`` is compared by its text form in :meth:`resume_compared`; trusting import paths is the reader's.
    RESUME_MAY_CHANGE = frozenset({"arch", "allow_import_paths"})

    def __init__(
        self,
        space: SearchSpace | str | Mapping[str, Any] = "nasbench201",
        arch: Any = "",
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int | None = None,
        layers: int | None = None,
        lr: float = 0.025,
        lr_min: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        channels_last: bool | None = None,
        allow_import_paths: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("image_size", image_size)):
            check_range(name, value, 1, integer=True)
        check_range("num_classes", num_classes, 2, integer=True)
        check_range("channels", channels, 1, integer=True, optional=True, hint="None: the space's evaluation size")
        check_range("layers", layers, 1, integer=True, optional=True, hint="None: the space's evaluation size")
        _check_optimizer(lr, lr_min, momentum, weight_decay)
        check_choice("channels_last", channels_last, (None, True, False))
        check_choice("allow_import_paths", allow_import_paths, (True, False))
        self.space: SearchSpace[Any] = get_space(space)
        self.arch = _configured_arch(self.space, arch, allow_import_paths)
        # A file or text is recorded as given (resuming compares the answer itself, see resume_compared).
        recorded = str(arch) if isinstance(arch, (str, Path)) else self.space.format(self.arch)
        self.save_hyperparameters({
            "space": self.space.config(), "arch": recorded,
            "in_channels": in_channels, "num_classes": num_classes, "image_size": image_size, "channels": channels,
            "layers": layers, "lr": lr, "lr_min": lr_min, "momentum": momentum, "weight_decay": weight_decay,
            "channels_last": channels_last,
        })
        self.network = self.space.build_network(
            self.arch, num_classes=num_classes, in_channels=in_channels, image_size=image_size, channels=channels,
            layers=layers,
        )
        self._init_training(num_classes)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["arch"] = self.space.to_record(self.arch)

    def resume_compared(self, checkpoint: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """The answer, compared as the answer it names (its text form), not as the file or text that configured it."""
        saved = checkpoint.get("arch")
        if saved is None:
            return {}
        return {"arch": (self.space.format(self.space.from_record(saved, allow_import_paths=True)), self.space.format(self.arch))}

    def export_record(self) -> dict[str, Any]:
        hp = self.hparams
        return {
            "space": self.space.config(), "arch": self.space.to_record(self.arch),
            "build": {k: hp[k] for k in ("num_classes", "in_channels", "image_size", "channels", "layers")},
        }

    def write_answer(self, directory: Path) -> Path:
        return self.space.write(self.arch, directory)


def _configured_arch(space: SearchSpace[Any], spec: Any, allow_import_paths: bool) -> Any:
    """The answer ``spec`` names: a file the space wrote, the text form, or an answer itself."""
    if isinstance(spec, Path) or (isinstance(spec, str) and spec.strip() and Path(spec.strip()).is_file()):
        return space.read(Path(str(spec).strip()), allow_import_paths=allow_import_paths)
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError(
                f"no answer to retrain: give model.arch, the answer file a search wrote ({space.answer_file}) or the "
                f"answer's text form in the {space.name} space"
            )
        return space.parse(spec)
    space.format(spec)  # an answer of another type fails here, naming the space
    return spec


class GenotypeClassifier(NetworkClassifier):
    """Train and test the network of a DARTS genotype, with the paper's auxiliary head and drop path.

    Args:
        genotype: a published name (``DARTS_V2``), a ``genotype.json`` path or a DARTS repr string.
        in_channels, num_classes, image_size: from the data (the CLI links them to the data module).
        channels, layers: initial channels C and number of cells (CIFAR: 36 and 20).
        variant: ``cifar`` (3×3 stem) or ``imagenet`` (the DARTS mobile-setting stems).
        auxiliary_weight: weight of the auxiliary head's loss (0 removes the head).
        drop_path_prob: final drop-path probability, reached linearly over ``max_epochs``.
        lr, lr_min, momentum, weight_decay: SGD and its cosine schedule.
        channels_last: channels-last memory layout; ``None``: on a CPU only.
        drop_path_seed: seed of the drop-path masks. The masks of a step are drawn from torch's generator
            seeded with ``(drop_path_seed, global step, rank)``, not from its running global state, so that a
            run resumed from a checkpoint drops the paths an uninterrupted run would (``None``: drawn once
            from torch's seed on rank 0 and kept in the checkpoint).
        allow_import_paths: a security setting, off by default. An op of a genotype may be named by import
            path (``package.module:factory``), and resolving it imports that module: a ``genotype.json``
            from elsewhere could run any code it names. So a genotype read from a file refuses import-path
            ops unless this is ``True`` (``--model.allow_import_paths true``); turn it on only for files you
            trust (those your own search wrote). A DARTS repr string written in the configuration itself, or
            a :class:`Genotype` given in Python, is the user's own text and may name import paths without it,
            as the search's ``ops`` list may. The setting is not saved with the hyperparameters, so a
            checkpoint cannot turn it on for whoever loads it.

    A checkpoint resumes only into the same configuration (:func:`darts_lightning.utils.resume.check_resume`); the
    genotype is compared as the cell it names, so a published name and the JSON file of that cell agree.
    """

    # ``genotype`` is compared as a cell in on_load_checkpoint; trusting import paths is a setting of the reader.
    RESUME_MAY_CHANGE = frozenset({"genotype", "allow_import_paths"})

    network: EvalNetwork

    def __init__(
        self,
        genotype: str = "DARTS_V2",
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 36,
        layers: int = 20,
        variant: Variant = "cifar",
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.2,
        lr: float = 0.025,
        lr_min: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        channels_last: bool | None = None,
        drop_path_seed: int | None = None,
        allow_import_paths: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["allow_import_paths"])
        # Every argument is checked whatever the others are, before the genotype is read or the network built.
        for name, value in (("in_channels", in_channels), ("image_size", image_size), ("channels", channels), ("layers", layers)):
            check_range(name, value, 1, integer=True)
        check_range("num_classes", num_classes, 2, integer=True)
        check_choice("variant", variant, ("cifar", "imagenet"))
        check_range("auxiliary_weight", auxiliary_weight, 0)
        _check_optimizer(lr, lr_min, momentum, weight_decay)
        check_range("drop_path_prob", drop_path_prob, 0, 1, high_open=True)
        check_range("drop_path_seed", drop_path_seed, 0, integer=True, optional=True)
        check_choice("channels_last", channels_last, (None, True, False))
        check_choice("allow_import_paths", allow_import_paths, (True, False))
        self._drop_path_seed: int | None = drop_path_seed
        self.genotype = _configured_genotype(genotype, allow_import_paths)
        self.network = EvalNetwork(
            self.genotype, channels=channels, layers=layers, num_classes=num_classes, in_channels=in_channels,
            variant=variant, auxiliary=auxiliary_weight > 0, image_size=image_size,
        )
        self._init_training(num_classes)

    def on_fit_start(self) -> None:
        if self._drop_path_seed is None:
            # An integer tensor holds the seed exactly on every backend (MPS has no float64).
            seed = torch.tensor([torch.initial_seed() % (2**31)], dtype=torch.long, device=self.device)
            broadcast_([seed])
            self._drop_path_seed = int(seed.item())

    def on_train_epoch_start(self) -> None:
        self.network.set_drop_path_prob(self.hparams["drop_path_prob"] * self.current_epoch / self.epochs())
        # Equal on every rank, as is the learning rate: averaged once at epoch end.
        self.log("train/drop_path_prob", self.network.drop_path_prob, on_step=False, on_epoch=True, sync_dist=True)

    def training_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-entropy on the logits plus ``auxiliary_weight`` times the auxiliary head's (Liu et al., A.2),
        with this step's drop-path masks."""
        with self._drop_path_randomness():
            logits, logits_aux = self.network.forward_with_auxiliary(self._layout(x))
        loss = F.cross_entropy(logits, y)
        if logits_aux is not None:
            loss = loss + self.hparams["auxiliary_weight"] * F.cross_entropy(logits_aux, y)
        return loss, logits

    @contextmanager
    def _drop_path_randomness(self) -> Iterator[None]:
        """Draw this step's drop-path masks from torch's generator seeded with (seed, global step, rank); the
        global random state outside the step is left as it was."""
        if self.network.drop_path_prob <= 0.0:
            yield
            return
        seed = ((int(self._drop_path_seed or 0) * 1_000_003 + self.global_step) * 7919 + self.global_rank) % (2**63 - 1)
        on_gpu = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if on_gpu else [], device_type="cuda"):
            torch.manual_seed(seed)
            yield

    # ------------------------------------------------------------------ checkpoints and export

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["genotype"] = self.genotype.to_dict()
        checkpoint["drop_path_seed"] = self._drop_path_seed

    def resume_compared(self, checkpoint: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """The genotype, compared as the cell it names (by its text, so that nothing is imported), not as the
        name, file or string that configured it."""
        saved = checkpoint.get("genotype")
        return {"genotype": (saved.get("repr"), repr(self.genotype))} if saved is not None else {}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if checkpoint.get("drop_path_seed") is not None:
            self._drop_path_seed = int(checkpoint["drop_path_seed"])

    def export_record(self) -> dict[str, Any]:
        hp = self.hparams
        return {
            "genotype": self.genotype.to_dict(),
            "build": {k: hp[k] for k in ("channels", "layers", "num_classes", "in_channels", "variant", "image_size")}
            | {"auxiliary": self.network.auxiliary_head is not None},
        }

    def write_answer(self, directory: Path) -> Path:
        return self.genotype.save(directory / "genotype.json")


def _configured_genotype(spec: Genotype | str, allow_import_paths: bool) -> Genotype:
    """The genotype ``spec`` names. A repr string or a :class:`Genotype` is the configuration's own text and
    may name ops by import path; a file (or anything else read from elsewhere) may only with
    ``allow_import_paths``, checked before any op is resolved."""
    if isinstance(spec, Genotype):
        return spec
    text = str(spec).strip()
    if text.startswith("Genotype("):
        return Genotype.parse(text, allow_import_paths=True)
    return Genotype.resolve(text, allow_import_paths=allow_import_paths)


#: The ONNX operator set of ``model.onnx``: the dynamo exporter's own (no version conversion after the export),
#: which every onnxruntime since 1.14 runs.
ONNX_OPSET = 18
#: What installs the packages of the ONNX export (onnx, onnxscript) and of its latency (onnxruntime).
DEPLOY_INSTALL = "pip install darts-lightning[deploy]"
#: The latency measurement: warm-up runs, then the median of the timed runs.
LATENCY_WARMUP = 3
LATENCY_RUNS = 20

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class ExportNetwork(pl.Callback):
    """Export the trained network into ``<log dir>/export`` at the end of ``fit`` (rank 0): :func:`export_network`.

    ``deployable``: also the ``torch.export`` program, the ONNX file and the summary with the measured latency
    (a few seconds more); off, only the state dict and the answer file. A retraining adds this callback itself;
    give the trainer one to change it.
    """

    def __init__(self, deployable: bool = True) -> None:
        check_choice("deployable", deployable, (True, False))
        self.deployable = deployable

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, NetworkClassifier):
            raise TypeError(f"ExportNetwork exports a retraining (NetworkClassifier), not a {type(pl_module).__name__}")
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks
        if trainer.is_global_zero and log_dir:
            export_network(pl_module, Path(log_dir) / "export", deployable=self.deployable)


def export_network(model: NetworkClassifier, directory: str | Path, deployable: bool = True) -> dict[str, Path]:
    """Write the trained network into ``directory``, for this package and for deployment without it:

    * ``model.pt``: state dict, answer and build arguments (loadable with ``weights_only=True``), which rebuild
      the network here;
    * the answer file (``genotype.json`` for a DARTS genotype, the space's own for another answer);
    * ``model.pt2``: a ``torch.export`` program (``torch.export.load``), the network as a graph that runs on
      torch alone;
    * ``model.onnx``: the same graph in ONNX (opset :data:`ONNX_OPSET`), for onnxruntime and other runtimes;
    * ``summary.json``: parameters, multiply-adds and the onnxruntime latency on this machine, also printed.

    Both programs are the network in evaluation mode (a DARTS network without its training-only auxiliary head),
    on the CPU and in its dtype, for inputs ``[batch, in_channels, image_size, image_size]`` of any batch size
    (TorchScript, deprecated in torch, is no longer written). An export that fails for a limitation (an op the
    exporter cannot handle, the deploy packages not installed, an ONNX kernel onnxruntime lacks for the latency)
    writes ``<name>_failed.txt`` with the reason instead, and the run goes on: the state dict is the export; a
    failed write (``OSError``, a full disk) is an error of the run. ``deployable=False`` writes the first two
    only. Returns the written paths by kind: ``state_dict``, ``answer``, ``torch_export``, ``onnx``, ``summary``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hp = model.hparams
    shape = (int(hp["in_channels"]), int(hp["image_size"]), int(hp["image_size"]))
    written: dict[str, Path] = {}
    written["state_dict"] = directory / "model.pt"
    atomic_torch_save(
        {"state_dict": {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}}
        | model.export_record(),
        written["state_dict"],
    )
    written["answer"] = model.write_answer(directory)
    if not deployable:
        return written
    network = _deployable(model.network)
    program = _best_effort(directory, "torch_export", lambda: _export_program(network, shape, directory / "model.pt2"))
    if program is not None:
        written["torch_export"] = directory / "model.pt2"
    # The ONNX graph is the torch.export program's, translated (one trace for both files).
    source: ExportedProgram | nn.Module = program if program is not None else network
    if _best_effort(directory, "onnx", lambda: _export_onnx(source, shape, directory / "model.onnx")) is not None:
        written["onnx"] = directory / "model.onnx"
    summary = _best_effort(directory, "summary", lambda: _summarize(network, shape, directory, written.get("onnx")))
    if summary is not None:
        written["summary"] = summary
    return written


def onnx_latency(path: str | Path, runs: int = LATENCY_RUNS, warmup: int = LATENCY_WARMUP) -> float:
    """The latency in milliseconds of the ONNX model at ``path`` on this machine: onnxruntime's CPU execution
    provider at its default threads, one random input of batch 1, ``warmup`` runs and then the median of
    ``runs`` (the median, because a busy machine delays some runs)."""
    check_range("runs", runs, 1, integer=True)
    check_range("warmup", warmup, 0, integer=True)
    try:
        # Imported here: the package trains and exports without the deploy extra.
        onnxruntime = importlib.import_module("onnxruntime")
    except ImportError as error:
        raise ImportError(f"measuring the ONNX latency needs onnxruntime: {DEPLOY_INSTALL}") from error
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    if given.type not in _NUMPY_TYPES:
        raise ValueError(f"{path}: an input of type {given.type}; the latency is measured for {sorted(_NUMPY_TYPES)}")
    batch = np.random.default_rng(0).standard_normal([1, *given.shape[1:]]).astype(_NUMPY_TYPES[given.type])
    for _ in range(warmup):
        session.run(None, {given.name: batch})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {given.name: batch})
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


T = TypeVar("T")


def _deployable(trained: nn.Module) -> nn.Module:
    """The network as it is deployed: a copy on the CPU, in the standard layout and in evaluation mode, without
    a DARTS network's auxiliary head (training only: kept, it would count in the parameters and ride along in
    the files unused). The trained network stays as it is (on its device, in its layout, in its mode)."""
    network = copy.deepcopy(trained).to("cpu").to(memory_format=torch.contiguous_format).eval()
    if isinstance(network, EvalNetwork):
        network.auxiliary_head = None
    return network


def _best_effort(directory: Path, name: str, export: Callable[[], T]) -> T | None:
    """``export()``; where it fails for a limitation, ``None`` and ``<name>_failed.txt`` saying why (a file of an
    earlier export into the same folder is removed when it succeeds)."""
    failed = directory / f"{name}_failed.txt"
    try:
        result = export()
    except OSError:
        raise  # a failed write (a full disk) is an error of the run, not a limitation of the export
    except Exception as error:  # noqa: BLE001 - the deployable files are best effort; the state dict is the export
        reason = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # without the colours of a terminal
        atomic_write_text(failed, f"{type(error).__name__}: {reason}\n")
        return None
    failed.unlink(missing_ok=True)
    return result


def _example(network: nn.Module, shape: tuple[int, int, int]) -> tuple[Tensor]:
    """An input of batch 2 in the network's dtype: a batch of 1 would be traced as a constant size."""
    parameter = next(network.parameters(), None)
    return (torch.zeros(2, *shape, dtype=parameter.dtype if parameter is not None else torch.float32),)


def _export_program(network: nn.Module, shape: tuple[int, int, int], path: Path) -> ExportedProgram:
    """Trace ``network`` with ``torch.export`` (a dynamic batch dimension) and save the program at ``path``."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(network, _example(network, shape), dynamic_shapes=({0: batch},), strict=False)
    with atomic_open(path, "wb") as handle:
        torch.export.save(program, handle)
    return program


def _export_onnx(source: ExportedProgram | nn.Module, shape: tuple[int, int, int], path: Path) -> Path:
    """Write ``source`` (a ``torch.export`` program, or the network when its export failed) as ONNX at ``path``,
    with torch's dynamo exporter: the TorchScript-based one is deprecated with TorchScript."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"the ONNX export needs {' and '.join(missing)}: {DEPLOY_INSTALL}")
    if isinstance(source, ExportedProgram):
        exported = torch.onnx.export(
            source, input_names=["images"], output_names=["logits"], opset_version=ONNX_OPSET, dynamo=True,
            external_data=False, verbose=False,
        )
    else:
        exported = torch.onnx.export(
            source, _example(source, shape), input_names=["images"], output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), opset_version=ONNX_OPSET, dynamo=True,
            external_data=False, verbose=False,
        )
    if exported is None:
        raise RuntimeError("torch.onnx.export returned no ONNX program")
    return atomic_write_bytes(path, exported.model_proto.SerializeToString())


def _summarize(network: nn.Module, shape: tuple[int, int, int], directory: Path, onnx_path: Path | None) -> Path:
    """Measure the network (parameters, multiply-adds at batch 1, the ONNX latency where ``model.onnx`` was
    written), write ``summary.json`` and print the figures (on rank 0)."""
    parameters = int(Parameters().measure(network, shape))
    multiply_adds = int(MultiplyAdds().measure(network, shape))
    latency = None
    if onnx_path is not None:
        latency = _best_effort(directory, "latency", lambda: onnx_latency(onnx_path))
    summary = {
        "input_shape": [1, *shape], "parameters": parameters, "multiply_adds": multiply_adds, "latency_ms": latency,
        "latency": (
            f"onnxruntime CPUExecutionProvider, batch 1, median of {LATENCY_RUNS} runs after {LATENCY_WARMUP} warm-up runs"
        ),
    }
    path = atomic_write_text(directory / "summary.json", json.dumps(summary, indent=2) + "\n")
    if latency is not None:
        measured = f"{latency:.3f} ms (onnxruntime, CPU, batch 1, median of {LATENCY_RUNS} runs)"
    else:
        measured = "not measured (see " + ("latency_failed.txt" if onnx_path is not None else "onnx_failed.txt") + ")"
    _print_on_rank_zero(
        f"exported to {directory}\n"
        f"  parameters     {parameters:,}\n"
        f"  multiply-adds  {multiply_adds:,} at batch 1, {'x'.join(map(str, shape))}\n"
        f"  latency        {measured}"
    )
    return path


@rank_zero_only
def _print_on_rank_zero(text: str) -> None:
    """Print once in a multi-process run (on rank 0)."""
    print(text)
