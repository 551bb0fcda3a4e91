"""The DARTS search as a LightningModule (Liu et al., ICLR 2019, Algorithm 1).

Every training step takes one search-train and one search-val batch and

1. updates α by descending the architecture gradient on the search-val batch
   (first order: ∇α L_val(w, α); second order: the unrolled estimate of eq. 6-8; see
   :mod:`darts_lightning.architect`);
2. updates the weights w by descending ∇w L_train(w, α) on the search-train batch.

Optimisation is manual (two optimizers, two losses per step). ``global_step`` counts search steps: the
α optimizer is stepped directly, so one batch is one step. Under DDP the weight gradients are averaged by
DDP; the α gradient, taken with ``torch.autograd.grad``, is averaged by one explicit all-reduce; α is
excluded from DDP's own gradient buckets.

The DARTS family is configuration of this one module: the mixed-edge relaxation (``relaxation``:
``darts``, ``pcdarts``, ``gdas``, ``snas``, ``drnas``; see :mod:`darts_lightning.relaxations`), PC-DARTS's
edge normalisation, the collapse remedies (α warm-up, DARTS-'s auxiliary skip, β-DARTS's β-decay
regularisation) and R-DARTS's Hessian-eigenvalue early stopping. Sampling relaxations draw the same sample
on every rank, seeded from ``(sample_seed, global step, phase)``.

At the end of every epoch the module derives the genotype, records it in a history kept in the
checkpoint, logs softmax(α) for every edge and op together with collapse diagnostics, and writes
``genotype.json``, ``genotype_history.json`` and ``genotype.png`` into the run's log directory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from .architect import HESSIAN_MODES, build_architecture_gradient
from .distributed import (
    all_reduce_mean_, broadcast_, is_distributed, require_find_unused_parameters, sync_batchnorm_statistics_,
)
from .diagnostics import EigenvalueEarlyStop, dominant_hessian_eigenvalue, eigenvalue_measured
from .files import atomic_write_text, use_atomic_checkpoints
from .layout import ChannelsLastMixin
from .genotype import Genotype
from .network import GENOTYPE_RULES, SearchNetwork, check_image_size
from .ops import DARTS_OPS, resolve_op_names
from .relaxations import build_relaxation, list_relaxations
from .validation import check_choice, check_range
from .resume import check_resume, record_module

__all__ = ["DARTSSearch", "NonFiniteLossError", "check_precision"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: raised at the next logging step, epoch end, checkpoint or end of
    training, naming the first bad step (:meth:`DARTSSearch._record_nonfinite`)."""


class BatchMean(Metric):
    """The mean of a per-batch value weighted by the batch size, reduced across ranks when computed.

    What ``torchmetrics.MeanMetric`` computes, without reading anything back from the device in ``update``:
    MeanMetric tests its input for NaN in a Python ``if`` and turns a Python weight into a device tensor,
    two waits for an accelerator per search step. A non-finite loss stops the search instead
    (:meth:`DARTSSearch._record_nonfinite`). The sums are kept in float32, as MeanMetric keeps them.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("weight", default=torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: int) -> None:
        """Add a batch's ``value`` (a 0-dim tensor) with its batch size ``weight`` (a host integer)."""
        self.total += value.detach().to(self.total.dtype) * weight
        self.weight += weight

    def compute(self) -> Tensor:
        return self.total / self.weight


def _arch_text(arch: Any) -> str:
    return repr(arch) if isinstance(arch, Genotype) else str(arch)


def _arch_record(arch: Any) -> Any:
    """A derived cell as plain data for the genotype history."""
    return arch.to_dict() if isinstance(arch, Genotype) else str(arch)


def check_precision(precision: str) -> None:
    """Raise a clear error for float16 mixed precision (on a GPU; on a CPU Lightning already swaps it for bf16)."""
    if precision in ("16-mixed", "16", "16-true"):
        raise ValueError(
            f"precision={precision!r} is not supported by the search: float16 needs loss scaling, which the "
            "architecture step (torch.autograd.grad) does not take part in. Use precision='bf16-mixed' "
            "(or '32-true')."
        )


