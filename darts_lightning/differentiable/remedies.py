"""Remedies for the collapse of differentiable search, as parts a search is composed of.

DARTS is known to collapse towards parameter-free ops (skip connections) as the search goes on (Zela et al.,
ICLR 2020; Chu et al., ICLR 2021). A :class:`Remedy` changes the search through small hooks, and a search
takes any list of them (``model.init_args.remedies`` in YAML):

* :meth:`Remedy.arch_moves`: whether α is stepped in an epoch (a warm-up holds it);
* :meth:`Remedy.on_epoch_start`: set the supernet's per-epoch state, returning values to log (``arch/<key>``);
* :meth:`Remedy.arch_loss`: a term added to the architecture loss;
* :attr:`Remedy.adds_auxiliary_skip`: the supernet is built with an auxiliary skip connection on every
  mixed edge;
* :meth:`Remedy.perturb_weight_step`: a context in which the weight step's forward pass runs with perturbed
  mixing weights (the architecture step never sees the perturbation);
* :meth:`Remedy.attach`: called once with the search's space, supernet and data shape;
  :meth:`Remedy.diagnostics`: values logged with the architecture at every epoch's end.

Shipped: :class:`ArchWarmup` (PC-DARTS), :class:`AuxiliarySkip` (DARTS-), :class:`BetaDecay` (β-DARTS),
:class:`RandomSmoothing` (SDARTS-RS) and :class:`AdversarialPerturbation` (SDARTS-ADV); the budget of a hardware-aware search,
:class:`~darts_lightning.differentiable.budget.CostBudget`, is a remedy too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from darts_lightning.spaces.base import SearchSpace
from darts_lightning.spaces.mixing import EdgeOps, Mixing, Relaxation
from darts_lightning.spaces.supernet import Supernet
from darts_lightning.utils.components import Component
from darts_lightning.utils.distributed import all_reduce_mean_
from darts_lightning.utils.registry import Registry
from darts_lightning.utils.validation import check_range

__all__ = [
    "Remedy", "ArchWarmup", "AuxiliarySkip", "BetaDecay", "RandomSmoothing", "AdversarialPerturbation",
    "clip_rows_", "random_perturbation", "pgd_perturbation", "REMEDIES", "register_remedy", "list_remedies",
]


class Remedy(Component):
    """Base class: every hook does nothing."""

    #: the supernet needs DARTS-'s auxiliary skip connection on every mixed edge
    adds_auxiliary_skip: bool = False
    #: :meth:`perturb_weight_step` perturbs the weight step (SDARTS), which the joint step does not have
    perturbs_weight_step: bool = False

    def arch_moves(self, epoch: int) -> bool:
        """Whether the architecture parameters are stepped in ``epoch`` (counted from 0)."""
        return True

    def on_epoch_start(self, supernet: Supernet, epoch: int, epochs: int) -> dict[str, float]:
        """Called at the start of every epoch of ``epochs``; returns values to log as ``arch/<key>``."""
        return {}

    def arch_loss(self, supernet: Supernet, epoch: int, epochs: int) -> Tensor | None:
        """A term of the architecture loss in ``epoch`` of ``epochs`` (``None``: none)."""
        return None

    def attach(self, space: SearchSpace[Any], supernet: Supernet, *, in_channels: int, num_classes: int,
               image_size: int) -> None:
        """Called once when the search is built, with its space, its supernet and the data's shape (a budget
        prices the space's network here)."""

    def diagnostics(self, supernet: Supernet, answer: Any) -> dict[str, float]:
        """Values logged with the architecture at the end of every epoch (``answer``: the derived one), as
        ``arch/<key>``."""
        return {}

    def perturb_weight_step(
        self, supernet: Supernet, batch: tuple[Tensor, Tensor], epoch: int, epochs: int
    ) -> AbstractContextManager[None]:
        """A context in which the forward passes of ``supernet`` use perturbed mixing weights, entered by the
        weight step on its search-train ``batch`` after the step's sample key is set (default: none)."""
        return nullcontext()


REMEDIES: Registry[Remedy] = Registry("remedy", plural="remedies")


def register_remedy(name: str, factory: type[Remedy] | None = None):
    """Register a remedy by name; without ``factory``, a decorator."""
    return REMEDIES.register(name) if factory is None else REMEDIES.register(name, factory)


def list_remedies() -> list[str]:
    return REMEDIES.names()


