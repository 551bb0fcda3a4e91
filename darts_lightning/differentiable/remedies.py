"""Remedies for the collapse of differentiable search, as parts a search is composed of.

DARTS is known to collapse towards parameter-free ops (skip connections) as the search goes on (Zela et al.,
ICLR 2020; Chu et al., ICLR 2021). A :class:`Remedy` changes the search through small hooks, and a search
takes any list of them (``model.init_args.remedies`` in YAML):

* :meth:`Remedy.arch_moves`: whether α is stepped in an epoch (a warm-up holds it);
* :meth:`Remedy.on_epoch_start`: set the supernet's per-epoch state, returning values to log (``arch/<key>``);
* :meth:`Remedy.arch_loss`: a term added to the architecture loss;
* :attr:`Remedy.adds_auxiliary_skip`: the supernet is built with an auxiliary skip connection on every
  mixed edge.

Shipped: :class:`ArchWarmup` (PC-DARTS), :class:`AuxiliarySkip` (DARTS-) and :class:`BetaDecay` (β-DARTS).
"""

from __future__ import annotations

import torch
from torch import Tensor

from darts_lightning.spaces.supernet import Supernet
from darts_lightning.utils.components import Component
from darts_lightning.utils.registry import Registry
from darts_lightning.utils.validation import check_range

__all__ = ["Remedy", "ArchWarmup", "AuxiliarySkip", "BetaDecay", "REMEDIES", "register_remedy", "list_remedies"]


class Remedy(Component):
    """Base class: every hook does nothing."""

    #: the supernet needs DARTS-'s auxiliary skip connection on every mixed edge
    adds_auxiliary_skip: bool = False

    def arch_moves(self, epoch: int) -> bool:
        """Whether the architecture parameters are stepped in ``epoch`` (counted from 0)."""
        return True

    def on_epoch_start(self, supernet: Supernet, epoch: int, epochs: int) -> dict[str, float]:
        """Called at the start of every epoch of ``epochs``; returns values to log as ``arch/<key>``."""
        return {}

    def arch_loss(self, supernet: Supernet, epoch: int, epochs: int) -> Tensor | None:
        """A term of the architecture loss in ``epoch`` of ``epochs`` (``None``: none)."""
        return None


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
