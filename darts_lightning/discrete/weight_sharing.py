"""Single-path weight sharing: train one supernet by uniformly sampled paths, then score cells with it.

**Training** (:class:`SinglePathSupernet`). Random search with weight sharing (Li & Talwalkar, "Random
Search and Reproducibility for Neural Architecture Search", UAI 2019) and single-path one-shot NAS (Guo
et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020) train the
shared weights of a supernet without architecture parameters: every step draws ONE architecture
uniformly from the space and trains only the ops on its path. Uniform sampling gives every cell the same
share of the training, so that the shared weights rank cells without favouring the ones a controller
happens to prefer (the point both papers make against jointly optimised α). The supernet is the space's
own (:meth:`~darts_lightning.spaces.SearchSpace.build_supernet`), built with the single-path relaxation
(:class:`SinglePathRelaxation`), whose mixed edges call the chosen op only. Their α parameters exist
because the supernets are shared with the differentiable search; here they are frozen and never read.

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
:class:`~darts_lightning.discrete.scratch.ScratchEvaluator` (evaluator ``scratch``) is the expensive
reference: a short training of the cell from scratch, scored on the holdout split.

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
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, Generic

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics import Metric

from darts_lightning.data import SearchDataModule
from darts_lightning.discrete.evaluation import Evaluation, Evaluator, classification_scores
from darts_lightning.spaces import SearchSpace, get_space
from darts_lightning.spaces.base import Arch
from darts_lightning.spaces.mixing import EdgeOps, Mixing, Relaxation
from darts_lightning.spaces.supernet import Supernet
from darts_lightning.utils.distributed import is_distributed, require_find_unused_parameters, sync_batchnorm_statistics_
from darts_lightning.utils.layout import ChannelsLastMixin
from darts_lightning.utils.resume import check_checkpoint_format
from darts_lightning.utils.training import BatchMean, NonFiniteLoss, log_every_n_steps, planned_epochs
from darts_lightning.utils.validation import check_choice, check_keywords, check_range

__all__ = ["sample_path", "SinglePathRelaxation", "SinglePathSupernet", "WeightSharingEvaluator"]


# --------------------------------------------------------------------------- paths


def sample_path(space: SearchSpace[Arch], seed: int, step: int | str) -> Arch:
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
    paths_only = True

    def __init__(self) -> None:
        super().__init__()

    def mixing(self, alpha: Tensor, generator: torch.Generator | None) -> Mixing:
        raise RuntimeError(
            "the single-path relaxation has no mixture: run the supernet with the path of one architecture, "
            "network(x, path=network.path(arch)) (SinglePathSupernet does this every step)"
        )

    def mix(self, edge: EdgeOps, x: Tensor, weights: Tensor, column: int | None = None) -> Tensor:
        # The rows of a path are on the CPU: reading them does not wait for an accelerator.
        column = int(torch.argmax(weights))
        if float(weights[column]) == 0.0:
            return torch.zeros_like(x[:, :, :: edge.stride, :: edge.stride])
        return edge.op_output(column, x)


# --------------------------------------------------------------------------- supernet training


class SinglePathSupernet(ChannelsLastMixin, pl.LightningModule, Generic[Arch]):
    """Train a supernet by uniform single-path sampling (Li & Talwalkar, UAI 2019; Guo et al., ECCV 2020).

    Args:
        space: the search space whose supernet is trained: a :class:`~darts_lightning.spaces.SearchSpace`
            (its arguments give the supernet's size, e.g. ``NB201Space(channels=8, cells_per_stage=2)``), a
            registered name for the space's defaults (``nasbench201``: 16 channels and 5 cells per stage;
            ``darts``: C = 16 and 8 cells) or ``{"class_path", "init_args"}``.
        in_channels, num_classes, image_size: from the data (the CLI links them to the data module).
        seed: the paths are a function of ``(seed, global_step)`` (:func:`sample_path`).
        lr, lr_min, momentum, nesterov, weight_decay: SGD, cosine-annealed per epoch over ``max_epochs``
            (NAS-Bench-201's RSPS setting: 0.025 → 0.001, 0.9, Nesterov, 5e-4; 250 epochs when the trainer
            sets no ``max_epochs``).
        grad_clip: gradient-norm clip (5); the trainer's ``gradient_clip_val``, when set, takes precedence.
        channels_last: channels-last memory layout; ``None``: on a CPU only (as :class:`DARTSSearch`).

    The space is recorded in the hyperparameters as ``{"class_path", "init_args"}``, so that a checkpoint
    loads with ``torch.load(weights_only=True)`` and rebuilds the same supernet.

    ``last_path`` holds the text form of the cell the last training step trained. ``val/acc`` is the
    accuracy of fixed random cells (one per search-val batch) with the running batch-norm statistics
    accumulated over all paths: a health signal that underestimates every cell; score cells with
    :class:`WeightSharingEvaluator`, which re-estimates the statistics per cell. A non-finite training loss
    stops the run at the next logging step, the end of the epoch or a checkpoint, naming its step
    (:class:`~darts_lightning.utils.training.NonFiniteLoss`: no wait for the device at every step).
    """

    def __init__(
        self,
        # Unparametrised: the command line builds a space from its class path only for the bare class.
        space: SearchSpace | str | Mapping[str, Any] = "nasbench201",
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
        for name, value in (("in_channels", in_channels), ("image_size", image_size)):
            check_range(name, value, 1, integer=True)
        check_range("num_classes", num_classes, 2, integer=True)
        check_range("seed", seed, 0, integer=True)
        for name, rate in (("lr", lr), ("lr_min", lr_min), ("weight_decay", weight_decay), ("grad_clip", grad_clip)):
            check_range(name, rate, 0)
        check_range("momentum", momentum, 0, 1, high_open=True)
        check_choice("nesterov", nesterov, (True, False))
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs a momentum: set momentum > 0 (NAS-Bench-201's RSPS: 0.9) or nesterov: false")
        check_choice("channels_last", channels_last, (None, True, False))
        self.space: SearchSpace[Arch] = get_space(space)
        # The space as plain data: checkpoints load with weights_only=True and rebuild the same supernet.
        self.save_hyperparameters({
            "space": self.space.config(), "in_channels": in_channels, "num_classes": num_classes,
            "image_size": image_size, "seed": seed, "lr": lr, "lr_min": lr_min, "momentum": momentum,
            "nesterov": nesterov, "weight_decay": weight_decay, "grad_clip": grad_clip, "channels_last": channels_last,
        })
        self.network: Supernet[Arch] = self.space.build_supernet(
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
        self.train_loss = BatchMean()
        self.nonfinite = NonFiniteLoss(
            ("training",),
            "the supernet training diverged: lower the learning rate (model.lr) or check the data "
            "(the cell of step t is model.path_at(t))",
        )

    # ------------------------------------------------------------------ paths and forward

    @classmethod
    def outdated_checkpoint(cls, checkpoint: Mapping[str, Any], path: str | Path | None = None) -> str | None:
        """The refusal of a checkpoint an earlier version wrote, or ``None`` (asked by
        :func:`darts_lightning.utils.resume.check_resume`). Earlier versions recorded the supernet's size
        (``channels``, ``layers``, ``network_args``) beside the space's name; today the space carries it."""
        settings = checkpoint.get("hyper_parameters") or {}
        earlier = {key: settings[key] for key in ("channels", "layers", "network_args") if key in settings}
        if not earlier:
            return None
        sizes = ", ".join(f"{key} {value!r}" for key, value in earlier.items())
        return (
            f"the checkpoint{f' {path}' if path is not None else ''} was written by an earlier version of "
            f"SinglePathSupernet, which recorded the supernet's size beside the space {settings.get('space')!r} "
            f"({sizes}); today the space carries it: configure the space with that size (model.space.class_path "
            "darts_lightning.NB201Space with channels and cells_per_stage, or darts_lightning.DartsSpace with "
            "channels and layers) and load the checkpoint's state_dict into that SinglePathSupernet, or train "
            "the supernet again"
        )

    def path_at(self, step: int) -> Arch:
        """The cell trained at global step ``step``."""
        return sample_path(self.space, self.hparams["seed"], step)

    def validation_path(self, batch_idx: int) -> Arch:
        """The cell scored on validation batch ``batch_idx``: the same cells every epoch, so that
        ``val/acc`` is comparable across epochs."""
        return sample_path(self.space, self.hparams["seed"], f"validation/{batch_idx}")

    def forward(self, x: Tensor, arch: Arch) -> Tensor:
        """Logits of the cell ``arch`` with the shared weights; only the ops of its path run."""
        return self.network(self._layout(x), path=self.network.path(arch))

    def weight_parameters(self) -> list[nn.Parameter]:
        """The shared weights (everything but the frozen α)."""
        return [p for p in self.network.parameters() if p.requires_grad]

    def setup(self, stage: str) -> None:
        if stage == "fit":
            require_find_unused_parameters(
                self.trainer, "single-path training leaves the parameters off the sampled path without gradients"
            )
        super().setup(stage)  # the memory layout (ChannelsLastMixin)

    def on_fit_start(self) -> None:
        self.nonfinite.reset()

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.weight_parameters(), lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["nesterov"],
            weight_decay=hp["weight_decay"],
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=planned_epochs(self.trainer, 250), eta_min=hp["lr_min"]
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        clip = self.hparams["grad_clip"] if gradient_clip_val is None else gradient_clip_val
        if clip and clip > 0:
            # Parameters off the path have no gradient and are left out of the norm.
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm=gradient_clip_algorithm or "norm")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch["train"] if isinstance(batch, Mapping) else batch
        step = self.global_step
        arch = self.path_at(step)
        self.last_path = self.space.format(arch)
        logits = self(x, arch)
        loss = F.cross_entropy(logits, y)
        self.nonfinite.record(loss, "training", step, self.current_epoch, batch_idx)
        self.train_loss(loss.detach(), len(y))
        # Lightning reads every progress-bar value after every batch: the loss goes to the bar only when there is one.
        shown = self.trainer.progress_bar_callback is not None
        self.log("train/loss", self.train_loss, prog_bar=shown, on_step=True, on_epoch=True)
        self.log("train/acc", (logits.detach().argmax(-1) == y).float().mean(), on_step=False, on_epoch=True,
                 batch_size=len(y), sync_dist=True)
        # The one read from the device: at the steps Lightning logs (and reads anyway) and at the end of the epoch.
        every = log_every_n_steps(self.trainer)
        if self.trainer.is_last_batch or (every > 0 and (step + 1) % every == 0):
            self.nonfinite.raise_if_any()
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Before validation and the epoch-end checkpoint: every rank then holds the same statistics.
        if self.trainer.is_last_batch and is_distributed():
            sync_batchnorm_statistics_(self.network)

    def on_train_end(self) -> None:
        # A run that stops between logging steps (max_steps, an interrupted epoch) reports a non-finite loss too.
        self.nonfinite.raise_if_any()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite.raise_if_any()  # never save the weights of a diverged training

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch["val"] if isinstance(batch, Mapping) else batch
        logits = self(x, self.validation_path(batch_idx))
        self.log("val/loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        self.log("val/acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True, sync_dist=True, batch_size=len(y))


