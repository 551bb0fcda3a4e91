"""The DARTS search as a LightningModule (Liu et al., ICLR 2019, Algorithm 1).

Every training step takes one search-train and one search-val batch and

1. updates α by descending the architecture gradient on the search-val batch (the ``estimator``: first
   order ∇α L_val(w, α), or the unrolled second-order estimate of eq. 6-8; see
   :mod:`darts_lightning.differentiable.estimators`);
2. updates the weights w by descending ∇w L_train(w, α) on the search-train batch.

The search is composed of parts, each chosen in YAML by class path: the ``space`` (which builds the
supernet and derives, writes and draws the answer), the ``relaxation`` of the mixed edges
(:mod:`darts_lightning.differentiable.relaxations`), the ``estimator``, the settings of the two optimizers
(:mod:`darts_lightning.differentiable.optimizers`) and a list of ``remedies`` against collapse
(:mod:`darts_lightning.differentiable.remedies`). The DARTS family is configuration of this one module;
side work (files, figures, the summary, R-DARTS's eigenvalue and early stopping, compilation) lives in
callbacks (:mod:`darts_lightning.differentiable.callbacks`).

Optimisation is manual (two optimizers, two losses per step). ``global_step`` counts search steps: the
α optimizer is stepped directly, so one batch is one step. Under DDP the weight gradients are averaged by
DDP; the α gradient, taken with ``torch.autograd.grad``, is averaged by one explicit all-reduce; α is
excluded from DDP's own gradient buckets. Sampling relaxations draw the same sample on every rank, seeded
from ``(sample_seed, global step, phase)``.

At the end of every epoch the module derives the answer and records it in a history kept in the checkpoint,
and logs softmax(α) for every edge and op together with collapse diagnostics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Generic

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from darts_lightning.differentiable.callbacks import AnswerFiles, ArchitectureFigures, SearchSummary
from darts_lightning.differentiable.estimators import ESTIMATORS, ArchitectureGradient, FirstOrderGradient
from darts_lightning.differentiable.legacy import flat_checkpoint_error, is_flat
from darts_lightning.differentiable.optimizers import ArchOptimizer, WeightOptimizer
from darts_lightning.differentiable.relaxations import RELAXATIONS
from darts_lightning.differentiable.remedies import REMEDIES, Remedy
from darts_lightning.spaces.base import SPACES, Arch, SearchSpace
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.spaces.mixing import Relaxation, SoftmaxRelaxation
from darts_lightning.utils.components import build_component
from darts_lightning.utils.distributed import (
    all_reduce_mean_,
    broadcast_,
    is_distributed,
    require_find_unused_parameters,
    sync_batchnorm_statistics_,
)
from darts_lightning.utils.files import use_atomic_checkpoints
from darts_lightning.utils.layout import ChannelsLastMixin
from darts_lightning.utils.resume import check_resume, record_module
from darts_lightning.utils.training import (
    BatchMean,
    NonFiniteLoss,
    NonFiniteLossError,
    log_every_n_steps,
    planned_epochs,
    trainer_callbacks,
    trainer_datamodule,
)
from darts_lightning.utils.validation import check_choice, check_range

__all__ = ["DARTSSearch", "NonFiniteLossError", "check_precision", "STEP_ORDERS"]

#: ``arch_first``: DARTS's Algorithm 1 (α, then w); ``weight_first``: GDAS's loop (w, then α); ``joint``: SNAS's
#: single-level step (one forward and backward pass on the search-train batch gives both gradients).
STEP_ORDERS = ("arch_first", "weight_first", "joint")

#: The losses of a search step, numbered in the record of the first non-finite one.
LOSSES = ("architecture (search-val)", "architecture (search-train)", "weight (search-train)", "joint (search-train)")


def check_precision(precision: str) -> None:
    """Raise a clear error for float16 mixed precision (on a GPU; on a CPU Lightning already swaps it for bf16)."""
    if precision in ("16-mixed", "16", "16-true"):
        raise ValueError(
            f"precision={precision!r} is not supported by the search: float16 needs loss scaling, which the "
            "architecture step (torch.autograd.grad) does not take part in. Use precision='bf16-mixed' "
            "(or '32-true')."
        )


class DARTSSearch(ChannelsLastMixin, pl.LightningModule, Generic[Arch]):
    """Differentiable architecture search, composed of a space, a relaxation, an estimator, two optimizers'
    settings and remedies. Defaults are the paper's CIFAR-10 search (sec. 3.1.1 and A.1.1): the DARTS space
    at C = 16 and 8 cells, softmax relaxation, first order, SGD and Adam as the paper sets them.

    Args:
        space: the search space (:class:`~darts_lightning.spaces.SearchSpace`; a registered name, ``darts``
            or ``nasbench201``, takes its defaults). Default: ``DartsSpace()``.
        relaxation: how mixed edges mix their ops (:class:`~darts_lightning.Relaxation`; a registered name:
            ``darts``, ``pcdarts``, ``gdas``, ``snas``, ``drnas``). Default: DARTS's softmax.
        estimator: the architecture gradient (:class:`FirstOrderGradient` or :class:`SecondOrderGradient`,
            which also choose the batch the architecture loss is measured on; ``first_order``,
            ``second_order``). Default: first order on the search-val batch.
        weight_optimizer, arch_optimizer: :class:`WeightOptimizer` and :class:`ArchOptimizer` settings.
        remedies: remedies against collapse (:class:`~darts_lightning.differentiable.remedies.Remedy`;
            names: ``arch_warmup``, ``auxiliary_skip``, ``beta_decay``).
        step_order: ``arch_first`` (DARTS), ``weight_first`` (GDAS) or ``joint`` (SNAS; needs a first-order
            estimator on the search-train batch).
        in_channels, num_classes, image_size: from the data (the CLI links them to the data module).
        sample_seed: seed of the sampling relaxations' noise (``None``: drawn once from torch's seed and kept
            in the checkpoint).
        channels_last: run the supernet in channels-last memory layout. ``None`` (default): on a CPU, where it
            makes a search step about twice as fast for this network, and not elsewhere.
    """

    def __init__(
        self,
        space: SearchSpace | str | None = None,
        relaxation: Relaxation | str | None = None,
        estimator: ArchitectureGradient | str | None = None,
        weight_optimizer: WeightOptimizer | None = None,
        arch_optimizer: ArchOptimizer | None = None,
        remedies: Sequence[Remedy | str] = (),
        step_order: str = "arch_first",
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        sample_seed: int | None = None,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        # Every part is built and checked before the supernet is, so that a wrong value in a config fails at once.
        self.space: SearchSpace[Arch] = build_component(
            DartsSpace() if space is None else space, SearchSpace, "model.space", SPACES.get)  # type: ignore[type-abstract]
        self.relaxation: Relaxation = build_component(
            SoftmaxRelaxation() if relaxation is None else relaxation, Relaxation, "model.relaxation", RELAXATIONS.get)
        self.estimator: ArchitectureGradient = build_component(
            FirstOrderGradient() if estimator is None else estimator, ArchitectureGradient, "model.estimator",
            ESTIMATORS.get)
        self.weight_optimizer = build_component(
            WeightOptimizer() if weight_optimizer is None else weight_optimizer, WeightOptimizer, "model.weight_optimizer")
        self.arch_optimizer = build_component(
            ArchOptimizer() if arch_optimizer is None else arch_optimizer, ArchOptimizer, "model.arch_optimizer")
        self.remedies: list[Remedy] = [
            build_component(r, Remedy, f"model.remedies[{i}]", REMEDIES.get) for i, r in enumerate(remedies)
        ]
        check_choice("step_order", step_order, STEP_ORDERS,
                     hint="arch_first: DARTS, weight_first: GDAS, joint: SNAS's single-level step")
        for name, value in (("in_channels", in_channels), ("image_size", image_size)):
            check_range(name, value, 1, integer=True)
        check_range("num_classes", num_classes, 2, integer=True)
        check_range("sample_seed", sample_seed, 0, integer=True, optional=True)
        check_choice("channels_last", channels_last, (None, True, False))
        if step_order == "joint" and not (isinstance(self.estimator, FirstOrderGradient) and self.estimator.single_level):
            raise ValueError(
                "step_order 'joint' computes both gradients in one pass on the search-train batch: it needs a "
                f"first-order estimator with arch_batch 'train', got {self.estimator!r}"
            )
        if step_order == "joint" and any(r.perturbs_weight_step for r in self.remedies):
            raise ValueError(
                "step_order 'joint' has no separate weight step for the remedies that perturb it (SDARTS): use "
                "step_order 'arch_first' or 'weight_first'"
            )
        # Plain containers only: a checkpoint loads with torch.load(weights_only=True), and load_from_checkpoint
        # rebuilds every part from its class path and arguments.
        self.save_hyperparameters({
            "space": self.space.config(), "relaxation": self.relaxation.config(), "estimator": self.estimator.config(),
            "weight_optimizer": self.weight_optimizer.config(), "arch_optimizer": self.arch_optimizer.config(),
            "remedies": [r.config() for r in self.remedies], "step_order": step_order, "in_channels": in_channels,
            "num_classes": num_classes, "image_size": image_size, "sample_seed": sample_seed,
            "channels_last": channels_last,
        })
        self.step_order = step_order
        self.network = self.space.build_supernet(
            self.relaxation, in_channels=in_channels, num_classes=num_classes, image_size=image_size,
            auxiliary_skip=any(r.adds_auxiliary_skip for r in self.remedies),
        )
        for remedy in self.remedies:
            remedy.attach(self.space, self.network, in_channels=in_channels, num_classes=num_classes,
                          image_size=image_size)
        self._sample_seed: int | None = sample_seed
        if self.weight_optimizer.clip_includes_arch:
            # α's gradient as the last architecture step left it (GDAS never clears it before the weight
            # step): kept as buffers, so that a resumed search clips as an uninterrupted one.
            for name, alpha in self.network.named_arch_parameters().items():
                self.register_buffer(f"last_arch_grad_{name}", torch.zeros_like(alpha.detach()))
        # α is synchronised by an explicit all-reduce of its gradient, not by DDP's buckets.
        self._ddp_params_and_buffers_to_ignore = [f"network.{n}" for n in self.network.named_arch_parameters()]
        self.train_accuracy = MulticlassAccuracy(num_classes, average="micro")
        # train/loss per step is this rank's batch; its epoch mean is reduced across ranks by the metric, once
        # per epoch (sync_dist=True on a value logged on_step would all-reduce at every search step).
        self.train_loss = BatchMean()
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.nonfinite = NonFiniteLoss(
            LOSSES,
            "the search diverged: lower the learning rates (model.weight_optimizer.lr, model.arch_optimizer.lr) or check "
            "the data",
        )
        #: the answer of every epoch: ``{"epoch", "step", "genotype"}`` (the answer as the space records it)
        self.genotype_history: list[dict[str, Any]] = []
        #: the epoch whose answer the search returns (set by early stopping; ``None``: the current one)
        self.selected_epoch: int | None = None
        self._output_dir: Path | None = None

    # ------------------------------------------------------------------ parameters and answers

    def arch_parameters(self) -> list[torch.nn.Parameter]:
        return self.network.arch_parameters()

    def weight_parameters(self) -> list[torch.nn.Parameter]:
        return self.network.weight_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.network(self._layout(x))

    def layout(self, x: Tensor) -> Tensor:
        """``x`` in the supernet's memory layout."""
        return self._layout(x)

    def genotype(self) -> Arch:
        """The answer the current α describes (a :class:`~darts_lightning.Genotype` in the DARTS space)."""
        return self.network.derive()

    def selected_answer(self) -> Arch:
        """The search's answer: that of the current α, or that of the epoch early stopping went back to.

        The one place where the answer is derived: the answer file, the summary printed at the end,
        TensorBoard, ``darts-lightning export-genotype`` and ``darts-lightning protocol`` all take it from here.
        """
        if self.selected_epoch is not None:
            for record in self.genotype_history:
                if record["epoch"] == self.selected_epoch:
                    return self.space.from_record(record["genotype"])
        return self.genotype()

    selected_genotype = selected_answer

    def output_dir(self) -> Path:
        """Where answer files go: the logger's directory of this run (or the trainer's root dir)."""
        if self._output_dir is None:
            # ``trainer.log_dir`` is a collective under DDP: every rank resolves it once, at fit start.
            self._output_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        return self._output_dir

    def configure_callbacks(self) -> list[pl.Callback]:
        """The search's side work: the answer files, TensorBoard figures and the final summary. A trainer
        callback of one of these classes (or a subclass) takes the place of the default: Lightning would
        otherwise let the module's callback replace the trainer's."""
        given = trainer_callbacks(self._trainer) if self._trainer is not None else []
        defaults: list[pl.Callback] = [AnswerFiles(), ArchitectureFigures(), SearchSummary()]
        return [c for c in defaults if not any(isinstance(t, type(c)) for t in given)]

    # ------------------------------------------------------------------ schedules

    def epochs(self) -> int:
        """The planned epochs (the trainer's ``max_epochs``; 50, the paper's, when it sets none)."""
        return planned_epochs(self.trainer, 50)

    def on_train_epoch_start(self) -> None:
        epoch, epochs = self.current_epoch, self.epochs()
        self.relaxation.update_schedule(epoch, epochs)
        values = dict(self.relaxation.schedule_values())
        for remedy in self.remedies:
            values.update(remedy.on_epoch_start(self.network, epoch, epochs))
        for name, value in values.items():
            self.log(f"arch/{name}", float(value), on_step=False, on_epoch=True, sync_dist=True)

    def arch_moves(self) -> bool:
        """Whether α is stepped in this epoch (no remedy holds it)."""
        return all(remedy.arch_moves(self.current_epoch) for remedy in self.remedies)

    def sample(self, phase: int, step: int | None = None) -> None:
        """Seed the sampling relaxations' noise with (sample seed, step, phase); ``step`` defaults to the global step."""
        self.network.set_sample_key(self._sample_seed or 0, self.global_step if step is None else step, phase)

    def architecture_regularizer(self) -> Tensor | None:
        """The terms the architecture loss adds to L_val: the relaxation's (DrNAS's KL) and the remedies'
        (β-DARTS's β-decay)."""
        terms = [t for t in (self.relaxation.regularizer(a) for a in self.network.alphas().values()) if t is not None]
        epoch, epochs = self.current_epoch, self.epochs()
        terms += [t for t in (r.arch_loss(self.network, epoch, epochs) for r in self.remedies) if t is not None]
        if not terms:
            return None
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> Any:
        weight_optimizer, scheduler = self.weight_optimizer.build(self.weight_parameters(), self.epochs())
        arch_optimizer = self.arch_optimizer.build(self.arch_parameters())
        return [weight_optimizer, arch_optimizer], [{"scheduler": scheduler, "interval": "epoch"}]

    def setup(self, stage: str) -> None:
        use_atomic_checkpoints(self.trainer)  # a full disk must not leave a truncated checkpoint
        if stage == "fit" and self.relaxation.computes_subset:
            require_find_unused_parameters(
                self.trainer,
                f"the {self.relaxation.name} relaxation computes only the sampled op of each edge and leaves the "
                "other ops without gradients",
            )
        super().setup(stage)  # the memory layout (ChannelsLastMixin)

    def on_fit_start(self) -> None:
        # DDP broadcasts the weights from rank 0 but α is outside its buckets: start every rank from rank 0's α.
        broadcast_(self.arch_parameters())
        if self._sample_seed is None:
            # An integer tensor holds the seed exactly on every backend (MPS has no float64).
            seed = torch.tensor([torch.initial_seed() % (2**31)], dtype=torch.long, device=self.device)
            broadcast_([seed])
            self._sample_seed = int(seed.item())
        self.nonfinite.reset()
        self._output_dir = None
        self.output_dir()
        check_precision(str(self.trainer.precision))

    def training_step(self, batch: dict[str, tuple[Tensor, Tensor]], batch_idx: int) -> None:
        x_train, y_train = batch["train"]
        x_val, y_val = batch["val"]
        x_train, x_val = self._layout(x_train), self._layout(x_val)
        optimizers: Any = self.optimizers()  # Lightning's wrappers of the two optimizers
        weight_optimizer, arch_optimizer = optimizers
        weights, arch = self.weight_optimizer, self.arch_optimizer
        single_level = self.estimator.single_level
        arch_moves = self.arch_moves()
        clip = weights.grad_clip if weights.grad_clip > 0 else 0.0
        # The step's sample key, fixed before the weight optimizer's step increments global_step.
        step = self.global_step

        def record(loss: Tensor, what: str) -> None:
            self.nonfinite.record(loss, what, step, self.current_epoch, batch_idx)

        def reduced_arch_grads() -> list[Tensor]:
            # α is outside DDP's buckets: its gradient from manual_backward is averaged here.
            grads = [a.grad if a.grad is not None else torch.zeros_like(a) for a in self.arch_parameters()]
            all_reduce_mean_(grads)
            return grads

        def arch_step(grads: list[Tensor], loss: Tensor, batch_size: int) -> None:
            for alpha, grad in zip(self.arch_parameters(), grads):
                alpha.grad = grad
            if arch.grad_clip > 0:  # SNAS: clip_grad_norm_(arch_parameters, 10.) (train_search.py, line 505)
                torch.nn.utils.clip_grad_norm_(self.arch_parameters(), arch.grad_clip)
            if weights.clip_includes_arch:
                for name, alpha in self.network.named_arch_parameters().items():
                    getattr(self, f"last_arch_grad_{name}").copy_(alpha.grad)
            arch_optimizer.optimizer.step()  # the raw optimizer: one search step = one global step
            arch_optimizer.optimizer.zero_grad(set_to_none=True)
            self.log("train/arch_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)

        def architecture_step() -> None:
            # α ← α − η_α · (estimate of ∇α L_val) on the search-val batch (search-train: single level).
            self.sample(0, step)
            arch_batch = (x_train, y_train) if single_level else (x_val, y_val)
            result = self.estimator.estimate(self.network, arch_batch, (x_train, y_train), weight_optimizer.optimizer)
            record(result.loss, "architecture (search-train)" if single_level else "architecture (search-val)")
            regularizer = self.architecture_regularizer()
            if regularizer is not None:
                extra = torch.autograd.grad(regularizer, self.arch_parameters(), allow_unused=True)
                result.grads = [g if e is None else g + e for g, e in zip(result.grads, extra)]
                self.log("train/arch_regularizer", regularizer.detach(), on_step=False, on_epoch=True, sync_dist=True)
            all_reduce_mean_(result.grads)
            arch_step(result.grads, result.loss, len(arch_batch[1]))

        def weight_step() -> tuple[Tensor, Tensor]:
            # w ← w − η_w · ∇w L_train(w, α) on the search-train batch, α held constant. Single level: the
            # same sample as the architecture step, so that the two gradients are those of one joint loss.
            self.sample(0 if single_level else 1, step)
            with_arch = weights.clip_includes_arch and clip > 0  # GDAS: α's gradient counts in the norm
            with ExitStack() as perturbed:  # SDARTS: the forward pass on perturbed mixing weights, α untouched
                for remedy in self.remedies:
                    perturbed.enter_context(
                        remedy.perturb_weight_step(self.network, (x_train, y_train), self.current_epoch, self.epochs()))
                logits = self.network(x_train, detach_alpha=not with_arch)
            loss = F.cross_entropy(logits, y_train)
            record(loss, "weight (search-train)")
            weight_optimizer.zero_grad()
            self.manual_backward(loss)
            if with_arch:
                # GDAS.py, lines 50-55: clip_grad_norm_(network.parameters(), 5) with α's gradient = the last
                # architecture gradient + ∇α L_train; then only the weights are stepped.
                last = [getattr(self, f"last_arch_grad_{name}") for name in self.network.named_arch_parameters()]
                for alpha, grad, previous in zip(self.arch_parameters(), reduced_arch_grads(), last):
                    alpha.grad = grad + previous
                torch.nn.utils.clip_grad_norm_(list(self.network.parameters()), clip)
                for alpha in self.arch_parameters():
                    alpha.grad = None
            elif clip:
                self.clip_gradients(weight_optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
            weight_optimizer.step()
            return logits, loss

        if self.step_order == "joint":
            # SNAS (train_search.py, lines 489-513): one loss, one backward; the weights and α are clipped
            # separately and both optimizers step.
            self.sample(0, step)
            logits = self.network(x_train, detach_alpha=not arch_moves)
            loss = F.cross_entropy(logits, y_train)
            record(loss, "joint (search-train)")
            regularizer = self.architecture_regularizer() if arch_moves else None
            weight_optimizer.zero_grad()
            for alpha in self.arch_parameters():
                alpha.grad = None
            self.manual_backward(loss if regularizer is None else loss + regularizer)
            if clip:
                self.clip_gradients(weight_optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
            grads = reduced_arch_grads() if arch_moves else []
            if regularizer is not None:
                self.log("train/arch_regularizer", regularizer.detach(), on_step=False, on_epoch=True, sync_dist=True)
            weight_optimizer.step()
            if arch_moves:
                arch_step(grads, loss, len(y_train))
        elif self.step_order == "weight_first":  # GDAS (GDAS.py, lines 49-69): the weights, then α
            logits, loss = weight_step()
            if arch_moves:
                architecture_step()
        else:  # DARTS (Algorithm 1): α, then the weights
            if arch_moves:
                architecture_step()
            logits, loss = weight_step()

        self.train_accuracy(logits.detach(), y_train)
        self.train_loss(loss.detach(), len(y_train))
        # Lightning turns every progress-bar value into a number after every batch (a read from the device,
        # whether a bar is shown or not): the loss goes to the bar only when there is one.
        shown = self.trainer.progress_bar_callback is not None
        self.log("train/loss", self.train_loss, prog_bar=shown, on_step=True, on_epoch=True)
        self.log("train/acc", self.train_accuracy, on_step=False, on_epoch=True)
        # The step's one read from the device, at the steps Lightning logs (and reads the logged values) and at
        # the end of the epoch, before its answer, validation and checkpoint.
        every = log_every_n_steps(self.trainer)
        if self.trainer.is_last_batch or (every > 0 and (step + 1) % every == 0):
            self.nonfinite.raise_if_any()
        if self.trainer.is_last_batch:
            # Before the callbacks' end of epoch, validation and checkpointing: an epoch-end checkpoint holds the
            # stepped scheduler and the epoch's answer.
            self._end_of_epoch()

    def _end_of_epoch(self) -> None:
        optimizers: Any = self.optimizers()  # Lightning's wrappers of the two optimizers
        weight_optimizer, arch_optimizer = optimizers
        # The learning rates and α's diagnostics are the same on every rank: sync_dist=True averages equal
        # values, once at epoch end (on_step=False), and keeps every rank's callback_metrics alike.
        self.log_dict(
            {"lr/weights": weight_optimizer.param_groups[0]["lr"], "lr/arch": arch_optimizer.param_groups[0]["lr"]},
            on_step=False, on_epoch=True, sync_dist=True,
        )
        self.lr_schedulers().step()  # type: ignore[union-attr]
        if is_distributed():
            sync_batchnorm_statistics_(self.network)
        answer = self.genotype()
        self.genotype_history.append(
            {"epoch": self.current_epoch, "step": self.global_step, "genotype": self.space.to_record(answer)}
        )
        self.log_dict(self.architecture_diagnostics(answer), on_step=False, on_epoch=True, sync_dist=True)

    # ------------------------------------------------------------------ validation

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.sample(phase=2 + batch_idx)
        logits = self.network(self._layout(x), detach_alpha=True)
        self.val_accuracy(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        self.log("val/acc", self.val_accuracy, prog_bar=True)

    # ------------------------------------------------------------------ diagnostics

    @torch.no_grad()
    def architecture_diagnostics(self, answer: Arch | None = None) -> dict[str, float]:
        """softmax(α) of every edge and op, plus collapse diagnostics per cell type.

        * ``arch/<cell>/entropy``: mean entropy of softmax(α) over edges (ln(#ops) at initialisation);
        * ``arch/<cell>/margin``: mean gap between the two largest softmax weights of an edge (0 at start);
        * ``arch/<cell>/skip_connect``: skip connections in the derived cell (DARTS collapse shows as this
          count growing, Zela et al., ICLR 2020);
        * the remedies' own (:meth:`~darts_lightning.differentiable.remedies.Remedy.diagnostics`: a budget's
          ``arch/cost/...``).
        """
        out: dict[str, float] = {}
        labels = self.network.edge_labels()
        edge_ops = self.network.edge_op_names()  # column o of edge e is edge_ops[cell][e][o]
        answer = self.genotype() if answer is None else answer
        derived = self.space.ops_of(answer)
        for cell, weights in self.network.cell_weights(detach=True).items():
            probs = weights.float().cpu()
            for e, label in enumerate(labels):
                for o, name in enumerate(edge_ops[cell][e]):
                    out[f"alpha/{cell}/{label}/{name}"] = float(probs[e, o])
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
            top2 = probs.topk(min(2, probs.shape[1]), dim=-1).values
            out[f"arch/{cell}/entropy"] = float(entropy.mean())
            out[f"arch/{cell}/margin"] = float((top2[:, 0] - top2[:, -1]).mean())
            out[f"arch/{cell}/skip_connect"] = float(derived[cell].count("skip_connect"))
        for remedy in self.remedies:
            out.update({f"arch/{key}": value for key, value in remedy.diagnostics(self.network, answer).items()})
        return out

    def on_train_end(self) -> None:
        # A run that stops between logging steps (max_steps, an interrupted epoch) reports a non-finite loss too.
        self.nonfinite.raise_if_any()

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite.raise_if_any()  # never save the state of a diverged search
        record_module(self, checkpoint)
        checkpoint["search_space"] = self.network.space_signature()
        checkpoint["genotype_history"] = list(self.genotype_history)
        checkpoint["sample_seed"] = self._sample_seed

    @classmethod
    def outdated_checkpoint(cls, checkpoint: Mapping[str, Any], path: str | Path | None = None) -> str | None:
        """The refusal of a checkpoint an earlier version wrote with flat settings, or ``None`` (asked by
        :func:`darts_lightning.utils.resume.check_resume` before it compares settings)."""
        settings = checkpoint.get("hyper_parameters")
        return flat_checkpoint_error(path) if isinstance(settings, Mapping) and is_flat(settings) else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # check_resume first refuses a checkpoint in the earlier flat form (outdated_checkpoint), with its advice
        check_resume(self, checkpoint, datamodule=trainer_datamodule(self._trainer))
        self.genotype_history = list(checkpoint.get("genotype_history", []))
        if checkpoint.get("sample_seed") is not None:
            self._sample_seed = int(checkpoint["sample_seed"])
