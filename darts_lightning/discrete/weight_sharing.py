"""Single-path weight sharing: train one supernet by uniformly sampled paths, then score cells with it.

**Training** (:class:`SinglePathSupernet`). Random search with weight sharing (Li & Talwalkar, "Random
Search and Reproducibility for Neural Architecture Search", UAI 2019) and single-path one-shot NAS (Guo
et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020) train the
shared weights of a supernet without architecture parameters: every step draws ONE architecture
uniformly from the space and trains only the ops on its path. Uniform sampling gives every cell the same
share of the training, so that the shared weights rank cells without favouring the ones a controller
happens to prefer (the point both papers make against jointly optimised α). The supernet is the space's
own (:meth:`~darts_lightning.spaces.SearchSpace.build_supernet`), built with the single-path relaxation
(:class:`SinglePathRelaxation`), whose mixed edges call the chosen op only. Their α parameters exist because these classes are shared
with the differentiable search; here they are frozen and never read.

* The architecture of step t is ``space.sample`` with a generator seeded from ``(seed, t)`` only
  (:func:`sample_path`): every DDP rank draws the same path without communicating, and a resumed run
  draws the sequence an uninterrupted one would. With gradient accumulation one path serves all the
  batches of one optimizer step.
* The weights are trained on ``batch["train"]`` of a :class:`~darts_lightning.SearchDataModule` (the
  search-val half is never trained on; it scores cells afterwards).
* Defaults are the weight-sharing random search (RSPS) setting of NAS-Bench-201 (Dong & Yang, ICLR 2020,
  its released ``RANDOM.config`` and ``RANDOM-NAS`` script): SGD with Nesterov momentum 0.9, learning rate
  0.025 cosine-annealed to 0.001, weight decay 5e-4, gradient-norm clip 5, batch 64 (250 epochs on
  CIFAR-10). Li & Talwalkar's released CNN code keeps the DARTS search routine (the same learning rates,
  momentum 0.9 without Nesterov, weight decay 3e-4, gradient clip 5); set ``nesterov: false`` and
  ``weight_decay: 3e-4`` to follow it instead.

**Parameters a path does not use.** Gradients are set to ``None`` before every step (PyTorch's default
``zero_grad``; Li & Talwalkar's code does the same), so SGD skips the ops off the path: their weights,
momentum buffers and weight decay stay untouched, and a step trains exactly the sampled network. Under
DDP the unused parameters change from step to step, which DDP only accepts with
``find_unused_parameters=True``: run with ``Trainer(strategy="ddp_find_unused_parameters_true")`` (or
``DDPStrategy(find_unused_parameters=True)``); :meth:`SinglePathSupernet.setup` refuses a plain ``ddp``
strategy with that advice instead of failing at the second step. Since all ranks sample the same path, a
parameter is either used on every rank (its gradient is averaged by DDP) or on none (DDP leaves its
gradient ``None`` everywhere), so every rank steps the same parameters and the ranks stay identical.
Batch-norm running statistics are averaged over the ranks at the end of every epoch, as in
:class:`~darts_lightning.DARTSSearch`.

**Scoring** (:class:`WeightSharingEvaluator`, evaluator ``weight_sharing``): a cell's reward is its
accuracy with the shared weights on a few fixed search-val batches, optionally after re-estimating the
batch-norm statistics of its path on search-train batches (SPOS recomputes them on training images
before scoring a path: running statistics accumulated over all paths fit none of them).
:class:`ScratchEvaluator` (evaluator ``scratch``) is the expensive reference: a short training of the
cell from scratch, scored on the holdout split.

**Usage** on the digits, NAS-Bench-201 space::

    # 1. train the supernet (under a minute on one CPU core)
    darts-lightning fit --config configs/rsws_nb201_digits.yaml
    # 2. random search scored with the shared weights; the search-val split comes from the checkpoint
    darts-lightning fit --model darts_lightning.DiscreteSearch --model.space nasbench201 \\
        --model.searcher random --model.budget 100 --model.evaluator weight_sharing \\
        --model.evaluator_args '{"supernet": "runs/rsws_nb201_digits/lightning_logs/version_0/checkpoints/last.ckpt",
                                 "batches": 4, "reestimate_bn": true}' \\
        --trainer.accelerator cpu --trainer.max_epochs -1 --trainer.default_root_dir runs/rsws_nb201_digits_search

(``max_epochs -1``: the search stops itself when the budget is spent; the command line also hands the
search a default data module, whose batches the search ignores but which sets the epoch length.) The same
from Python::

    search = DiscreteSearch("nasbench201", evaluator="weight_sharing", budget=100,
                            evaluator_args={"supernet": ".../last.ckpt", "batches": 4, "reestimate_bn": True})
    pl.Trainer(accelerator="cpu", max_epochs=1, default_root_dir="runs/rsws_nb201_digits_search").fit(search)

The best cell is written to ``best_arch.txt`` of the search's log directory; re-score the top cells with
the ``scratch`` evaluator (or the NAS-Bench-201 ``lookup`` table for CIFAR-10) to check the ranking.
"""

