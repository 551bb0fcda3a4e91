"""Relaxations of the mixed edge: how architecture parameters α become a mixture of candidate ops.

A relaxation is a strategy object that the mixed edges of a supernet share. It answers:

* :meth:`Relaxation.edge_weights`: which mixing weights the cells use in this forward pass, from α
  (DARTS: ``softmax(α)`` per edge, eq. 1 of Liu et al., ICLR 2019; GDAS: a hard Gumbel-softmax sample;
  SNAS: a soft one; DrNAS: a Dirichlet sample);
* :meth:`Relaxation.expected_weights`: the deterministic weights that are logged (softmax(α); the
  Dirichlet mean for DrNAS) and :meth:`Relaxation.derivation_weights`, those the genotype is derived
  from (softmax(α) for every method, as in each method's published code);
* :meth:`Relaxation.mix`: how one edge combines its ops given its row of weights (the weighted sum of
  every op's output; GDAS computes the sampled op only);
* :attr:`Relaxation.partial_channels`: PC-DARTS's partial channel connections (Xu et al., ICLR 2020):
  only ``1/K`` of an edge's channels go through the ops, the rest bypass them
  (:meth:`darts_lightning.edges.MixedEdge.forward` does the split and the channel shuffle).

Sampling relaxations draw their noise from a generator seeded by :meth:`Relaxation.set_sample_key`
with ``(seed, global step, phase)``: every DDP rank draws the same sample, a resumed search draws the
samples an uninterrupted one would, and every forward pass of one phase (the several passes of a
second-order architecture step) sees the same sample.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import Registry
from .validation import check_choice, check_keywords, check_range

if TYPE_CHECKING:
    from .edges import MixedEdge

__all__ = [
    "Relaxation", "SoftmaxRelaxation", "GumbelRelaxation", "DirichletRelaxation", "SinglePathRelaxation",
    "register_relaxation", "list_relaxations", "build_relaxation", "channel_shuffle", "temperature_schedule",
    "TEMPERATURE_SCHEDULES",
]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet, Zhang et al., CVPR 2018).

    PC-DARTS shuffles an edge's output so that a different quarter of the channels goes through the
    ops at the next edge.
    """
    b, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"cannot shuffle {c} channels into {groups} groups")
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


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


class Relaxation:
    """Base class of the mixed-edge relaxations.

    Args:
        partial_channels: K of PC-DARTS: ``1/K`` of every mixed edge's channels go through its ops (1: all).
    """

    name: str = "base"
    #: leaves ops of some edges uncomputed in a step (DDP then needs ``find_unused_parameters``)
    computes_subset: bool = False

    def __init__(self, partial_channels: int = 1) -> None:
        check_range("partial_channels", partial_channels, 1, integer=True, hint="K of PC-DARTS; 1: every channel")
        self.partial_channels = int(partial_channels)
        self.auxiliary_skip_weight = 0.0
        self._sample_key: tuple[int, int, int] = (0, 0, 0)

    # ------------------------------------------------------------------ what the cells use

    def edge_weights(self, alpha: Tensor, name: str = "alpha") -> Tensor:
        """Mixing weights ``[edges, ops]`` for one forward pass, from the logits ``alpha`` of one cell type
        (``name`` tells the cell types apart when sampling)."""
        raise NotImplementedError

    def expected_weights(self, alpha: Tensor) -> Tensor:
        """Deterministic weights ``[edges, ops]`` that are logged (default: ``softmax(α)``)."""
        return torch.softmax(alpha, dim=-1)

    def derivation_weights(self, alpha: Tensor) -> Tensor:
        """The weights the genotype is derived from (``softmax(α)``, as every method's published code does)."""
        return torch.softmax(alpha, dim=-1)

    def mix(self, edge: "MixedEdge", x: Tensor, weights: Tensor) -> Tensor:
        """The output of ``edge`` on ``x`` given its weight row ``weights`` ``[ops]``.

        A relaxation whose :meth:`sampled_columns` names one op per edge also takes that op's column as
        the keyword ``column`` (a host integer), so that it never reads the weights back from the device.
        """
        raise NotImplementedError

    def sampled_columns(self, name: str) -> list[int] | None:
        """The op column sampled for every edge (row) by the last :meth:`edge_weights` call for the cell
        type ``name``, known on the host; ``None`` for relaxations that mix every op."""
        return None

    def op_channels(self, channels: int) -> int:
        """How many channels the candidate ops of an edge carrying ``channels`` channels see."""
        if channels % self.partial_channels:
            raise ValueError(
                f"partial channel connections with K={self.partial_channels} need a channel count divisible by K, "
                f"but an edge carries {channels} channels; choose channels (model.channels) divisible by K"
            )
        return channels // self.partial_channels

    def regularizer(self, alpha: Tensor) -> Tensor | None:
        """An extra term of the architecture loss for ``alpha`` (DrNAS's KL term), or ``None``."""
        return None

    # ------------------------------------------------------------------ schedules and sampling

    def update_schedule(self, epoch: int, epochs: int) -> None:
        """Called at the start of every epoch (temperature annealing)."""

    def set_sample_key(self, seed: int, step: int, phase: int) -> None:
        """Seed the noise of the following forward passes: the same key draws the same sample."""
        self._sample_key = (int(seed), int(step), int(phase))

    def sample_seed(self, name: str) -> int:
        """The seed of the noise for the current sample key and cell type ``name``."""
        seed, step, phase = self._sample_key
        return ((seed * 1_000_003 + step) * 7919 + phase * 104_729 + zlib.crc32(name.encode())) % (2**63 - 1)

    def generator(self, name: str) -> torch.Generator:
        """A CPU generator seeded with :meth:`sample_seed`."""
        return torch.Generator().manual_seed(self.sample_seed(name))

    def describe(self) -> dict:
        """What a checkpoint records of this relaxation (it must match to resume)."""
        return {"name": self.name, "partial_channels": self.partial_channels}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(partial_channels={self.partial_channels})"


