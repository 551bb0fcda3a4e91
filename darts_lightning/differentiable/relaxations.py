"""The sampling relaxations of the DARTS family and the relaxation registry.

The contract (:class:`~darts_lightning.spaces.mixing.Relaxation`) and DARTS's softmax relaxation live with
the mixed edges in :mod:`darts_lightning.spaces.mixing`. Here:

* ``pcdarts``: the softmax relaxation over ``1/K`` of every edge's channels (Xu et al., ICLR 2020);
* ``gdas`` and ``snas``: Gumbel-softmax samples, hard or soft (:class:`GumbelRelaxation`);
* ``drnas``: Dirichlet samples (:class:`DirichletRelaxation`).

Sampling relaxations draw their noise from the generator the supernet hands them, seeded from
``(seed, global step, phase)`` (:meth:`darts_lightning.spaces.supernet.Supernet.set_sample_key`): every
DDP rank draws the same sample, a resumed search draws the samples an uninterrupted one would, and every
forward pass of one phase (the several passes of a second-order architecture step) sees the same sample.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from darts_lightning.spaces.mixing import EdgeOps, Mixing, Relaxation, SoftmaxRelaxation, weighted_sum
from darts_lightning.utils.registry import Registry
from darts_lightning.utils.validation import check_choice, check_keywords, check_range

__all__ = [
    "Relaxation", "SoftmaxRelaxation", "PCDartsRelaxation", "GumbelRelaxation", "GDASRelaxation", "SNASRelaxation",
    "DirichletRelaxation", "RELAXATIONS",
    "register_relaxation", "list_relaxations", "build_relaxation", "temperature_schedule", "TEMPERATURE_SCHEDULES",
]


TEMPERATURE_SCHEDULES: tuple[str, ...] = ("linear", "exponential", "snas")


def temperature_schedule(epoch: int, epochs: int, start: float, end: float, kind: str = "linear") -> float:
    """The temperature of epoch ``epoch`` (counted from 0) of ``epochs``.

    ``linear`` is GDAS's schedule, from ``start`` at the first epoch to ``end`` at the last:
    τ = τ_max − (τ_max − τ_min) · epoch / (epochs − 1) (AutoDL-Projects, commit f46486e,
    exps/NAS-Bench-201-algos/GDAS.py, line 238). ``exponential`` decays geometrically between the same end
    points. ``snas`` is SNAS's: its ``Temp_Scheduler`` (SNAS-Series, commit 9a43adb, SNAS/utils.py,
    lines 128-148) is stepped once when built and again at the start of every epoch
    (SNAS/train_search.py, line 325), so epoch e trains at τ = τ_max − (τ_max − τ_min) · (e + 1) / epochs
    and the last epoch at τ_min (the released code fixes ``epochs`` to 150).
    """
    if kind == "snas":
        progress = min(max((epoch + 1) / max(epochs, 1), 0.0), 1.0)
    else:
        progress = min(max(epoch / max(epochs - 1, 1), 0.0), 1.0)
    if kind in ("linear", "snas"):
        return start - (start - end) * progress
    if kind == "exponential":
        return start * (end / start) ** progress
    raise ValueError(f"temperature schedule must be one of {', '.join(TEMPERATURE_SCHEDULES)}, got {kind!r}")


def _sampling_dtype(alpha: Tensor) -> torch.dtype:
    """The dtype a sample for ``alpha`` is computed in on the host: α's own, at least float32."""
    return torch.promote_types(alpha.dtype, torch.float32)