@register_remedy("arch_warmup")
class ArchWarmup(Remedy):
    """Train the weights only for the first ``epochs`` epochs before α moves (PC-DARTS: 15; Xu et al., ICLR
    2020): a remedy for the early collapse towards parameter-free ops, which train faster."""

    def __init__(self, epochs: int = 15) -> None:
        check_range("epochs", epochs, 0, integer=True, hint="the epochs before the architecture moves")
        self.epochs = epochs

    def arch_moves(self, epoch: int) -> bool:
        return epoch >= self.epochs


@register_remedy("auxiliary_skip")
class AuxiliarySkip(Remedy):
    """DARTS- (Chu et al., ICLR 2021): an auxiliary skip connection on every mixed edge whose weight decays
    linearly, β_t = (E − t) / E in epoch t of E (1 at the start, 1/E in the last epoch), so that skip
    connections need not win α to pass gradients."""

    adds_auxiliary_skip = True

    def on_epoch_start(self, supernet: Supernet, epoch: int, epochs: int) -> dict[str, float]:
        supernet.auxiliary_skip_weight = max(epochs - epoch, 0) / epochs
        return {"auxiliary_skip_weight": supernet.auxiliary_skip_weight}


@register_remedy("beta_decay")
class BetaDecay(Remedy):
    """β-DARTS (Ye et al., CVPR 2022): add λ_t · Σ_cells mean_edges logsumexp(α_edge) to the architecture loss,
    with λ_t = ``max_weight`` · t / E rising linearly over the E epochs (the released β-DARTS code uses
    λ_t = 0.5 · t, i.e. ``max_weight`` 25 for its 50 epochs)."""

    def __init__(self, max_weight: float = 25.0) -> None:
        check_range("max_weight", max_weight, 0)
        self.max_weight = float(max_weight)

    def weight(self, epoch: int, epochs: int) -> float:
        """λ_t of ``epoch`` of ``epochs``."""
        return self.max_weight * epoch / epochs

    def arch_loss(self, supernet: Supernet, epoch: int, epochs: int) -> Tensor | None:
        weight = self.weight(epoch, epochs)
        if not weight:
            return None
        return weight * torch.stack([torch.logsumexp(a, dim=-1).mean() for a in supernet.alphas().values()]).sum()


# ---------------------------------------------------------------------- SDARTS (Chen & Hsieh, ICML 2020)


def clip_rows_(weights: Tensor) -> Tensor:
    """Project every row of ``weights`` ``[edges, ops]`` back onto the simplex in place, as SDARTS's
    ``Network.clip`` does: clamp to [0, 1] and divide by the row sum; a row left all zero becomes one-hot on
    its largest entry before clamping."""
    top = weights.argmax(dim=-1, keepdim=True)
    weights.clamp_(0, 1)
    empty = weights.sum(dim=-1, keepdim=True) == 0
    weights.scatter_(-1, top, torch.where(empty, torch.ones_like(top, dtype=weights.dtype), weights.gather(-1, top)))
    return weights.div_(weights.sum(dim=-1, keepdim=True))


def _uniform(like: Tensor, epsilon: float, generator: torch.Generator) -> Tensor:
    """U(-ε, ε) noise shaped as ``like``, drawn on the CPU from ``generator`` (so that every device and every
    rank draws the same values) in ``like``'s dtype (float32 for a half-precision ``like``)."""
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    noise = torch.empty(like.shape, dtype=dtype).uniform_(-epsilon, epsilon, generator=generator)
    return noise.to(like.device, like.dtype, non_blocking=True)


def random_perturbation(weights: Sequence[Tensor], epsilon: float, generator: torch.Generator) -> list[Tensor]:
    """SDARTS-RS: ``clip(w + U(-ε, ε))`` for every mixing-weight tensor ``w``, the noise drawn from
    ``generator`` in the order of ``weights``."""
    return [clip_rows_(w.detach() + _uniform(w, epsilon, generator)) for w in weights]


