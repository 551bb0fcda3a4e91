"""Architecture-gradient estimates: what the architecture step descends.

DARTS (Liu et al., ICLR 2019, eq. 3-4) solves the bilevel problem
    min_α L_val(w*(α), α)   s.t.   w*(α) = argmin_w L_train(w, α)
by alternating an architecture step on a validation batch with a weight step on a training batch.
An :class:`ArchitectureGradient` computes the α gradient of one architecture step.

* First order (eq. 6 with ξ = 0) takes the current weights as w*(α): ∇α L_val(w, α).
* Second order (eq. 6-8) unrolls one virtual weight step
      w' = w − ξ · (∇w L_train(w, α) + μ·v + λ·w)          (ξ: weight learning rate, v: SGD momentum)
  and descends
      ∇α L_val(w', α) − ξ · ∇²α,w L_train(w, α) · ∇w' L_val(w', α),
  the Hessian-vector product taken by central finite differences (eq. 8) with
  w± = w ± ε · ∇w' L_val(w', α), ε = ``epsilon`` / ‖∇w' L_val(w', α)‖, or exactly by double backward.

Nothing here touches the real weights, their ``.grad``, the optimizer state or the batch-norm running
statistics: the network is evaluated at w', w± with ``torch.func.functional_call`` on copies of its
buffers, and autograd is asked only for the gradients each formula needs (``torch.autograd.grad``).
No model is rebuilt or deep-copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from darts_lightning.spaces.supernet import Supernet
from darts_lightning.utils.components import Component
from darts_lightning.utils.registry import Registry
from darts_lightning.utils.validation import check_choice, check_range

__all__ = [
    "ArchitectureGradient", "FirstOrderGradient", "SecondOrderGradient", "ArchStepResult", "ESTIMATORS",
    "build_architecture_gradient", "HESSIAN_MODES", "ARCH_BATCHES",
]

ARCH_BATCHES = ("val", "train")

HESSIAN_MODES = ("finite_difference", "exact")


@dataclass
class ArchStepResult:
    """α gradients (normal, reduce) and the validation loss and logits they were computed from."""

    grads: list[Tensor]
    loss: Tensor
    logits: Tensor


def _grads_or_zeros(output: Tensor, inputs: list[Tensor], create_graph: bool = False) -> list[Tensor]:
    """``torch.autograd.grad`` with zeros for inputs the output does not depend on."""
    grads = torch.autograd.grad(output, inputs, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


class ArchitectureGradient(Component):
    """Base class: ``estimate(network, val_batch, train_batch, weight_optimizer)`` → :class:`ArchStepResult`.

    Args:
        arch_batch: the batch the architecture loss is measured on: ``val`` (bilevel DARTS, the search-val
            batch) or ``train`` (single level, as SNAS trains α and w on the same batch; the search-val split
            then only measures the supernet).
    """

    #: 1: first order, 2: second order (logged and shown in summaries)
    order: int = 0

    def __init__(self, arch_batch: str = "val") -> None:
        check_choice("arch_batch", arch_batch, ARCH_BATCHES, hint="'val': bilevel DARTS, 'train': single-level (SNAS)")
        self.arch_batch = arch_batch

    @property
    def single_level(self) -> bool:
        return self.arch_batch == "train"

    def estimate(
        self,
        network: Supernet,
        val_batch: tuple[Tensor, Tensor],
        train_batch: tuple[Tensor, Tensor],
        weight_optimizer: torch.optim.Optimizer | None = None,
    ) -> ArchStepResult:
        raise NotImplementedError


class FirstOrderGradient(ArchitectureGradient):
    """First-order DARTS: ∇α L_val(w, α) at the current weights (Liu et al., eq. 6 with ξ = 0)."""

    order = 1

    def estimate(self, network, val_batch, train_batch, weight_optimizer=None) -> ArchStepResult:
        x, y = val_batch
        logits = network(x)
        loss = F.cross_entropy(logits, y)
        grads = _grads_or_zeros(loss, network.arch_parameters())
        return ArchStepResult(grads, loss.detach(), logits.detach())


class SecondOrderGradient(ArchitectureGradient):
    """Second-order (unrolled) DARTS, Liu et al. eq. 6-8.

    Args:
        hessian: ``"finite_difference"`` (the paper's eq. 8, two extra forward passes with α-only
            backward) or ``"exact"`` (double backward; for checking and small models).
        epsilon: the finite-difference step is ``epsilon / ‖∇w' L_val(w', α)‖`` (paper: 0.01).
        xi: the virtual step size ξ; ``None`` uses the weight optimizer's current learning rate, as the
            paper does. ``xi=0`` reduces the estimate to the first-order one.
    """

    order = 2

    def __init__(
        self, hessian: str = "finite_difference", epsilon: float = 0.01, xi: float | None = None, arch_batch: str = "val",
    ) -> None:
        super().__init__(arch_batch)
        check_choice("hessian", hessian, HESSIAN_MODES)
        check_range("epsilon", epsilon, 0, low_open=True, hint="the finite-difference step (paper: 0.01)")
        check_range("xi", xi, 0, optional=True, hint="None uses the weight learning rate")
        self.hessian = hessian
        self.epsilon = epsilon
        self.xi = xi

    @staticmethod
    def _call(network: Supernet, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        # Fresh copies of the buffers: the virtual passes must not move the batch-norm running statistics.
        return functional_call(network, {**params, **{n: b.clone() for n, b in buffers.items()}}, (x,))

    def estimate(self, network, val_batch, train_batch, weight_optimizer=None) -> ArchStepResult:
        if weight_optimizer is None:
            raise ValueError("the second-order estimate needs the weight optimizer (its learning rate and momentum)")
        (x_val, y_val), (x_train, y_train) = val_batch, train_batch
        names, weights = zip(*network.named_weight_parameters())
        alpha_params = network.named_arch_parameters()
        alphas = list(alpha_params.values())
        buffers = dict(network.named_buffers())
        group = weight_optimizer.param_groups[0]
        xi = group["lr"] if self.xi is None else self.xi
        momentum, weight_decay = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        exact = self.hessian == "exact"

        # Virtual step: w' = w − ξ (∇w L_train(w, α) + μ v + λ w). The exact Hessian reuses this graph.
        alpha_for_train = alpha_params if exact else {k: a.detach() for k, a in alpha_params.items()}
        train_logits = self._call(network, {**dict(zip(names, weights)), **alpha_for_train}, buffers, x_train)
        train_loss = F.cross_entropy(train_logits, y_train)
        # A sampling relaxation (GDAS) leaves the ops it did not sample out of the graph: their gradient is 0.
        train_grads = _grads_or_zeros(train_loss, list(weights), create_graph=exact)
        unrolled = []
        with torch.no_grad():
            for w, g in zip(weights, train_grads):
                step = g + weight_decay * w
                buffer = weight_optimizer.state.get(w, {}).get("momentum_buffer")
                if momentum and buffer is not None:
                    step = step + momentum * buffer
                unrolled.append((w - xi * step).requires_grad_())

        # ∇α L_val(w', α) and ∇w' L_val(w', α).
        logits = self._call(network, {**dict(zip(names, unrolled)), **alpha_params}, buffers, x_val)
        val_loss = F.cross_entropy(logits, y_val)
        grads = _grads_or_zeros(val_loss, [*alphas, *unrolled])
        alpha_grads, direction = list(grads[: len(alphas)]), grads[len(alphas) :]
        if xi == 0:
            return ArchStepResult(alpha_grads, val_loss.detach(), logits.detach())

        if exact:
            dot = cast(Tensor, sum((g * d).sum() for g, d in zip(train_grads, direction)))
            hessian_vector = _grads_or_zeros(dot, alphas)
        else:
            hessian_vector = self._finite_difference(network, names, weights, alpha_params, buffers, direction, x_train, y_train)
        for i, hv in enumerate(hessian_vector):
            alpha_grads[i] = alpha_grads[i] - xi * hv
        return ArchStepResult(alpha_grads, val_loss.detach(), logits.detach())

    def _finite_difference(self, network, names, weights, alpha_params, buffers, direction, x, y) -> list[Tensor]:
        """(∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)) / 2ε with w± = w ± ε·direction (eq. 8), in fp32."""
        # At least fp32 (a bf16 direction's squares would lose the norm), and the direction's own dtype above it.
        norm = torch.sqrt(sum((d.to(torch.promote_types(d.dtype, torch.float32)) ** 2).sum() for d in direction))
        eps = self.epsilon / norm
        alphas = list(alpha_params.values())
        gradients = []
        with torch.autocast(device_type=x.device.type, enabled=False):
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    shifted = {n: w + sign * eps * d for n, w, d in zip(names, weights, direction)}
                loss = F.cross_entropy(self._call(network, {**shifted, **alpha_params}, buffers, x), y)
                gradients.append(_grads_or_zeros(loss, alphas))
        return [(gp - gm) / (2 * eps) for gp, gm in zip(*gradients)]


ESTIMATORS: Registry[ArchitectureGradient] = Registry("architecture-gradient estimator")
ESTIMATORS.register("first_order", FirstOrderGradient)
ESTIMATORS.register("second_order", SecondOrderGradient)


def build_architecture_gradient(
    order: int, hessian: str = "finite_difference", epsilon: float = 0.01, xi: float | None = None
) -> ArchitectureGradient:
    """The estimate for ``order`` (1: first order, 2: second order with the given Hessian mode). The
    second-order settings are checked with either order, so that a wrong one is never silently unused."""
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"order must be 1 (first-order DARTS) or 2 (second order, unrolled), got {order!r}")
    check_choice("hessian", hessian, HESSIAN_MODES)
    check_range("hessian_epsilon", epsilon, 0, low_open=True)
    check_range("unrolled_lr", xi, 0, optional=True, hint="None uses the weight learning rate")
    if order == 1:
        return FirstOrderGradient()
    return SecondOrderGradient(hessian=hessian, epsilon=epsilon, xi=xi)