from __future__ import annotations

import importlib

import inspect
import logging
import random
import tempfile
import time
import warnings
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pytorch_lightning as pl
from pytorch_lightning.accelerators import AcceleratorRegistry
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric

from darts_lightning.data import ClassificationDataModule, SearchDataModule
from darts_lightning.utils.distributed import is_distributed, require_find_unused_parameters, sync_batchnorm_statistics_
from darts_lightning.discrete.evaluators import Evaluation, Evaluator
from darts_lightning.spaces.mixing import EdgeOps, Mixing, Relaxation
from darts_lightning.retrain.module import GenotypeClassifier
from darts_lightning.spaces import DartsSpace, NB201Space, SearchSpace, get_space
from darts_lightning.utils.validation import check_choice, check_keywords, check_range

__all__ = [
    "sample_path", "SinglePathRelaxation", "SinglePathSupernet", "WeightSharingEvaluator",
    "ScratchClassifier", "ScratchEvaluator",
]


# --------------------------------------------------------------------------- paths


def sample_path(space: SearchSpace, seed: int, step: int | str) -> Any:
    """The architecture of training step ``step``: ``space.sample`` from a generator seeded with
    ``(seed, step)`` alone, so that every process draws the same one without communicating.

    A string seed is hashed by :class:`random.Random` with SHA-512, identically in every process (unlike
    Python's salted ``hash``).
    """
    return space.sample(random.Random(f"single-path/{seed}/{step}"))


class SinglePathRelaxation(Relaxation):
    """Single-path weight sharing: every mixed edge computes only the op of one sampled architecture.

    Random search with weight sharing (Li & Talwalkar, "Random Search and Reproducibility for Neural
    Architecture Search", UAI 2019) and single-path one-shot NAS (Guo et al., ECCV 2020) train a supernet
    by sampling one architecture per step and running only its ops. Mixing every op, as DARTS does, would
    cost all ops' compute and train them on each other's outputs; one op per edge trains the weights as
    the sampled network would use them.

    α is not read: the supernet runs with the ``path`` argument of its forward pass
    (:meth:`~darts_lightning.spaces.supernet.Supernet.path`), one row per edge that is one-hot on the chosen
    op's column, or all zeros for an edge the architecture does not have (the DARTS cell keeps two of the
    dense edges into each node), kept on the CPU. :meth:`mix` then calls the chosen op only: ``none`` gives
    the zeros of :meth:`MixedEdge.zeros` (as the fixed ``none`` op does), an absent edge gives zeros that are
    not connected to the input (the edge does not exist in the sampled network, so nothing upstream is
    trained through it), and the op's output is used unscaled.
    """

    name = "single_path"
    computes_subset = True

    def __init__(self) -> None:
        super().__init__()

    def mixing(self, alpha: Tensor, generator: torch.Generator | None) -> Mixing:
        raise RuntimeError(
            "the single-path relaxation has no mixture: run the supernet with the path of one architecture, "
            "network(x, path=network.path(arch)) (SinglePathSupernet does this every step)"
        )

    def mix(self, edge: EdgeOps, x: Tensor, weights: Tensor, column: int | None = None) -> Tensor:
        column = int(torch.argmax(weights))
        if float(weights[column]) == 0.0:
            return torch.zeros_like(x[:, :, :: edge.stride, :: edge.stride])
        return edge.op_output(column, x)


