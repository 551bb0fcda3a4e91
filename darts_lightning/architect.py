"""Architecture-gradient estimates: what the architecture step descends.

DARTS (Liu et al., ICLR 2019, eq. 3-4) solves the bilevel problem
    min_α L_val(w*(α), α)   s.t.   w*(α) = argmin_w L_train(w, α)
by alternating an architecture step on a validation batch with a weight step on a training batch.
An :class:`ArchitectureGradient` computes the α gradient of one architecture step. The first-order
estimate (eq. 6 with ξ = 0) takes the current weights as w*(α): ∇α L_val(w, α).

Each estimate asks autograd for α gradients only (``torch.autograd.grad(..., inputs=α)``), so no
weight gradients are computed and nothing is accumulated into ``.grad`` of the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .network import SearchNetwork

__all__ = ["ArchitectureGradient", "FirstOrderGradient", "ArchStepResult", "build_architecture_gradient"]


@dataclass
class ArchStepResult:
    """α gradients (normal, reduce) and the validation loss and logits they were computed from."""

    grads: list[Tensor]
    loss: Tensor
    logits: Tensor


class ArchitectureGradient:
    """Base class: ``estimate(network, val_batch, train_batch, weight_optimizer)`` → :class:`ArchStepResult`."""

    def estimate(
        self,
        network: SearchNetwork,
        val_batch: tuple[Tensor, Tensor],
        train_batch: tuple[Tensor, Tensor],
        weight_optimizer: torch.optim.Optimizer | None = None,
    ) -> ArchStepResult:
        raise NotImplementedError


class FirstOrderGradient(ArchitectureGradient):
    """First-order DARTS: ∇α L_val(w, α) at the current weights (Liu et al., eq. 6 with ξ = 0)."""

    def estimate(self, network, val_batch, train_batch, weight_optimizer=None) -> ArchStepResult:
        x, y = val_batch
        logits = network(x)
        loss = F.cross_entropy(logits, y)
        grads = list(torch.autograd.grad(loss, network.arch_parameters()))
        return ArchStepResult(grads, loss.detach(), logits.detach())


def build_architecture_gradient(order: int) -> ArchitectureGradient:
    """The estimate for ``order`` (1: first order)."""
    if order == 1:
        return FirstOrderGradient()
    raise ValueError(f"order must be 1 (first-order DARTS), got {order!r}")