def pgd_perturbation(
    weights: Sequence[Tensor], loss: Callable[[list[Tensor]], Tensor], epsilon: float, steps: int,
    generator: torch.Generator, random_start: bool = True,
) -> list[Tensor]:
    """SDARTS-ADV: projected gradient ascent of ``loss`` over the mixing weights within the L∞ ball of radius
    ε around ``weights``.

    A random start ``clip(w + U(-ε, ε))``, then ``steps`` steps of ``w ← clip(w₀ + clamp(w + (2ε/steps) ·
    sign(∇w loss) − w₀, −ε, ε))``; the unperturbed weights are kept when the perturbation lowered the loss.
    The gradient and the two losses compared are averaged across ranks, so that every rank perturbs alike,
    and the comparison is made on the device (no read to the host).
    """
    saved = [w.detach().clone() for w in weights]
    step_size = 2 * epsilon / steps
    with torch.no_grad():
        before = loss(saved).detach().float()
    current = [w.clone() for w in saved]
    if random_start:
        current = random_perturbation(current, epsilon, generator)
    for _ in range(steps):
        leaves = [w.detach().requires_grad_() for w in current]
        with torch.enable_grad():
            # A cell type the supernet does not use (two reduction cells only) has no gradient and stays put.
            grads = [torch.zeros_like(w) if g is None else g
                     for w, g in zip(leaves, torch.autograd.grad(loss(leaves), leaves, allow_unused=True))]
        all_reduce_mean_(grads)
        current = [
            clip_rows_((w.detach() + step_size * g.sign() - s).clamp_(-epsilon, epsilon) + s)
            for w, g, s in zip(leaves, grads, saved)
        ]
    with torch.no_grad():
        after = loss(current).detach().float()
    losses = [before.reshape(1), after.reshape(1)]
    all_reduce_mean_(losses)
    lowered = losses[0] > losses[1]
    return [torch.where(lowered, s, w) for s, w in zip(saved, current)]


class _GivenMixing(Relaxation):
    """Stands in for a supernet's relaxation while its mixing is perturbed: returns the given mixing of every
    cell's α and leaves how edges mix (:meth:`mix`) to the edges' own relaxation."""

    def __init__(self, base: Relaxation, mixings: dict[int, Mixing]) -> None:
        self.base = base
        self.mixings = mixings
        self.name = base.name
        self.partial_channels = base.partial_channels
        self.computes_subset = base.computes_subset

    def mixing(self, alpha: Tensor, generator: torch.Generator | None) -> Mixing:
        return self.mixings[id(alpha)]

    def mix(self, edge: EdgeOps, x: Tensor, weights: Tensor, column: int | None = None) -> Tensor:
        return self.base.mix(edge, x, weights, column)


def _mixings(supernet: Supernet) -> dict[str, tuple[Tensor, Mixing]]:
    """``{cell: (α, mixing)}``: the mixing the supernet's next forward pass would use (the sample of the
    current sample key for a sampling relaxation)."""
    relaxation = supernet.relaxation
    return {
        cell: (alpha, relaxation.mixing(alpha, supernet.generator(cell) if relaxation.samples else None))
        for cell, alpha in supernet.alphas().items()
    }


@contextmanager
def _mixed_with(supernet: Supernet, cells: dict[str, tuple[Tensor, Mixing]], weights: Sequence[Tensor]) -> Iterator[None]:
    """Run ``supernet`` with ``weights`` (one per cell, in the order of ``cells``) as the mixing weights.

    Their values are the given ones; their gradient with respect to α, if the forward pass asks for one, is
    that of the relaxation's own mixing (the weight step of GDAS takes ∇α L_train into its clipping norm).
    """
    given = {
        id(alpha): mixing._replace(weights=w if w.requires_grad else mixing.weights + (w - mixing.weights).detach())
        for (alpha, mixing), w in zip(cells.values(), weights)
    }
    relaxation = supernet.relaxation
    supernet.relaxation = _GivenMixing(relaxation, given)
    try:
        yield
    finally:
        supernet.relaxation = relaxation