def _sampling_dtype(alpha: Tensor) -> torch.dtype:
    """The dtype a sample for ``alpha`` is computed in on the host: α's own, at least float32."""
    return torch.promote_types(alpha.dtype, torch.float32)


def _weighted_sum(edge: "MixedEdge", x: Tensor, weights: Tensor) -> Tensor:
    out = None
    for _, term in edge.weighted_outputs(x, weights):
        out = term if out is None else out + term
    return edge.zeros(x) if out is None else out


class SoftmaxRelaxation(Relaxation):
    """DARTS's continuous relaxation: ō(x) = Σ_o softmax(α)_o · o(x) (Liu et al., eq. 1).

    With ``partial_channels=4`` this is PC-DARTS's mixed op (registered as ``pcdarts``). The ``none``
    op is never called: its output is zero, so it only takes softmax mass.
    """

    name = "darts"

    def edge_weights(self, alpha: Tensor, name: str = "alpha") -> Tensor:
        return torch.softmax(alpha, dim=-1)

    def mix(self, edge: "MixedEdge", x: Tensor, weights: Tensor) -> Tensor:
        return _weighted_sum(edge, x, weights)


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
    the host (:meth:`sampled_columns`): :meth:`mix` picks it without reading the weights back from an
    accelerator. Sampling on the host reads α from the device once per cell type and forward pass (a
    device-to-host copy, and its transpose in the backward pass): for GDAS the host has to know which op
    each edge computes anyway; the copy of the weights back to the device does not wait for the device.
    """

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
        self._columns: dict[str, list[int]] = {}

    def update_schedule(self, epoch: int, epochs: int) -> None:
        self.tau = temperature_schedule(epoch, epochs, self.tau_max, self.tau_min, self.schedule)

    @staticmethod
    def gumbel_noise(shape: torch.Size, generator: torch.Generator) -> Tensor:
        """Standard Gumbel noise g = −log E, E ~ Exp(1) (infinite when E underflows to 0)."""
        return -torch.empty(shape).exponential_(generator=generator).log()

    def edge_weights(self, alpha: Tensor, name: str = "alpha") -> Tensor:
        generator = self.generator(name)
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
                if self.hard:
                    self._columns[name] = index.squeeze(-1).tolist()  # read on the CPU, before the copy
                # One copy per cell type and forward pass: every tensor entering the edges' arithmetic
                # is on α's device, in α's dtype (a host-to-device copy that need not wait for the device).
                return weights.to(alpha.device, alpha.dtype, non_blocking=True)
        raise FloatingPointError(
            f"{self.max_draws} Gumbel draws in a row gave non-finite weights (alpha finite: "
            f"{bool(torch.isfinite(alpha).all())}, tau={self.tau}); lower the architecture learning rate"
        )

    def sampled_columns(self, name: str) -> list[int] | None:
        return self._columns.get(name) if self.hard else None

    def mix(self, edge: "MixedEdge", x: Tensor, weights: Tensor, column: int | None = None) -> Tensor:
        if not self.hard:
            return _weighted_sum(edge, x, weights)
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

    def __init__(self, kl_weight: float = 0.0, prior: float = 1.0, partial_channels: int = 1) -> None:
        super().__init__(partial_channels)
        check_range("kl_weight", kl_weight, 0)
        check_range("prior", prior, 0, low_open=True, hint="the concentration of DrNAS's Dirichlet prior")
        self.kl_weight, self.prior = float(kl_weight), float(prior)

    @staticmethod
    def concentration(alpha: Tensor) -> Tensor:
        return F.elu(alpha) + 1.0

    def edge_weights(self, alpha: Tensor, name: str = "alpha") -> Tensor:
        # Sampled on the CPU (the same draw on every device and rank), in α's dtype (at least fp32).
        concentration = self.concentration(alpha.to("cpu", _sampling_dtype(alpha)))
        # torch's Dirichlet sampler takes no generator: draw from the global CPU generator, forked and seeded.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.sample_seed(name))
            weights = torch.distributions.Dirichlet(concentration).rsample()
        return weights.to(alpha.device, alpha.dtype, non_blocking=True)

    def expected_weights(self, alpha: Tensor) -> Tensor:
        concentration = self.concentration(alpha)
        return concentration / concentration.sum(dim=-1, keepdim=True)

    def mix(self, edge: "MixedEdge", x: Tensor, weights: Tensor) -> Tensor:
        return _weighted_sum(edge, x, weights)

    def regularizer(self, alpha: Tensor) -> Tensor | None:
        if self.kl_weight == 0:
            return None
        concentration = self.concentration(alpha)
        prior = torch.distributions.Dirichlet(torch.full_like(concentration, self.prior))
        kl = torch.distributions.kl_divergence(torch.distributions.Dirichlet(concentration), prior)
        return self.kl_weight * kl.sum()

    def describe(self) -> dict:
        return {**super().describe(), "kl_weight": self.kl_weight, "prior": self.prior}


class SinglePathRelaxation(Relaxation):
    """Single-path weight sharing: every mixed edge computes only the op of one sampled architecture.

    Random search with weight sharing (Li & Talwalkar, "Random Search and Reproducibility for Neural
    Architecture Search", UAI 2019) and single-path one-shot NAS (Guo et al., ECCV 2020) train a supernet
    by sampling one architecture per step and running only its ops. Mixing every op, as DARTS does, would
    cost all ops' compute and train them on each other's outputs; one op per edge trains the weights as
    the sampled network would use them.

    α is not read. The path is installed with :meth:`use_path`: for each architecture tensor the network
    passes to :meth:`edge_weights` (matched by identity), one row per edge that is one-hot on the chosen
    op's column, or all zeros for an edge the architecture does not have (the DARTS cell keeps two of
    the dense edges into each node). :meth:`mix` then calls the chosen op only: ``none`` gives the zeros
    of :meth:`MixedEdge.zeros` (as the fixed ``none`` op does), an absent edge gives zeros that are not
    connected to the input (the edge does not exist in the sampled network, so nothing upstream is
    trained through it), and the op's output is used unscaled.
    """

    name = "single_path"
    computes_subset = True

    def __init__(self) -> None:
        super().__init__()
        self._path: list[tuple[Tensor, Tensor]] = []

    @contextmanager
    def use_path(self, rows: Sequence[tuple[Tensor, Tensor]]) -> Iterator[None]:
        """Run the network on one path: ``rows`` pairs each architecture tensor with its ``[edges, ops]``
        one-hot rows. Keep the rows on the CPU: :meth:`mix` reads the chosen column from them."""
        previous = self._path
        self._path = list(rows)
        try:
            yield
        finally:
            self._path = previous

    def edge_weights(self, alpha: Tensor, name: str = "alpha") -> Tensor:
        for key, rows in self._path:
            if key is alpha:
                return rows
        raise RuntimeError(
            "the single-path relaxation has no path for this architecture parameter: run the network inside "
            "relaxation.use_path(...) (darts_lightning.weight_sharing.SinglePathSupernet does this every step)"
        )

    def mix(self, edge: "MixedEdge", x: Tensor, weights: Tensor) -> Tensor:
        column = int(torch.argmax(weights))
        if float(weights[column]) == 0.0:
            return torch.zeros_like(x[:, :, :: edge.stride, :: edge.stride])
        return edge.op_output(column, x)


_RELAXATIONS: Registry[Relaxation] = Registry("relaxation")


def register_relaxation(name: str, factory: Callable[..., Relaxation]) -> None:
    """Register a relaxation so that configs can name it (keyword arguments come from ``relaxation_args``)."""
    _RELAXATIONS.register(name, factory)


def list_relaxations() -> list[str]:
    return _RELAXATIONS.names()


def build_relaxation(relaxation: str | Relaxation, **kwargs) -> Relaxation:
    """A relaxation instance from its registered name and keyword arguments (or the instance itself)."""
    if isinstance(relaxation, Relaxation):
        if kwargs:
            raise ValueError("relaxation arguments are given with a relaxation name, not with an instance")
        return relaxation
    factory = _RELAXATIONS.get(relaxation)
    check_keywords(f"relaxation_args of the relaxation {relaxation!r}", kwargs, factory)
    return factory(**kwargs)


def _pcdarts(partial_channels: int = 4) -> SoftmaxRelaxation:
    relaxation = SoftmaxRelaxation(partial_channels=partial_channels)
    relaxation.name = "pcdarts"
    return relaxation


register_relaxation("darts", SoftmaxRelaxation)
register_relaxation("pcdarts", _pcdarts)
def _gdas(tau_max: float = 10.0, tau_min: float = 0.1, schedule: str = "linear", partial_channels: int = 1,
          max_draws: int = 100) -> GumbelRelaxation:
    return GumbelRelaxation(True, tau_max, tau_min, schedule, partial_channels, max_draws)


def _snas(tau_max: float = 10.0, tau_min: float = 0.1, schedule: str = "linear", partial_channels: int = 1,
          max_draws: int = 100) -> GumbelRelaxation:
    return GumbelRelaxation(False, tau_max, tau_min, schedule, partial_channels, max_draws)


register_relaxation("gdas", _gdas)
register_relaxation("snas", _snas)
register_relaxation("drnas", DirichletRelaxation)
register_relaxation("single_path", SinglePathRelaxation)