class GumbelRelaxation(Relaxation):
    """Gumbel-softmax sampling of one op per edge, with an annealed temperature τ.

    ``hard=True`` is GDAS (Dong & Yang, "Searching for a Robust Neural Architecture in Four GPU Hours",
    CVPR 2019): h = one_hot(argmax(p)) − sg(p) + p with p = softmax((log softmax(α) + g) / τ), g ~ Gumbel(0, 1).
    The forward value is one-hot, so :meth:`mix` computes only the sampled op, scaled by its weight h_i
    (value 1); the straight-through term gives every α of the edge a gradient through
    ∂p_i/∂α_j = p_i (δ_ij − p_j) / τ. A draw with non-finite values is drawn again.

    ``hard=False`` is SNAS (Xie et al., "Stochastic Neural Architecture Search", ICLR 2019): the
    relaxed sample p itself weights every op, as DARTS's softmax does.

    τ moves from ``tau_max`` at the first epoch to ``tau_min`` at the last (:func:`temperature_schedule`;
    ``schedule="snas"`` is SNAS's one-epoch-ahead variant).

    The sample is drawn on the CPU from a seeded generator (the same draw on every device and rank) and
    the weights are returned on α's device and in α's dtype, so that they enter the edges' arithmetic
    (edge-normalisation scales, op outputs) where those live. GDAS's sampled op of every edge stays on
    the host (:attr:`Mixing.columns`): :meth:`mix` picks it without reading the weights back from an
    accelerator. Sampling on the host reads α from the device once per cell type and forward pass (a
    device-to-host copy, and its transpose in the backward pass): for GDAS the host has to know which op
    each edge computes anyway; the copy of the weights back to the device does not wait for the device.
    """

    samples = True

    def __init__(
        self,
        hard: bool = True,
        tau_max: float = 10.0,
        tau_min: float = 0.1,
        schedule: str = "linear",
        partial_channels: int = 1,
        max_draws: int = 100,
    ) -> None:
        super().__init__(partial_channels)
        if not tau_max >= tau_min > 0:
            raise ValueError(f"temperatures must satisfy tau_max >= tau_min > 0, got tau_max={tau_max}, tau_min={tau_min}")
        check_choice("schedule", schedule, TEMPERATURE_SCHEDULES)
        check_range("max_draws", max_draws, 1, integer=True)
        self.hard = bool(hard)
        self.name = "gdas" if self.hard else "snas"
        self.computes_subset = self.hard
        self.tau_max, self.tau_min, self.schedule = float(tau_max), float(tau_min), schedule
        self.tau = self.tau_max
        self.max_draws = max_draws

    def update_schedule(self, epoch: int, epochs: int) -> None:
        self.tau = temperature_schedule(epoch, epochs, self.tau_max, self.tau_min, self.schedule)

    def schedule_values(self) -> dict[str, float]:
        return {"temperature": self.tau}

    @staticmethod
    def gumbel_noise(shape: torch.Size, generator: torch.Generator) -> Tensor:
        """Standard Gumbel noise g = −log E, E ~ Exp(1) (infinite when E underflows to 0)."""
        return -torch.empty(shape).exponential_(generator=generator).log()

    def mixing(self, alpha: Tensor, generator: torch.Generator | None) -> Mixing:
        if generator is None:
            raise ValueError(f"the {self.name} relaxation samples: it needs the supernet's seeded generator")
        # Sampled on the CPU from a seeded generator: the same draw on every device and rank. Computed in α's
        # dtype (at least fp32: a bf16 softmax would blur the sample), so that a float64 search keeps its
        # precision through the straight-through term; the float32 noise is the same draw in every dtype.
        logits = torch.log_softmax(alpha.to("cpu", _sampling_dtype(alpha)), dim=-1)
        for _ in range(self.max_draws):
            gumbel = self.gumbel_noise(alpha.shape, generator).to(logits.dtype)
            probs = torch.softmax((logits + gumbel) / self.tau, dim=-1)
            if self.hard:
                index = probs.argmax(dim=-1, keepdim=True)
                one_hot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
                weights = one_hot - probs.detach() + probs
            else:
                weights = probs
            if bool(torch.isfinite(weights).all()):
                columns = index.squeeze(-1).tolist() if self.hard else None  # read on the CPU, before the copy
                # One copy per cell type and forward pass: every tensor entering the edges' arithmetic
                # is on α's device, in α's dtype (a host-to-device copy that need not wait for the device).
                return Mixing(weights.to(alpha.device, alpha.dtype, non_blocking=True), columns)
        raise FloatingPointError(
            f"{self.max_draws} Gumbel draws in a row gave non-finite weights (alpha finite: "
            f"{bool(torch.isfinite(alpha).all())}, tau={self.tau}); lower the architecture learning rate"
        )

    def mix(self, edge: EdgeOps, x: Tensor, weights: Tensor, column: int | None = None) -> Tensor:
        if not self.hard:
            return weighted_sum(edge, x, weights)
        if column is None:  # called without the host-side sample: read it from the weights
            column = int(torch.argmax(weights))
        return weights[column] * edge.op_output(column, x)

    def describe(self) -> dict:
        return {**super().describe(), "tau_max": self.tau_max, "tau_min": self.tau_min, "schedule": self.schedule}