# --------------------------------------------------------------------------- supernet training


class SinglePathSupernet(pl.LightningModule):
    """Train a supernet by uniform single-path sampling (Li & Talwalkar, UAI 2019; Guo et al., ECCV 2020).

    Args:
        space: the search space (a :class:`~darts_lightning.spaces.SearchSpace`, or a registered name for its
            defaults: ``nasbench201``, 16 channels and 5 cells per stage; ``darts``, C = 16 and 8 cells); its
            supernet is trained.
        in_channels, num_classes, image_size: from the data (the CLI links them to the data module).
        seed: the paths are a function of ``(seed, global_step)`` (:func:`sample_path`).
        lr, lr_min, momentum, nesterov, weight_decay: SGD, cosine-annealed per epoch over ``max_epochs``
            (NAS-Bench-201's RSPS setting: 0.025 → 0.001, 0.9, Nesterov, 5e-4).
        grad_clip: gradient-norm clip (5); the trainer's ``gradient_clip_val``, when set, takes precedence.
        channels_last: channels-last memory layout; ``None``: on a CPU only (as :class:`DARTSSearch`).

    ``last_path`` holds the text form of the cell the last training step trained. ``val/acc`` is the
    accuracy of fixed random cells (one per search-val batch) with the running batch-norm statistics
    accumulated over all paths: a health signal that underestimates every cell; score cells with
    :class:`WeightSharingEvaluator`, which re-estimates the statistics per cell.
    """

    def __init__(
        self,
        space: SearchSpace | str = "nasbench201",
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        seed: int = 0,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        grad_clip: float = 5.0,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        self.space = get_space(space)
        self.save_hyperparameters(ignore=["space"])
        self.hparams["space"] = self.space.config()  # plain data: checkpoints load with weights_only=True
        for name, value in (("in_channels", in_channels), ("image_size", image_size)):
            check_range(name, value, 1, integer=True)
        check_range("num_classes", num_classes, 2, integer=True)
        check_range("seed", seed, 0, integer=True)
        for name, value in (("lr", lr), ("lr_min", lr_min), ("weight_decay", weight_decay), ("grad_clip", grad_clip)):
            check_range(name, value, 0)
        check_range("momentum", momentum, 0, 1, high_open=True)
        check_choice("nesterov", nesterov, (True, False))
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs a momentum: set momentum > 0 (NAS-Bench-201's RSPS: 0.9) or nesterov: false")
        check_choice("channels_last", channels_last, (None, True, False))
        self.network = self.space.build_supernet(
            SinglePathRelaxation(), in_channels=in_channels, num_classes=num_classes, image_size=image_size
        )
        # α is never read on a single path: frozen, it is in no optimizer and DDP does not reduce it
        # (DDP still broadcasts it from rank 0 at the start, like every parameter).
        for alpha in self.network.arch_parameters():
            alpha.requires_grad_(False)
        self._channels_last = bool(channels_last)
        self.last_path: str | None = None
        # train/loss per step is this rank's batch; its epoch mean is reduced across ranks by the metric, once
        # per epoch (sync_dist=True on a value logged on_step would all-reduce at every step).
        self.train_loss = MeanMetric()

    # ------------------------------------------------------------------ paths and forward

    def path_at(self, step: int) -> Any:
        """The cell trained at global step ``step``."""
        return sample_path(self.space, self.hparams.seed, step)

    def validation_path(self, batch_idx: int) -> Any:
        """The cell scored on validation batch ``batch_idx``: the same cells every epoch, so that
        ``val/acc`` is comparable across epochs."""
        return sample_path(self.space, self.hparams.seed, f"validation/{batch_idx}")

    def forward(self, x: Tensor, arch: Any) -> Tensor:
        """Logits of the cell ``arch`` with the shared weights; only the ops of its path run."""
        return self.network(self._layout(x), path=self.network.path(arch))

    def weight_parameters(self) -> list[nn.Parameter]:
        """The shared weights (everything but the frozen α)."""
        return [p for p in self.network.parameters() if p.requires_grad]

    def _layout(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        if stage == "fit":
            require_find_unused_parameters(
                self.trainer, "single-path training leaves the parameters off the sampled path without gradients"
            )
        choice = self.hparams.channels_last
        self._channels_last = strategy.root_device.type == "cpu" if choice is None else bool(choice)
        self.network.to(memory_format=torch.channels_last if self._channels_last else torch.contiguous_format)

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.weight_parameters(), lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov, weight_decay=hp.weight_decay
        )
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 250
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=hp.lr_min)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        clip = self.hparams.grad_clip if gradient_clip_val is None else gradient_clip_val
        if clip and clip > 0:
            # Parameters off the path have no gradient and are left out of the norm.
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm=gradient_clip_algorithm or "norm")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch["train"] if isinstance(batch, Mapping) else batch
        arch = self.path_at(self.global_step)
        self.last_path = self.space.format(arch)
        logits = self(x, arch)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss is {loss.item()} at global step {self.global_step} on path {self.last_path}; "
                "lower the learning rate (model.lr) or check the data"
            )
        self.train_loss(loss.detach(), len(y))
        self.log("train/loss", self.train_loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/acc", (logits.detach().argmax(-1) == y).float().mean(), on_step=False, on_epoch=True,
                 batch_size=len(y), sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Before validation and the epoch-end checkpoint: every rank then holds the same statistics.
        if self.trainer.is_last_batch and is_distributed():
            sync_batchnorm_statistics_(self.network)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch["val"] if isinstance(batch, Mapping) else batch
        logits = self(x, self.validation_path(batch_idx))
        self.log("val/loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        self.log("val/acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True, sync_dist=True, batch_size=len(y))


# --------------------------------------------------------------------------- scoring with the shared weights


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _accepted(cls: type, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    names = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return {k: v for k, v in kwargs.items() if k in names}


class WeightSharingEvaluator(Evaluator):
    """Score a cell by its accuracy with the shared weights of a single-path supernet.

    Li & Talwalkar (UAI 2019) rank sampled cells by the supernet's accuracy on held-out data;
    NAS-Bench-201's RSPS does the same on its validation split. The same ``batches`` search-val batches
    score every cell (fixed once, in order), so rewards are comparable.

    With ``reestimate_bn`` the batch-norm running statistics are first recomputed for the cell's path, as
    a cumulative average over ``bn_batches`` search-train batches (SPOS, Guo et al., ECCV 2020):
    the statistics the supernet accumulated mix all paths. The statistics are saved before and restored
    after, so an evaluation leaves the supernet's state dict bit-identical.

    Args:
        space: the space of the supernet.
        supernet: a :class:`SinglePathSupernet` (used in place, on its device) or the path of its checkpoint
            (loaded onto ``device``).
        data: a :class:`SearchDataModule` or its arguments; ``None``: the data module recorded in the
            checkpoint (its search-train/search-val split).
        batches: search-val batches per evaluation. reestimate_bn, bn_batches: see above (on by
            default: on the digits supernet of ``configs/rsws_nb201_digits.yaml`` the shared weights score
            cells at about 0.1-0.7 accuracy with the accumulated statistics and 0.6-0.9 with re-estimated ones).
        device: where a checkpoint is loaded.
        metric: the reward: ``accuracy`` (default), or the import path of a torchmetrics metric computed on
            (logits, targets) of the search-val batches, e.g. ``torchmetrics.classification.MulticlassF1Score``
            with ``metric_args`` ``{"num_classes": 10}``; accuracy and loss are reported either way.
    """

    def __init__(
        self,
        space: SearchSpace | str = "nasbench201",
        supernet: SinglePathSupernet | str | Path | None = None,
        data: SearchDataModule | Mapping[str, Any] | None = None,
        batches: int = 4,
        reestimate_bn: bool = True,
        bn_batches: int = 4,
        device: str = "cpu",
        metric: str = "accuracy",
        metric_args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(space)
        check_range("batches", batches, 1, integer=True)
        check_range("bn_batches", bn_batches, 1, integer=True, hint="search-train batches that re-estimate the batch-norm statistics")
        check_choice("reestimate_bn", reestimate_bn, (True, False))
        try:
            torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
        if isinstance(data, Mapping):
            check_keywords("data", data, SearchDataModule)
        if metric == "accuracy" and metric_args:
            raise ValueError(f"metric_args are a torchmetrics metric's arguments; metric 'accuracy' takes none, got {dict(metric_args)}")
        self.metric = None
        if metric != "accuracy":
            module_name, _, class_name = metric.rpartition(".")
            try:
                metric_class = getattr(importlib.import_module(module_name), class_name)
            except (ImportError, AttributeError, ValueError) as error:
                raise ValueError(
                    f"metric {metric!r} is neither 'accuracy' nor an importable torchmetrics class path ({error})"
                ) from error
            self.metric = metric_class(**dict(metric_args or {}))
        recorded: Mapping[str, Any] | None = None
        if isinstance(supernet, (str, Path)):
            path = Path(supernet)
            if not path.is_file():
                raise FileNotFoundError(f"no supernet checkpoint at {str(path)!r}")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            state = checkpoint.get("state_dict", {})
            if "hyper_parameters" not in checkpoint or not any(k.startswith("network.") for k in state):
                raise ValueError(f"{str(path)!r} is not a checkpoint of a SinglePathSupernet")
            module = SinglePathSupernet(**_accepted(SinglePathSupernet, checkpoint["hyper_parameters"]))
            module.load_state_dict(checkpoint["state_dict"])
            module.to(device)
            recorded = checkpoint.get(pl.LightningDataModule.CHECKPOINT_HYPER_PARAMS_KEY)
        elif isinstance(supernet, SinglePathSupernet):
            module = supernet
        else:
            raise ValueError("WeightSharingEvaluator needs a supernet: a SinglePathSupernet or the path of its checkpoint")
        if module.space.name != self.space.name:
            raise ValueError(f"the supernet was trained on the {module.space.name} space, not the {self.space.name} space")
        self.module = module
        if data is None:
            if recorded is None:
                raise ValueError(
                    "no data given and no data module recorded in the supernet checkpoint: pass data (a "
                    "SearchDataModule or its arguments, with the split the supernet was trained with)"
                )
            data = recorded
        if isinstance(data, Mapping):
            data = SearchDataModule(**_accepted(SearchDataModule, data))
        data.setup("fit")
        self.data = data
        self.reestimate_bn = reestimate_bn
        # Fixed once: every cell is scored on the same batches.
        self.val_batches = list(islice(DataLoader(data.search_val, batch_size=data.batch_size, shuffle=False), batches))
        self.bn_batches = (
            list(islice(DataLoader(data.search_train, batch_size=data.batch_size, shuffle=False), bn_batches))
            if reestimate_bn else []
        )

    @contextmanager
    def _restoring_state(self) -> Iterator[None]:
        """Save the batch-norm buffers, momenta and the train/eval mode; restore them on exit."""
        norms = _batchnorms(self.module)
        saved = [(m, m.momentum, {n: b.detach().clone() for n, b in m.named_buffers(recurse=False)}) for m in norms]
        was_training = self.module.training
        try:
            yield
        finally:
            with torch.no_grad():
                for m, momentum, buffers in saved:
                    m.momentum = momentum
                    for name, value in buffers.items():
                        getattr(m, name).copy_(value)
            self.module.train(was_training)

    @torch.no_grad()
    def evaluate(self, arch: Any) -> Evaluation:
        start = time.perf_counter()
        parameter = next(self.module.parameters())  # the batches follow the supernet (device and dtype)
        device, dtype = parameter.device, parameter.dtype
        with self._restoring_state():
            if self.reestimate_bn:
                for m in _batchnorms(self.module):
                    m.reset_running_stats()
                    m.momentum = None  # cumulative average over the batches
                self.module.train()
                for x, _ in self.bn_batches:
                    self.module(x.to(device, dtype), arch)
            self.module.eval()
            correct, total, loss = 0, 0, 0.0
            if self.metric is not None:
                self.metric.reset()
            for x, y in self.val_batches:
                x, y = x.to(device, dtype), y.to(device)
                logits = self.module(x, arch)
                correct += int((logits.argmax(-1) == y).sum())
                loss += float(F.cross_entropy(logits, y, reduction="sum"))
                total += len(y)
                if self.metric is not None:
                    self.metric.update(logits.cpu(), y.cpu())
        seconds = time.perf_counter() - start
        accuracy = correct / total
        metrics = {"accuracy": accuracy, "loss": loss / total, "seconds": seconds, "images": float(total)}
        reward = accuracy
        if self.metric is not None:
            reward = metrics["metric"] = float(self.metric.compute())
        return Evaluation(reward=reward, cost=seconds, metrics=metrics)


# --------------------------------------------------------------------------- scoring by training from scratch


class ScratchClassifier(pl.LightningModule):
    """Train a fixed network from scratch: cross-entropy, SGD, cosine schedule over ``max_epochs``."""

    def __init__(self, network: nn.Module, lr: float = 0.025, lr_min: float = 0.0, momentum: float = 0.9,
                 weight_decay: float = 3e-4, nesterov: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network"])
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov,
                                    weight_decay=hp.weight_decay)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=hp.lr_min)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class _ProxyGenotypeClassifier(GenotypeClassifier):
    """The retraining module without its end-of-fit export: a proxy run keeps no files."""

    def on_fit_end(self) -> None:
        pass


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


class ScratchEvaluator(Evaluator):
    """Score a cell by a short training from scratch: reward = accuracy on the holdout split, cost = seconds.

    The partial training behind Li & Talwalkar's other baseline, random search with early stopping (UAI
    2019): a few epochs as a cheap stand-in for the final training. The model trains on
    search-train and is scored on search-val (``ClassificationDataModule(holdout=True)``), never on the
    test split. ``darts`` cells train in :class:`~darts_lightning.GenotypeClassifier` (auxiliary head and
    drop-path off, which a few epochs cannot use); ``nasbench201`` cells in the benchmark's network with
    :class:`ScratchClassifier`. The weights are initialised from ``seed`` inside a forked random state,
    so the caller's random streams are untouched and equal cells get equal rewards.

    Args:
        space: ``nasbench201`` or ``darts``.
        epochs: training epochs. channels, layers: the network's size (``nasbench201``: first-stage
            channels and cells per stage, benchmark 16 and 5; ``darts``: C and cells, DARTS 36 and 20).
        data: a ``ClassificationDataModule(holdout=True)`` or its arguments (``holdout`` is set; batch 64
            and no cutout unless given); ``None``: the digits, batch 64, no cutout.
        lr, lr_min, momentum, weight_decay: SGD with a cosine schedule (the DARTS retraining optimiser).
        grad_clip: gradient-norm clip (5).
        seed: initialisation seed. accelerator: the proxy trainer's accelerator.
        trainer_args: further ``pl.Trainer`` arguments (e.g. ``limit_train_batches``).
    """

    def __init__(
        self,
        space: SearchSpace | str = "nasbench201",
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
    ) -> None:
        super().__init__(space)
        if not isinstance(self.space, (NB201Space, DartsSpace)):
            raise ValueError(f"no scratch evaluation for the {self.space.name!r} space; supported: nasbench201, darts")
        for name, value in (("epochs", epochs), ("channels", channels), ("layers", layers)):
            check_range(name, value, 1, integer=True)
        for name, value in (("lr", lr), ("lr_min", lr_min), ("weight_decay", weight_decay), ("grad_clip", grad_clip)):
            check_range(name, value, 0)
        check_range("momentum", momentum, 0, 1, high_open=True)
        check_range("seed", seed, 0, integer=True)
        check_choice("accelerator", accelerator, ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())])
        check_keywords("trainer_args", trainer_args, pl.Trainer)
        if isinstance(data, Mapping):
            check_keywords("data", data, ClassificationDataModule)
        if data is None:
            data = ClassificationDataModule("digits", batch_size=64, cutout_length=0, holdout=True)
        elif isinstance(data, Mapping):
            data = ClassificationDataModule(
                **{"batch_size": 64, "cutout_length": 0, **_accepted(ClassificationDataModule, data), "holdout": True}
            )
        if not data.holdout:
            raise ValueError("the scratch evaluator scores on the holdout split: use ClassificationDataModule(holdout=True)")
        data.setup("fit")
        self.data = data
        self.epochs, self.channels, self.layers = epochs, channels, layers
        self.optim = {"lr": lr, "lr_min": lr_min, "momentum": momentum, "weight_decay": weight_decay}
        self.grad_clip, self.seed, self.accelerator = grad_clip, seed, accelerator
        self.trainer_args = dict(trainer_args or {})

    def build_model(self, arch: Any) -> pl.LightningModule:
        """The LightningModule that trains ``arch`` (call inside a seeded random state)."""
        data = self.data
        if isinstance(self.space, DartsSpace):
            return _ProxyGenotypeClassifier(
                genotype=self.space.format(arch), in_channels=data.in_channels, num_classes=data.num_classes,
                image_size=data.image_size, channels=self.channels, layers=self.layers,
                auxiliary_weight=0.0, drop_path_prob=0.0, **self.optim,
            )
        network = self.space.build_network(
            arch, num_classes=data.num_classes, in_channels=data.in_channels,
            channels=(self.channels, 2 * self.channels, 4 * self.channels), cells_per_stage=self.layers,
        )
        return ScratchClassifier(network, **self.optim)

    def evaluate(self, arch: Any) -> Evaluation:
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as root, _quiet_lightning():
            warnings.filterwarnings("ignore", message=".*validation_step.*val_dataloader")  # scored below instead
            torch.manual_seed(self.seed)
            model = self.build_model(arch)
            trainer = pl.Trainer(**{
                "accelerator": self.accelerator, "devices": 1, "max_epochs": self.epochs, "logger": False,
                "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
                "num_sanity_val_steps": 0, "limit_val_batches": 0, "gradient_clip_val": self.grad_clip,
                "default_root_dir": root, **self.trainer_args,
            })
            trainer.fit(model, train_dataloaders=self._loader(self.data.train_set, shuffle=True))
            accuracy = self._accuracy(model)
        seconds = time.perf_counter() - start
        parameters = sum(p.numel() for p in model.parameters())
        return Evaluation(reward=accuracy, cost=seconds,
                          metrics={"accuracy": accuracy, "seconds": seconds, "parameters": float(parameters),
                                   "steps": float(trainer.global_step)})

    def _loader(self, dataset: Any, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, batch_size=self.data.batch_size, shuffle=shuffle, generator=generator)

    @torch.no_grad()
    def _accuracy(self, model: pl.LightningModule) -> float:
        model.eval()
        parameter = next(model.parameters())  # the batches follow the trained model (device and dtype)
        correct = total = 0
        for x, y in self._loader(self.data.test_set, shuffle=False):
            x, y = x.to(parameter.device, parameter.dtype), y.to(parameter.device)
            correct += int((model(x).argmax(-1) == y).sum())
            total += len(y)
        return correct / total