class DARTSSearch(ChannelsLastMixin, pl.LightningModule):
    """Differentiable architecture search over DARTS cells.

    Defaults are the paper's CIFAR-10 search settings (sec. 3.1.1 and A.1.1). The options from
    ``pool_batch_norm`` on reproduce the released GDAS and SNAS code; their defaults are DARTS's, and
    configs/gdas_*.yaml and configs/snas_*.yaml set the released values and cite the lines.

    Args:
        in_channels, num_classes, image_size: from the data (the CLI links them to the data module).
        channels: initial channels C (16). layers: cells L (8). nodes: per cell (4).
        multiplier: nodes concatenated into a cell's output (4). stem_multiplier: (3).
        ops: candidate op names (default: the eight DARTS primitives); registered names or import paths.
        relaxation: mixed-edge relaxation: ``darts`` (softmax), ``pcdarts`` (softmax over 1/K of the
            channels), ``gdas`` (hard Gumbel-softmax, one op computed per edge), ``snas`` (soft
            Gumbel-softmax), ``drnas`` (Dirichlet samples); see :mod:`darts_lightning.relaxations`.
        relaxation_args: keyword arguments of the relaxation, e.g. ``{partial_channels: 4}``,
            ``{tau_max: 10, tau_min: 0.1}``, ``{kl_weight: 1e-3}``.
        edge_normalization: PC-DARTS's per-edge parameters β, softmax-normalised over each node's inputs.
        auxiliary_skip: DARTS-: an auxiliary skip connection on every mixed edge whose weight decays
            linearly, β_t = (E − t) / E in epoch t of E (1 at the start, 1/E in the last epoch).
        beta_decay_max: β-DARTS: add λ_t · Σ_cells mean_edges logsumexp(α_edge) to the architecture loss,
            with λ_t = beta_decay_max · t / E rising linearly over the E epochs (0: off; the released
            β-DARTS code uses λ_t = 0.5 · t, i.e. 25 for its 50 epochs).
        arch_batch: the batch the architecture step descends on: ``val`` (bilevel DARTS) or ``train``
            (single-level, as SNAS trains α and w on the same batch; the search-val split then only
            measures the supernet).
        genotype_rule: DARTS space: derive the genotype by the DARTS rule (``darts``: the two strongest
            edges into each node) or by GDAS's (``gdas``: the two strongest (op, input) pairs).
        sample_seed: seed of the sampling relaxations' noise (``None``: drawn once from torch's seed and
            kept in the checkpoint).
        space: ``darts`` (the DARTS cell) or ``nasbench201`` (the NAS-Bench-201 cell; ``channels`` is the
            first stage's width, ``layers`` the cells per stage, NAS-Bench-201: 16 and 5; ``ops`` and
            ``nodes`` are fixed by the benchmark). First-order DARTS is known to collapse to skip
            connections on NAS-Bench-201 (Dong & Yang, 2020): that is the method, not a bug.
        order: architecture-gradient estimate: 1 (first order) or 2 (second order, unrolled).
        hessian: second order: ``finite_difference`` (the paper's eq. 8) or ``exact`` (double backward).
        hessian_epsilon: second order: the finite-difference step is ε = hessian_epsilon / ‖∇w' L_val‖ (0.01).
        unrolled_lr: second order: the virtual step size ξ; ``None`` uses the current weight learning rate.
        weight_lr, weight_lr_min: SGD learning rate, cosine-annealed per epoch to ``weight_lr_min``
            over ``max_epochs`` (0.025 → 0.001).
        weight_momentum, weight_decay: SGD momentum (0.9) and weight decay (3e-4).
        grad_clip: gradient-norm clip of the weight step (5).
        arch_lr, arch_betas, arch_weight_decay: Adam on α (3e-4, (0.5, 0.999), 1e-3).
        arch_warmup_epochs: train the weights only for this many epochs before α moves (PC-DARTS: 15);
            a remedy for the early collapse towards parameter-free ops.
        compile: ``torch.compile`` the supernet in place (``nn.Module.compile``: parameters, state dict and
            checkpoints are unchanged) when the run is set up. A search step launches thousands of small
            kernels, and on a GPU their launch overhead, not arithmetic, bounds it; compiling fuses them. The
            second order's functional passes go through the same compiled module. Refused for relaxations
            that compute a different sampled sub-network every step (GDAS), which would recompile every step.
        hessian_eigenvalue_every: log ``arch/hessian_eigenvalue``, the largest eigenvalue of the Hessian
            of the architecture loss L_val + arch_weight_decay / 2 · ‖α‖² w.r.t. α on the epoch's last
            search-val batch, at epochs 0, K, 2K, … and in the last epoch, as the R-DARTS code does (K = 2
            there; 0: never). See :mod:`darts_lightning.diagnostics`.
        eigenvalue_early_stop: R-DARTS's DARTS-ES (:class:`~darts_lightning.diagnostics.EigenvalueEarlyStop`):
            stop when the local average of the eigenvalue over ``eigenvalue_stop_window`` measurements exceeds
            ``eigenvalue_stop_factor`` times the one ``eigenvalue_stop_delta`` measurements earlier, and
            return the genotype of the epoch that earlier average is centred on, provided that epoch is at
            least ``eigenvalue_stop_start_epoch`` (needs ``hessian_eigenvalue_every`` > 0; the R-DARTS code:
            every 2 epochs, window 5, delta 4, factor 1.3, start epoch 10, so at the earliest it stops at
            epoch 22 and returns epoch 10; never in the last epoch).
        channels_last: run the supernet in channels-last memory layout. ``None`` (default): on a CPU,
            where it makes a search step about twice as fast for this network, and not elsewhere.
        pool_batch_norm: a non-affine batch norm after the mixed edges' pooling ops. ``None``: the space's
            released default, yes for ``darts`` (DARTS, PC-DARTS, SNAS), no for ``nasbench201``
            (AutoDL's cells); GDAS's and DrNAS's DARTS-space code has none.
        last_activation: batch norm and ReLU before the global pooling (GDAS's ``lastact``; the
            NAS-Bench-201 network always has it).
        search_drop_path: drop-path probability on every mixed edge's output during the search (SNAS: 0.3).
        weight_step_first: take the weight step before the architecture step, as GDAS's search loop does.
        grad_clip_includes_arch: GDAS: the weight step's ``clip_grad_norm_`` runs over all the network's
            parameters, α included; α's gradient then holds the last architecture step's gradient plus
            ∇α L_train of this step, and counts in the norm (only the weights are stepped).
        joint_step: single level only (``arch_batch: train``, first order): one forward and backward pass
            on the search-train batch gives both gradients, at the same (w, α) and sample, and both
            optimizers step, as SNAS's search loop does (instead of an architecture step, then a weight step).
        arch_grad_clip: clip the norm of α's gradient before the architecture step (SNAS: 10; 0: off).
        arch_optimizer: ``adam`` (DARTS) or ``sgd`` (plain SGD at ``arch_lr``, SNAS's single-GPU path).
        weight_nesterov: Nesterov momentum for the weights (GDAS's configuration).
        weight_lr_epoch_offset: epoch e trains at the cosine rate of epoch e + offset (capped at the last):
            SNAS's code steps its scheduler at the start of every epoch (PyTorch 0.4's order), offset 1.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 16,
        layers: int = 8,
        nodes: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        ops: Sequence[str] = DARTS_OPS,
        relaxation: str = "darts",
        relaxation_args: dict[str, Any] | None = None,
        edge_normalization: bool = False,
        auxiliary_skip: bool = False,
        beta_decay_max: float = 0.0,
        arch_batch: str = "val",
        sample_seed: int | None = None,
        genotype_rule: str = "darts",
        space: str = "darts",
        order: int = 1,
        hessian: str = "finite_difference",
        hessian_epsilon: float = 0.01,
        unrolled_lr: float | None = None,
        weight_lr: float = 0.025,
        weight_lr_min: float = 0.001,
        weight_momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        arch_lr: float = 3e-4,
        arch_betas: tuple[float, float] = (0.5, 0.999),
        arch_weight_decay: float = 1e-3,
        channels_last: bool | None = None,
        arch_warmup_epochs: int = 0,
        hessian_eigenvalue_every: int = 0,
        eigenvalue_early_stop: bool = False,
        eigenvalue_stop_window: int = 5,
        eigenvalue_stop_delta: int = 4,
        eigenvalue_stop_factor: float = 1.3,
        eigenvalue_stop_start_epoch: int = 10,
        pool_batch_norm: bool | None = None,
        last_activation: bool = False,
        search_drop_path: float = 0.0,
        weight_step_first: bool = False,
        grad_clip_includes_arch: bool = False,
        joint_step: bool = False,
        arch_grad_clip: float = 0.0,
        arch_optimizer: str = "adam",
        weight_nesterov: bool = False,
        weight_lr_epoch_offset: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        # Every argument is checked whatever the others are (``hessian`` also with ``order: 1``), before the
        # supernet is built, so that a wrong value in a config fails at once.
        check_choice("space", space, ("darts", "nasbench201"), hint="a differentiable search runs on these spaces")
        for name, value in (("in_channels", in_channels), ("image_size", image_size), ("channels", channels),
                            ("layers", layers), ("nodes", nodes), ("stem_multiplier", stem_multiplier)):
            check_range(name, value, 1, integer=True)
        check_range("num_classes", num_classes, 2, integer=True)
        check_range("multiplier", multiplier, 1, nodes, integer=True, hint="a cell concatenates the last `multiplier` of its `nodes` nodes")
        resolve_op_names(ops)
        check_choice("relaxation", relaxation, [r for r in list_relaxations() if r != "single_path"],
                     hint="single_path is the relaxation of SinglePathSupernet")
        build_relaxation(relaxation, **dict(relaxation_args or {}))  # checks relaxation_args (no tensors are made)
        check_choice("arch_batch", arch_batch, ("val", "train"), hint="'val': bilevel DARTS, 'train': single-level (SNAS)")
        check_choice("genotype_rule", genotype_rule, GENOTYPE_RULES)
        check_choice("order", order, (1, 2), hint="1: first-order DARTS, 2: second order (unrolled)")
        check_choice("hessian", hessian, HESSIAN_MODES)
        check_range("hessian_epsilon", hessian_epsilon, 0, low_open=True)
        check_range("unrolled_lr", unrolled_lr, 0, optional=True, hint="None uses the weight learning rate")
        for name, value in (("beta_decay_max", beta_decay_max), ("weight_lr", weight_lr), ("weight_lr_min", weight_lr_min),
                            ("weight_decay", weight_decay), ("grad_clip", grad_clip), ("arch_lr", arch_lr),
                            ("arch_weight_decay", arch_weight_decay), ("arch_grad_clip", arch_grad_clip)):
            check_range(name, value, 0)
        check_range("weight_momentum", weight_momentum, 0, 1, high_open=True)
        if not (isinstance(arch_betas, (tuple, list)) and len(arch_betas) == 2):
            raise ValueError(f"arch_betas must be Adam's two betas (beta1, beta2), got {arch_betas!r}")
        for beta in arch_betas:
            check_range("arch_betas", beta, 0, 1, high_open=True)
        check_range("sample_seed", sample_seed, 0, integer=True, optional=True)
        for name, value in (("arch_warmup_epochs", arch_warmup_epochs), ("hessian_eigenvalue_every", hessian_eigenvalue_every),
                            ("eigenvalue_stop_start_epoch", eigenvalue_stop_start_epoch),
                            ("weight_lr_epoch_offset", weight_lr_epoch_offset)):
            check_range(name, value, 0, integer=True)
        check_range("eigenvalue_stop_window", eigenvalue_stop_window, 1, integer=True)
        check_range("eigenvalue_stop_delta", eigenvalue_stop_delta, 1, integer=True)
        check_range("eigenvalue_stop_factor", eigenvalue_stop_factor, 0, low_open=True)
        check_range("search_drop_path", search_drop_path, 0, 1, high_open=True)
        check_choice("arch_optimizer", arch_optimizer, ("adam", "sgd"))
        for name, value in (("edge_normalization", edge_normalization), ("auxiliary_skip", auxiliary_skip),
                            ("eigenvalue_early_stop", eigenvalue_early_stop), ("last_activation", last_activation),
                            ("weight_step_first", weight_step_first), ("grad_clip_includes_arch", grad_clip_includes_arch),
                            ("joint_step", joint_step), ("weight_nesterov", weight_nesterov), ("compile", compile)):
            check_choice(name, value, (True, False))
        for name, value in (("channels_last", channels_last), ("pool_batch_norm", pool_batch_norm)):
            check_choice(name, value, (None, True, False))
        if weight_nesterov and weight_momentum == 0:
            raise ValueError("weight_nesterov needs a momentum: set weight_momentum > 0 (GDAS: 0.9) or weight_nesterov: false")
        if eigenvalue_early_stop and not hessian_eigenvalue_every:
            raise ValueError(
                "eigenvalue_early_stop needs the eigenvalue: set hessian_eigenvalue_every (R-DARTS computes it every 2 epochs)"
            )
        if joint_step and (arch_batch != "train" or order != 1):
            raise ValueError(
                "joint_step computes both gradients in one pass on the search-train batch: it needs "
                f"arch_batch='train' and order=1, got arch_batch={arch_batch!r}, order={order}"
            )
        if joint_step and weight_step_first:
            raise ValueError("joint_step takes both steps at once; weight_step_first orders separate steps: choose one")
        relaxation_args = dict(relaxation_args or {})
        if space == "darts":
            self.network = SearchNetwork(
                in_channels, num_classes,
                channels=channels, layers=layers, nodes=nodes, multiplier=multiplier,
                stem_multiplier=stem_multiplier, op_names=list(ops), relaxation=relaxation,
                relaxation_args=relaxation_args, edge_normalization=edge_normalization,
                auxiliary_skip=auxiliary_skip, genotype_rule=genotype_rule, image_size=image_size,
                pool_batch_norm=True if pool_batch_norm is None else pool_batch_norm,
                last_activation=last_activation, drop_path_prob=search_drop_path,
            )
        elif space == "nasbench201":
            from .nasbench201 import NB201Network

            if edge_normalization:
                raise ValueError("edge_normalization needs nodes with several inputs to choose from: use space='darts'")
            if genotype_rule != "darts":
                raise ValueError("genotype_rule applies to the DARTS cell; a NAS-Bench-201 cell keeps every edge")
            if last_activation or search_drop_path:
                raise ValueError(
                    "last_activation and search_drop_path apply to the DARTS supernet (the NAS-Bench-201 network "
                    "always ends with batch norm and ReLU): use space='darts'"
                )
            check_image_size(image_size, 3)  # two reduction blocks
            self.network = NB201Network(
                None, num_classes=num_classes, in_channels=in_channels,
                channels=(channels, 2 * channels, 4 * channels), cells_per_stage=layers, relaxation=relaxation,
                relaxation_args=relaxation_args, auxiliary_skip=auxiliary_skip,
                pool_batch_norm=bool(pool_batch_norm),
            )
        else:
            raise ValueError(f"space must be 'darts' or 'nasbench201' for a differentiable search, got {space!r}")
        if compile and self.network.relaxation.computes_subset:
            raise ValueError(
                f"compile cannot be used with the {relaxation} relaxation: every step computes a different sampled "
                "sub-network, which torch.compile would recompile at every step; set compile: false"
            )
        self.early_stop = (
            EigenvalueEarlyStop(
                eigenvalue_stop_window, eigenvalue_stop_delta, eigenvalue_stop_factor, eigenvalue_stop_start_epoch,
                every=hessian_eigenvalue_every,
            )
            if eigenvalue_early_stop else None
        )
        self.eigenvalue_history: list[dict[str, float]] = []
        self.selected_epoch: int | None = None
        self._sample_seed: int | None = sample_seed
        self.arch_gradient = build_architecture_gradient(order, hessian=hessian, epsilon=hessian_epsilon, xi=unrolled_lr)
        if grad_clip_includes_arch:
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
        self.genotype_history: list[dict[str, Any]] = []
        self._output_dir: Path | None = None
        self._last_val_batch: tuple[Tensor, Tensor] | None = None
        self._drawing: tuple[str, Any, Any] | None = None  # (cell text, figure, pixels) of the last drawn cell
        self._drawing_saved: tuple[Path, str] | None = None  # (file, cell text) last written

    # ------------------------------------------------------------------ parameters

    def arch_parameters(self) -> list[torch.nn.Parameter]:
        return self.network.arch_parameters()

    def weight_parameters(self) -> list[torch.nn.Parameter]:
        return self.network.weight_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.network(self._layout(x))

    def genotype(self) -> Any:
        """The derived cell: a :class:`Genotype` (DARTS space) or an ``NB201Arch`` (NAS-Bench-201)."""
        return self.network.derive()

    def selected_genotype(self) -> Any:
        """The search's answer: the genotype of the current α, or that of the epoch early stopping went back to.

        The one place where the answer is derived: ``genotype.json`` (``arch.txt`` on NAS-Bench-201), the
        summary printed at the end, TensorBoard, ``darts-lightning export-genotype`` and ``darts-lightning
        protocol`` all take it from here.
        """
        if self.selected_epoch is not None:
            for record in self.genotype_history:
                if record["epoch"] == self.selected_epoch:
                    arch = record["genotype"]
                    if not isinstance(arch, dict):
                        return type(self.genotype()).parse(arch)
                    # Import paths among the configured candidate ops are the configuration's own; others are refused.
                    own = all(op in self.network.op_names for op, _ in [*arch.get("normal", []), *arch.get("reduce", [])])
                    return Genotype.from_dict(arch, allow_import_paths=own, source="the search's genotype history")
        return self.genotype()

    # ------------------------------------------------------------------ schedules

    @property
    def relaxation(self):
        return self.network.relaxation

    def _epochs(self) -> int:
        return self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 50

    def auxiliary_skip_weight(self, epoch: int) -> float:
        """DARTS-'s linear decay of the auxiliary skip connection: β_t = (E − t) / E."""
        if not self.hparams.auxiliary_skip:
            return 0.0
        epochs = self._epochs()
        return max(epochs - epoch, 0) / epochs

    def beta_decay_weight(self, epoch: int) -> float:
        """β-DARTS's regularisation weight λ_t = beta_decay_max · t / E."""
        return self.hparams.beta_decay_max * epoch / self._epochs()

    def on_train_epoch_start(self) -> None:
        self.relaxation.update_schedule(self.current_epoch, self._epochs())
        self.relaxation.auxiliary_skip_weight = self.auxiliary_skip_weight(self.current_epoch)
        if getattr(self.relaxation, "tau", None) is not None:
            self.log("arch/temperature", float(self.relaxation.tau), on_step=False, on_epoch=True, sync_dist=True)
        if self.hparams.auxiliary_skip:
            self.log("arch/auxiliary_skip_weight", self.relaxation.auxiliary_skip_weight, on_step=False, on_epoch=True,
                     sync_dist=True)

    def _sample(self, phase: int, step: int | None = None) -> None:
        """Seed the sampling relaxations' noise with (sample seed, step, phase); ``step`` defaults to the global step."""
        self.relaxation.set_sample_key(self._sample_seed or 0, self.global_step if step is None else step, phase)

    def architecture_regularizer(self) -> Tensor | None:
        """The terms the architecture loss adds to L_val: the relaxation's (DrNAS's KL) and β-DARTS's
        β-decay λ_t · Σ_cells mean_edges logsumexp(α_edge) (Ye et al., CVPR 2022)."""
        terms = []
        for alpha in self.network.alphas().values():
            term = self.relaxation.regularizer(alpha)
            if term is not None:
                terms.append(term)
        weight = self.beta_decay_weight(self.current_epoch)
        if weight:
            terms.append(weight * sum(torch.logsumexp(a, dim=-1).mean() for a in self.network.alphas().values()))
        return sum(terms) if terms else None

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self):
        hp = self.hparams
        weight_optimizer = torch.optim.SGD(
            self.weight_parameters(), lr=hp.weight_lr, momentum=hp.weight_momentum, weight_decay=hp.weight_decay,
            nesterov=hp.weight_nesterov,
        )
        if hp.arch_optimizer == "sgd":  # SNAS's single-GPU path: plain SGD on α (train_search.py, line 268)
            arch_optimizer = torch.optim.SGD(self.arch_parameters(), lr=hp.arch_lr, weight_decay=hp.arch_weight_decay)
        else:
            arch_optimizer = torch.optim.Adam(
                self.arch_parameters(), lr=hp.arch_lr, betas=tuple(hp.arch_betas), weight_decay=hp.arch_weight_decay
            )
        epochs, offset = self._epochs(), hp.weight_lr_epoch_offset
        if offset == 0:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(weight_optimizer, T_max=epochs, eta_min=hp.weight_lr_min)
        else:
            if hp.weight_lr <= 0:
                raise ValueError(f"weight_lr_epoch_offset needs weight_lr > 0, got {hp.weight_lr}")
            lr, lr_min = hp.weight_lr, hp.weight_lr_min

            def factor(epoch: int) -> float:  # the closed form of the cosine, shifted by the offset
                shifted = min(epoch + offset, epochs)
                return (lr_min + (lr - lr_min) * (1 + math.cos(math.pi * shifted / epochs)) / 2) / lr

            scheduler = torch.optim.lr_scheduler.LambdaLR(weight_optimizer, factor)
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
        if self.hparams.compile and self.network._compiled_call_impl is None:
            self.network.compile()

    def on_fit_start(self) -> None:
        # DDP broadcasts the weights from rank 0 but α is outside its buckets: start every rank from rank 0's α.
        broadcast_(self.arch_parameters())
        if self._sample_seed is None:
            # An integer tensor holds the seed exactly on every backend (MPS has no float64).
            seed = torch.tensor([torch.initial_seed() % (2**31)], dtype=torch.long, device=self.device)
            broadcast_([seed])
            self._sample_seed = int(seed.item())
        self._nonfinite = None
        self._output_dir = None
        self.output_dir()
        check_precision(str(self.trainer.precision))

    #: The losses of a search step, numbered as the device-side record of the first non-finite one numbers them.
    _LOSSES: tuple[str, ...] = (
        "architecture (search-val)", "architecture (search-train)", "weight (search-train)", "joint (search-train)",
    )
    #: ([global step, epoch, batch, loss number], loss value) of the first non-finite loss, on the losses'
    #: device; step -1: none yet. Created by the first loss of a fit.
    _nonfinite: tuple[Tensor, Tensor] | None = None

    def _record_nonfinite(self, loss: Tensor, what: str, step: int, batch_idx: int) -> None:
        """Remember the first non-finite loss of the fit, without reading anything back from the device.

        ``if not torch.isfinite(loss)`` at every pass would make the host wait for the accelerator twice per
        search step. Instead the step, epoch, batch and loss of the first non-finite value are written
        into a small tensor on the loss's device (masked fills, queued like every other kernel), and
        :meth:`_raise_if_nonfinite` reads it at the steps Lightning logs (where the logged values are read
        anyway), at the end of every epoch, before a checkpoint is saved and at the end of training: the
        error names the first bad step even when it is found later.
        """
        loss = loss.detach()
        if self._nonfinite is None:
            self._nonfinite = (torch.full((4,), -1, dtype=torch.long, device=loss.device),
                               torch.zeros((), dtype=loss.dtype, device=loss.device))
        record, value = self._nonfinite
        first = torch.logical_not(torch.isfinite(loss)) & (record[0] < 0)
        for slot, number in enumerate((step, self.current_epoch, batch_idx, self._LOSSES.index(what))):
            record[slot].masked_fill_(first, number)
        value.copy_(torch.where(first, loss.to(value.dtype), value))

    def _raise_if_nonfinite(self) -> None:
        """Raise :class:`NonFiniteLossError` for the first non-finite loss recorded (one read from the device)."""
        if self._nonfinite is None:
            return
        record, value = self._nonfinite
        step, epoch, batch, what = record.tolist()
        if step < 0:
            return
        raise NonFiniteLossError(
            f"the {self._LOSSES[what]} loss is {float(value)} at global step {step} (epoch {epoch}, batch {batch}); "
            "the search diverged: lower the learning rates (model.weight_lr, model.arch_lr) or check the data"
        )

    def training_step(self, batch: dict[str, tuple[Tensor, Tensor]], batch_idx: int) -> None:
        x_train, y_train = batch["train"]
        x_val, y_val = batch["val"]
        x_train, x_val = self._layout(x_train), self._layout(x_val)
        weight_optimizer, arch_optimizer = self.optimizers()
        hp = self.hparams
        single_level = hp.arch_batch == "train"
        arch_moves = self.current_epoch >= hp.arch_warmup_epochs
        clip = hp.grad_clip if hp.grad_clip and hp.grad_clip > 0 else 0.0
        # The step's sample key, fixed before the weight optimizer's step increments global_step.
        step = self.global_step

        def reduced_arch_grads() -> list[Tensor]:
            # α is outside DDP's buckets: its gradient from manual_backward is averaged here.
            grads = [a.grad if a.grad is not None else torch.zeros_like(a) for a in self.arch_parameters()]
            all_reduce_mean_(grads)
            return grads

        def arch_step(grads: list[Tensor], loss: Tensor, batch_size: int) -> None:
            for alpha, grad in zip(self.arch_parameters(), grads):
                alpha.grad = grad
            if hp.arch_grad_clip > 0:  # SNAS: clip_grad_norm_(arch_parameters, 10.) (train_search.py, line 505)
                torch.nn.utils.clip_grad_norm_(self.arch_parameters(), hp.arch_grad_clip)
            if hp.grad_clip_includes_arch:
                for name, alpha in self.network.named_arch_parameters().items():
                    getattr(self, f"last_arch_grad_{name}").copy_(alpha.grad)
            arch_optimizer.optimizer.step()  # the raw optimizer: one search step = one global step
            arch_optimizer.optimizer.zero_grad(set_to_none=True)
            self.log("train/arch_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)

        def architecture_step() -> None:
            # α ← α − η_α · (estimate of ∇α L_val) on the search-val batch (search-train: single level).
            self._sample(0, step)
            arch_batch = (x_train, y_train) if single_level else (x_val, y_val)
            arch = self.arch_gradient.estimate(self.network, arch_batch, (x_train, y_train), weight_optimizer.optimizer)
            self._record_nonfinite(
                arch.loss, "architecture (search-train)" if single_level else "architecture (search-val)", step, batch_idx
            )
            regularizer = self.architecture_regularizer()
            if regularizer is not None:
                extra = torch.autograd.grad(regularizer, self.arch_parameters(), allow_unused=True)
                arch.grads = [g if e is None else g + e for g, e in zip(arch.grads, extra)]
                self.log("train/arch_regularizer", regularizer.detach(), on_step=False, on_epoch=True, sync_dist=True)
            all_reduce_mean_(arch.grads)
            arch_step(arch.grads, arch.loss, len(y_val))

        def weight_step() -> tuple[Tensor, Tensor]:
            # w ← w − η_w · ∇w L_train(w, α) on the search-train batch, α held constant. Single level: the
            # same sample as the architecture step, so that the two gradients are those of one joint loss.
            self._sample(0 if single_level else 1, step)
            with_arch = hp.grad_clip_includes_arch and clip > 0  # GDAS: α's gradient counts in the norm
            logits = self.network(x_train, detach_alpha=not with_arch)
            loss = F.cross_entropy(logits, y_train)
            self._record_nonfinite(loss, "weight (search-train)", step, batch_idx)
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

        if hp.joint_step:
            # SNAS (train_search.py, lines 489-513): one loss, one backward; the weights and α are clipped
            # separately and both optimizers step.
            self._sample(0, step)
            logits = self.network(x_train, detach_alpha=not arch_moves)
            loss = F.cross_entropy(logits, y_train)
            self._record_nonfinite(loss, "joint (search-train)", step, batch_idx)
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
        elif hp.weight_step_first:  # GDAS (GDAS.py, lines 49-69): the weights, then α
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
        if self.trainer.is_last_batch:
            self._last_val_batch = (x_val, y_val)
        # The step's one read from the device, at the steps Lightning logs (and reads the logged values) and at
        # the end of the epoch, before its genotype, validation and checkpoint.
        every = self.trainer.log_every_n_steps
        if self.trainer.is_last_batch or (every > 0 and (step + 1) % every == 0):
            self._raise_if_nonfinite()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # End-of-epoch work happens after the last batch, before validation and checkpointing, so that an
        # epoch-end checkpoint holds the stepped scheduler and the epoch's genotype.
        if self.trainer.is_last_batch:
            self._end_of_epoch()

    def _end_of_epoch(self) -> None:
        weight_optimizer, arch_optimizer = self.optimizers()
        # The learning rates, α's diagnostics and the eigenvalue are the same on every rank: sync_dist=True
        # averages equal values, once at epoch end (on_step=False), and keeps every rank's callback_metrics alike.
        self.log_dict(
            {"lr/weights": weight_optimizer.param_groups[0]["lr"], "lr/arch": arch_optimizer.param_groups[0]["lr"]},
            on_step=False, on_epoch=True, sync_dist=True,
        )
        self.lr_schedulers().step()
        if is_distributed():
            sync_batchnorm_statistics_(self.network)
        genotype = self.genotype()
        self.genotype_history.append({"epoch": self.current_epoch, "step": self.global_step, "genotype": _arch_record(genotype)})
        self.log_dict(self.architecture_diagnostics(), on_step=False, on_epoch=True, sync_dist=True)
        every = self.hparams.hessian_eigenvalue_every
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else None
        if eigenvalue_measured(self.current_epoch, every, max_epochs) and self._last_val_batch is not None:
            x, y = self._last_val_batch
            self._sample(phase=3)
            value = dominant_hessian_eigenvalue(self.network, x, y, weight_decay=self.hparams.arch_weight_decay)
            if is_distributed():  # every rank measured its own batch: the mean, in float64 as it was computed
                mean = torch.tensor([value], dtype=torch.float64, device=x.device)
                all_reduce_mean_([mean])
                value = float(mean)
            self.log("arch/hessian_eigenvalue", value, on_step=False, on_epoch=True, sync_dist=True)
            self.eigenvalue_history.append({"epoch": self.current_epoch, "eigenvalue": value})
            if self.early_stop is not None and self.selected_epoch is None:
                selected = self.early_stop.check(self.eigenvalue_history, max_epochs)
                if selected is not None:
                    self.selected_epoch = selected
                    self.trainer.should_stop = True
                    if self.trainer.is_global_zero:
                        print(
                            f"R-DARTS early stop at epoch {self.current_epoch}: the dominant eigenvalue grew by more than "
                            f"{self.early_stop.factor}x; the search returns the genotype of epoch {selected}"
                        )
        self._last_val_batch = None
        if self.trainer.is_global_zero:
            answer = self.selected_genotype()
            self._log_figures(answer)
            self._write_genotype_files(answer)

    # ------------------------------------------------------------------ validation

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self._sample(phase=2 + batch_idx)
        logits = self.network(self._layout(x), detach_alpha=True)
        self.val_accuracy(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        self.log("val/acc", self.val_accuracy, prog_bar=True)

    # ------------------------------------------------------------------ diagnostics and logging

    @torch.no_grad()
    def architecture_diagnostics(self) -> dict[str, float]:
        """softmax(α) of every edge and op, plus collapse diagnostics per cell type.

        * ``arch/<cell>/entropy``: mean entropy of softmax(α) over edges (ln(#ops) at initialisation);
        * ``arch/<cell>/margin``: mean gap between the two largest softmax weights of an edge (0 at start);
        * ``arch/normal/skip_connect``: skip connections in the derived normal cell (DARTS collapse shows
          as this count growing, Zela et al., ICLR 2020).
        """
        out: dict[str, float] = {}
        labels = self.network.edge_labels()
        derived = self.network.derived_ops(self.genotype())
        for cell, weights in self.network.cell_weights(detach=True).items():
            probs = weights.float().cpu()
            for e, label in enumerate(labels):
                for o, name in enumerate(self.network.op_names):
                    out[f"alpha/{cell}/{label}/{name}"] = float(probs[e, o])
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
            top2 = probs.topk(min(2, probs.shape[1]), dim=-1).values
            out[f"arch/{cell}/entropy"] = float(entropy.mean())
            out[f"arch/{cell}/margin"] = float((top2[:, 0] - top2[:, -1]).mean())
            out[f"arch/{cell}/skip_connect"] = float(derived[cell].count("skip_connect"))
        return out

    def _log_figures(self, genotype: Any) -> None:
        from pytorch_lightning.loggers import TensorBoardLogger

        from .visualize import alpha_heatmap, alpha_heatmaps

        for logger in self.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            writer = logger.experiment
            weights = {k: v.float().cpu() for k, v in self.network.cell_weights(detach=True).items()}
            labels, ops = self.network.edge_labels(), self.network.op_names
            if set(weights) == {"normal", "reduce"}:
                figure = alpha_heatmaps(weights["normal"], weights["reduce"], ops, labels)
            else:
                (name, w), = weights.items()
                figure = alpha_heatmap(w, ops, labels, title=name)
            writer.add_figure("alpha/heatmap", figure, self.current_epoch)
            writer.add_text("genotype", _arch_text(genotype), self.current_epoch)
            writer.add_image("genotype/cells", self._cell_drawing(genotype)[1], self.current_epoch, dataformats="HWC")

    def _cell_drawing(self, arch: Any) -> tuple[Any, Any]:
        """The drawing of a derived cell (a figure and its RGB pixels), redrawn only when the cell changed:
        drawing is most of the side work of an epoch, and the answer often stays the same for many epochs."""
        from .visualize import draw_genotype, draw_nb201_cell, figure_to_array

        key = _arch_text(arch)
        if self._drawing is None or self._drawing[0] != key:
            figure = draw_genotype(arch) if isinstance(arch, Genotype) else draw_nb201_cell(arch.ops)
            self._drawing = (key, figure, figure_to_array(figure))
        return self._drawing[1], self._drawing[2]

    def output_dir(self) -> Path:
        """Where genotype files go: the logger's directory of this run (or the trainer's root dir)."""
        if self._output_dir is None:
            # ``trainer.log_dir`` is a collective under DDP: every rank resolves it once, at fit start.
            self._output_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        return self._output_dir

    def _write_genotype_files(self, genotype: Any) -> None:
        directory = self.output_dir()
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(genotype, Genotype):
            genotype.save(directory / "genotype.json")
            drawing = directory / "genotype.png"
        else:
            atomic_write_text(directory / "arch.txt", str(genotype) + "\n")
            drawing = directory / "arch.png"
        if self._drawing_saved != (drawing, _arch_text(genotype)) or not drawing.is_file():
            from .visualize import save_png

            save_png(self._cell_drawing(genotype)[0], drawing)
            self._drawing_saved = (drawing, _arch_text(genotype))
        atomic_write_text(directory / "genotype_history.json", json.dumps(self.genotype_history, indent=1) + "\n")

    def on_train_end(self) -> None:
        # A run that stops between logging steps (max_steps, an interrupted epoch) reports a non-finite loss too.
        self._raise_if_nonfinite()

    def on_fit_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        genotype = self.selected_genotype()
        self._write_genotype_files(genotype)
        diagnostics = self.architecture_diagnostics()
        n_ops = len(self.network.op_names)
        val_acc = self.trainer.callback_metrics.get("val/acc")
        summary = [
            f"derived genotype: {_arch_text(genotype)}",
            f"written to: {self.output_dir() / ('genotype.json' if isinstance(genotype, Genotype) else 'arch.txt')}",
            "how far alpha moved (at initialisation: entropy {:.3f}, margin 0.000):".format(math.log(n_ops)),
        ]
        for cell in self.network.cell_weights():
            summary.append(
                f"  {cell:6s} entropy {diagnostics[f'arch/{cell}/entropy']:.3f}, margin {diagnostics[f'arch/{cell}/margin']:.3f}, "
                f"skip_connect in derived cell {int(diagnostics[f'arch/{cell}/skip_connect'])}"
            )
        if val_acc is not None:
            summary.append(f"supernet search-val accuracy: {float(val_acc):.4f}")
        if self.selected_epoch is not None:
            summary.append(f"early-stopped: the genotype is that of epoch {self.selected_epoch}")
        print("\n".join(summary))

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._raise_if_nonfinite()  # never save the state of a diverged search
        record_module(self, checkpoint)
        checkpoint["search_space"] = self.network.space_signature()
        checkpoint["genotype_history"] = list(self.genotype_history)
        checkpoint["eigenvalue_history"] = list(self.eigenvalue_history)
        checkpoint["selected_epoch"] = self.selected_epoch
        checkpoint["sample_seed"] = self._sample_seed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_resume(self, checkpoint, datamodule=self._trainer.datamodule if self._trainer is not None else None)
        self.genotype_history = list(checkpoint.get("genotype_history", []))
        self.eigenvalue_history = list(checkpoint.get("eigenvalue_history", []))
        self.selected_epoch = checkpoint.get("selected_epoch")
        if checkpoint.get("sample_seed") is not None:
            self._sample_seed = int(checkpoint["sample_seed"])