class DirichletRelaxation(Relaxation):
    """DrNAS (Chen et al., "DrNAS: Dirichlet Neural Architecture Search", ICLR 2021).

    The mixing weights of an edge are a reparameterised sample θ ~ Dir(β) with concentration
    β = ELU(α) + 1 > 0 (the pathwise gradient of the Dirichlet sample reaches α); every op is weighted
    by θ as in DARTS. The mean β / Σβ is logged; the genotype is derived from softmax(α), as DrNAS's code
    does (the same op per edge; edges may rank differently).

    Regularisation: DrNAS's default is an L2 penalty on α, given to Adam as weight decay (the search's
    ``arch_weight_decay``, 1e-3). Its alternative, ``kl_weight > 0``, adds
    ``kl_weight · Σ_edges KL(Dir(β) ‖ Dir(prior · 1))`` to the architecture loss (then set
    ``arch_weight_decay: 0``, as DrNAS does).
    """

    name = "drnas"
    samples = True

    def __init__(self, kl_weight: float = 0.0, prior: float = 1.0, partial_channels: int = 1) -> None:
        super().__init__(partial_channels)
        check_range("kl_weight", kl_weight, 0)
        check_range("prior", prior, 0, low_open=True, hint="the concentration of DrNAS's Dirichlet prior")
        self.kl_weight, self.prior = float(kl_weight), float(prior)

    @staticmethod
    def concentration(alpha: Tensor) -> Tensor:
        return F.elu(alpha) + 1.0

    def mixing(self, alpha: Tensor, generator: torch.Generator | None) -> Mixing:
        if generator is None:
            raise ValueError(f"the {self.name} relaxation samples: it needs the supernet's seeded generator")
        # Sampled on the CPU (the same draw on every device and rank), in α's dtype (at least fp32).
        concentration = self.concentration(alpha.to("cpu", _sampling_dtype(alpha)))
        # torch's Dirichlet sampler takes no generator: draw from the global CPU generator, forked and seeded
        # by the generator's own seed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(generator.initial_seed())
            weights = torch.distributions.Dirichlet(concentration).rsample()
        return Mixing(weights.to(alpha.device, alpha.dtype, non_blocking=True))

    def expected_weights(self, alpha: Tensor) -> Tensor:
        concentration = self.concentration(alpha)
        return concentration / concentration.sum(dim=-1, keepdim=True)

    def mix(self, edge: EdgeOps, x: Tensor, weights: Tensor, column: int | None = None) -> Tensor:
        return weighted_sum(edge, x, weights)

    def regularizer(self, alpha: Tensor) -> Tensor | None:
        if self.kl_weight == 0:
            return None
        concentration = self.concentration(alpha)
        prior = torch.distributions.Dirichlet(torch.full_like(concentration, self.prior))
        kl = torch.distributions.kl_divergence(torch.distributions.Dirichlet(concentration), prior)
        return self.kl_weight * kl.sum()

    def describe(self) -> dict:
        return {**super().describe(), "kl_weight": self.kl_weight, "prior": self.prior}


RELAXATIONS: Registry[Relaxation] = Registry("relaxation")


def register_relaxation(name: str, factory: Callable[..., Relaxation] | None = None):
    """Register a relaxation (a :class:`Relaxation` subclass or a factory) so that configs can name it;
    without ``factory``, a decorator."""
    return RELAXATIONS.register(name) if factory is None else RELAXATIONS.register(name, factory)


def list_relaxations() -> list[str]:
    return RELAXATIONS.names()


def build_relaxation(relaxation: str | Relaxation, **kwargs: object) -> Relaxation:
    """A relaxation instance from its registered name and keyword arguments (or the instance itself)."""
    if isinstance(relaxation, Relaxation):
        if kwargs:
            raise ValueError("relaxation arguments are given with a relaxation name, not with an instance")
        return relaxation
    factory = RELAXATIONS.get(relaxation)
    check_keywords(f"arguments of the relaxation {relaxation!r}", kwargs, factory)
    return factory(**kwargs)


class PCDartsRelaxation(SoftmaxRelaxation):
    """PC-DARTS's mixed op (Xu et al., ICLR 2020): DARTS's softmax over ``1/K`` of every edge's channels
    (K = ``partial_channels``, 4 in the paper's CIFAR-10 search)."""

    name = "pcdarts"

    def __init__(self, partial_channels: int = 4) -> None:
        super().__init__(partial_channels)


class GDASRelaxation(GumbelRelaxation):
    """GDAS: hard Gumbel-softmax samples, one op computed per edge (see :class:`GumbelRelaxation`)."""

    def __init__(self, tau_max: float = 10.0, tau_min: float = 0.1, schedule: str = "linear",
                 partial_channels: int = 1, max_draws: int = 100) -> None:
        super().__init__(True, tau_max, tau_min, schedule, partial_channels, max_draws)


class SNASRelaxation(GumbelRelaxation):
    """SNAS: soft Gumbel-softmax samples weighting every op (see :class:`GumbelRelaxation`)."""

    def __init__(self, tau_max: float = 10.0, tau_min: float = 0.1, schedule: str = "linear",
                 partial_channels: int = 1, max_draws: int = 100) -> None:
        super().__init__(False, tau_max, tau_min, schedule, partial_channels, max_draws)


register_relaxation("darts", SoftmaxRelaxation)
register_relaxation("pcdarts", PCDartsRelaxation)
register_relaxation("gdas", GDASRelaxation)
register_relaxation("snas", SNASRelaxation)
register_relaxation("drnas", DirichletRelaxation)