# --------------------------------------------------------------------------- scoring with the shared weights


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _accepted(cls: type[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    names = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return {k: v for k, v in kwargs.items() if k in names}


def _torchmetrics_metric(metric: str, metric_args: Mapping[str, Any] | None) -> Metric | None:
    """``None`` for ``accuracy``, else the torchmetrics metric at the import path ``metric``."""
    if metric == "accuracy":
        if metric_args:
            raise ValueError(
                f"metric_args are a torchmetrics metric's arguments; metric 'accuracy' takes none, got {dict(metric_args)}"
            )
        return None
    module_name, _, class_name = metric.rpartition(".")
    try:
        metric_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(
            f"metric {metric!r} is neither 'accuracy' nor an importable torchmetrics class path ({error})"
        ) from error
    return metric_class(**dict(metric_args or {}))


class WeightSharingEvaluator(Evaluator[Arch]):
    """Score a cell by its accuracy with the shared weights of a single-path supernet.

    Li & Talwalkar (UAI 2019) rank sampled cells by the supernet's accuracy on held-out data;
    NAS-Bench-201's RSPS does the same on its validation split. The same ``batches`` search-val batches
    score every cell (fixed once, in order), so rewards are comparable.

    With ``reestimate_bn`` the batch-norm running statistics are first recomputed for the cell's path, as
    a cumulative average over ``bn_batches`` search-train batches (SPOS, Guo et al., ECCV 2020):
    the statistics the supernet accumulated mix all paths. The statistics are saved before and restored
    after, so an evaluation leaves the supernet's state dict bit-identical.

    Args:
        space: the space of the supernet (its kind must be the supernet's; its size is the supernet's own).
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
        space: SearchSpace[Arch] | str | Mapping[str, Any] = "nasbench201",
        supernet: SinglePathSupernet[Arch] | str | Path | None = None,
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
        check_range(
            "bn_batches", bn_batches, 1, integer=True, hint="search-train batches that re-estimate the batch-norm statistics"
        )
        check_choice("reestimate_bn", reestimate_bn, (True, False))
        try:
            torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
        if isinstance(data, Mapping):
            check_keywords("data", data, SearchDataModule)
        self.metric = _torchmetrics_metric(metric, metric_args)
        recorded: Mapping[str, Any] | None = None
        if isinstance(supernet, (str, Path)):
            module, recorded = self._load(Path(supernet), device)
        elif isinstance(supernet, SinglePathSupernet):
            module = supernet
        else:
            raise ValueError("WeightSharingEvaluator needs a supernet: a SinglePathSupernet or the path of its checkpoint")
        if module.space.name != self.space.name:
            raise ValueError(f"the supernet was trained on the {module.space.name} space, not the {self.space.name} space")
        self.module: SinglePathSupernet[Arch] = module
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
        search_train, search_val = data.splits()
        # Fixed once: every cell is scored on the same batches.
        self.val_batches = list(islice(DataLoader(search_val, batch_size=data.batch_size, shuffle=False), batches))
        self.bn_batches = (
            list(islice(DataLoader(search_train, batch_size=data.batch_size, shuffle=False), bn_batches))
            if reestimate_bn else []
        )

    @staticmethod
    def _load(path: Path, device: str) -> tuple[SinglePathSupernet[Any], Mapping[str, Any] | None]:
        """The supernet of a checkpoint (its space and settings from the recorded hyperparameters) and the
        data module's recorded arguments."""
        if not path.is_file():
            raise FileNotFoundError(f"no supernet checkpoint at {str(path)!r}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint.get("state_dict", {})
        if "hyper_parameters" not in checkpoint or not any(k.startswith("network.") for k in state):
            raise ValueError(f"{str(path)!r} is not a checkpoint of a SinglePathSupernet")
        check_checkpoint_format(SinglePathSupernet, checkpoint, path=path)
        module: SinglePathSupernet[Any] = SinglePathSupernet(**_accepted(SinglePathSupernet, checkpoint["hyper_parameters"]))
        module.load_state_dict(state)
        module.to(device)
        return module, checkpoint.get(pl.LightningDataModule.CHECKPOINT_HYPER_PARAMS_KEY)

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
    def evaluate(self, arch: Arch) -> Evaluation:
        start = time.perf_counter()
        parameter = next(self.module.parameters())  # the batches follow the supernet (device and dtype)
        with self._restoring_state():
            if self.reestimate_bn:
                for m in _batchnorms(self.module):
                    m.reset_running_stats()
                    m.momentum = None  # cumulative average over the batches
                self.module.train()
                for x, _ in self.bn_batches:
                    self.module(x.to(parameter.device, parameter.dtype), arch)
            self.module.eval()
            scores = classification_scores(lambda x: self.module(x, arch), self.val_batches, parameter, self.metric)
        seconds = time.perf_counter() - start
        metrics = {"accuracy": scores.accuracy, "loss": scores.loss, "seconds": seconds, "images": float(scores.images)}
        reward = scores.accuracy
        if self.metric is not None:
            reward = metrics["metric"] = float(self.metric.compute())
        return Evaluation(reward=reward, cost=seconds, metrics=metrics)