class _Perturbation(Remedy):
    """SDARTS (Chen & Hsieh, ICML 2020): the weight step trains w on mixing weights perturbed within an
    L∞ ball of radius ε_t = ``epsilon_min`` + (``epsilon`` − ``epsilon_min``) · t / E in epoch t of E, so that
    the weights suit a neighbourhood of α and the validation loss landscape is smoother in α.

    As the released code does, the perturbation is of the mixing weights (softmax(α) for DARTS, which the
    released code perturbs), rows are clipped back onto the simplex, the architecture step sees α
    unperturbed, and α is untouched by the weight step (here nothing is written into α: the perturbed
    weights replace the relaxation's mixing for the weight step's forward pass only). With another
    relaxation the relaxation's own mixing of the step is perturbed: a sampling relaxation's sample (SNAS,
    DrNAS), or GDAS's one-hot sample, of which only the sampled op's weight counts, since an edge computes
    that op only. Edge normalisation's β (PC-DARTS) is not perturbed. The noise is drawn from the
    supernet's ``sdarts`` generator, seeded by the weight step's sample key: every rank draws the same, and
    a resumed search draws what an uninterrupted one would.
    """

    perturbs_weight_step = True

    def __init__(self, epsilon: float = 0.3, epsilon_min: float = 0.03) -> None:
        check_range("epsilon", epsilon, 0, hint="the radius of the perturbation in the last epoch (SDARTS: 0.3)")
        check_range("epsilon_min", epsilon_min, 0, hint="the radius in the first epoch (SDARTS: 0.03)")
        if epsilon_min > epsilon:
            raise ValueError(f"epsilon_min={epsilon_min} exceeds epsilon={epsilon}: the radius grows from epsilon_min "
                             "to epsilon; set epsilon_min <= epsilon")
        self.epsilon = float(epsilon)
        self.epsilon_min = float(epsilon_min)

    def radius(self, epoch: int, epochs: int) -> float:
        """ε_t of ``epoch`` (from 0) of ``epochs``."""
        return self.epsilon_min + (self.epsilon - self.epsilon_min) * epoch / epochs

    def on_epoch_start(self, supernet: Supernet, epoch: int, epochs: int) -> dict[str, float]:
        return {"perturbation_radius": self.radius(epoch, epochs)}

    def perturbed(self, supernet: Supernet, batch: tuple[Tensor, Tensor], weights: list[Tensor], epsilon: float,
                  generator: torch.Generator, cells: dict[str, tuple[Tensor, Mixing]]) -> list[Tensor]:
        raise NotImplementedError

    @contextmanager
    def _perturb(self, supernet: Supernet, batch: tuple[Tensor, Tensor], epoch: int, epochs: int) -> Iterator[None]:
        cells = _mixings(supernet)
        weights = [mixing.weights.detach() for _, mixing in cells.values()]
        perturbed = self.perturbed(supernet, batch, weights, self.radius(epoch, epochs), supernet.generator("sdarts"),
                                   cells)
        with _mixed_with(supernet, cells, perturbed):
            yield

    def perturb_weight_step(
        self, supernet: Supernet, batch: tuple[Tensor, Tensor], epoch: int, epochs: int
    ) -> AbstractContextManager[None]:
        return self._perturb(supernet, batch, epoch, epochs)


@register_remedy("random_smoothing")
class RandomSmoothing(_Perturbation):
    """SDARTS-RS: uniform noise U(−ε, ε) on every mixing weight of the weight step, then the rows clipped
    back onto the simplex (``Random_alpha`` of the released code). See :class:`_Perturbation`."""

    def perturbed(self, supernet: Supernet, batch: tuple[Tensor, Tensor], weights: list[Tensor], epsilon: float,
                  generator: torch.Generator, cells: dict[str, tuple[Tensor, Mixing]]) -> list[Tensor]:
        return random_perturbation(weights, epsilon, generator)


@register_remedy("adversarial_perturbation")
class AdversarialPerturbation(_Perturbation):
    """SDARTS-ADV: the perturbation of the mixing weights that maximises the training loss of the weight step's
    search-train batch within the ε-ball, by ``steps`` steps of L∞ PGD of size 2ε/``steps`` from a random start
    (``Linf_PGD_alpha`` of the released code; see :func:`pgd_perturbation`). As there, the attack's forward
    passes run with the supernet in eval mode (batch norms on their running statistics, which they leave
    unchanged, and no drop path) and only the mixing weights' gradient is taken. See :class:`_Perturbation`.
    """

    def __init__(self, epsilon: float = 0.3, epsilon_min: float = 0.03, steps: int = 7) -> None:
        super().__init__(epsilon, epsilon_min)
        check_range("steps", steps, 1, integer=True, hint="the PGD steps of the attack (SDARTS: 7)")
        self.steps = int(steps)

    def perturbed(self, supernet: Supernet, batch: tuple[Tensor, Tensor], weights: list[Tensor], epsilon: float,
                  generator: torch.Generator, cells: dict[str, tuple[Tensor, Mixing]]) -> list[Tensor]:
        x, y = batch

        def loss(trial: list[Tensor]) -> Tensor:
            with _mixed_with(supernet, cells, trial):
                return F.cross_entropy(supernet(x, detach_alpha=not trial[0].requires_grad), y)

        training = supernet.training
        supernet.eval()
        try:
            return pgd_perturbation(weights, loss, epsilon, self.steps, generator)
        finally:
            supernet.train(training)
