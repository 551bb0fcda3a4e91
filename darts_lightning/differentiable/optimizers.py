"""The settings of a differentiable search's two optimizers, as parts the search is composed of.

Defaults are the paper's CIFAR-10 search (Liu et al., ICLR 2019, sec. A.1.1): SGD on the weights at 0.025,
cosine-annealed to 0.001, momentum 0.9, weight decay 3e-4, gradient-norm clip 5; Adam on α at 3e-4 with
betas (0.5, 0.999) and weight decay 1e-3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from darts_lightning.utils.components import Component
from darts_lightning.utils.validation import check_choice, check_range

__all__ = ["WeightOptimizer", "ArchOptimizer", "ARCH_OPTIMIZERS"]

ARCH_OPTIMIZERS = ("adam", "sgd")


class WeightOptimizer(Component):
    """SGD on the weights w, cosine-annealed per epoch over the run's epochs.

    Args:
        lr, lr_min: the learning rate, annealed from ``lr`` to ``lr_min`` (0.025 → 0.001).
        momentum, weight_decay, nesterov: SGD's (0.9, 3e-4, no; GDAS: Nesterov).
        grad_clip: gradient-norm clip of the weight step (5; 0: off).
        lr_epoch_offset: epoch e trains at the cosine rate of epoch e + offset (capped at the last): SNAS's
            code steps its scheduler at the start of every epoch (PyTorch 0.4's order), offset 1.
        clip_includes_arch: GDAS: the weight step's ``clip_grad_norm_`` runs over all the network's
            parameters, α included; α's gradient then holds the last architecture step's gradient plus
            ∇α L_train of this step, and counts in the norm (only the weights are stepped).
    """

    def __init__(
        self,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        nesterov: bool = False,
        grad_clip: float = 5.0,
        lr_epoch_offset: int = 0,
        clip_includes_arch: bool = False,
    ) -> None:
        for name, value in (("lr", lr), ("lr_min", lr_min), ("weight_decay", weight_decay), ("grad_clip", grad_clip)):
            check_range(name, value, 0)
        check_range("momentum", momentum, 0, 1, high_open=True)
        check_range("lr_epoch_offset", lr_epoch_offset, 0, integer=True)
        check_choice("nesterov", nesterov, (True, False))
        check_choice("clip_includes_arch", clip_includes_arch, (True, False))
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs a momentum: set momentum > 0 (GDAS: 0.9) or nesterov: false")
        if lr_epoch_offset and lr <= 0:
            raise ValueError(f"lr_epoch_offset needs lr > 0, got {lr}")
        self.lr, self.lr_min, self.momentum, self.weight_decay = lr, lr_min, momentum, weight_decay
        self.nesterov, self.grad_clip, self.lr_epoch_offset = nesterov, grad_clip, lr_epoch_offset
        self.clip_includes_arch = clip_includes_arch

    def build(
        self, parameters: Sequence[nn.Parameter], epochs: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """The optimizer of ``parameters`` and its per-epoch schedule over ``epochs``."""
        optimizer = torch.optim.SGD(
            parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay, nesterov=self.nesterov
        )
        offset = self.lr_epoch_offset
        if offset == 0:
            return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=self.lr_min)
        lr, lr_min = self.lr, self.lr_min

        def factor(epoch: int) -> float:  # the closed form of the cosine, shifted by the offset
            shifted = min(epoch + offset, epochs)
            return (lr_min + (lr - lr_min) * (1 + math.cos(math.pi * shifted / epochs)) / 2) / lr

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ArchOptimizer(Component):
    """The optimizer of the architecture parameters.

    Args:
        name: ``adam`` (DARTS) or ``sgd`` (plain SGD at ``lr``, SNAS's single-GPU path).
        lr, betas, weight_decay: (3e-4, (0.5, 0.999), 1e-3); ``betas`` are Adam's.
        grad_clip: clip the norm of α's gradient before the step (SNAS: 10; 0: off).
    """

    def __init__(
        self,
        name: str = "adam",
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        grad_clip: float = 0.0,
    ) -> None:
        check_choice("name", name, ARCH_OPTIMIZERS)
        for key, value in (("lr", lr), ("weight_decay", weight_decay), ("grad_clip", grad_clip)):
            check_range(key, value, 0)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be Adam's two betas (beta1, beta2), got {betas!r}")
        for beta in betas:
            check_range("betas", beta, 0, 1, high_open=True)
        self.name, self.lr, self.betas = name, lr, (float(betas[0]), float(betas[1]))
        self.weight_decay, self.grad_clip = weight_decay, grad_clip

    def build(self, parameters: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
        if self.name == "sgd":  # SNAS's single-GPU path: plain SGD on α (train_search.py, line 268)
            return torch.optim.SGD(parameters, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.Adam(parameters, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
