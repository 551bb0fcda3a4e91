"""Collapse diagnostics of a differentiable search.

The dominant eigenvalue of the Hessian of the validation loss with respect to α (Zela et al.,
"Understanding and Robustifying Differentiable Architecture Search", ICLR 2020) grows as DARTS drifts
towards sharp regions of the architecture space, where the discretised cell performs poorly; R-DARTS
stops the search when it rises quickly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["dominant_hessian_eigenvalue", "EigenvalueEarlyStop"]


def dominant_hessian_eigenvalue(
    network: torch.nn.Module, x: Tensor, y: Tensor, iterations: int = 20, generator: torch.Generator | None = None
) -> float:
    """Largest-magnitude eigenvalue of ∇²α L_val(w, α) on one batch, by power iteration.

    Each iteration is one Hessian-vector product by double backward (Pearlmutter's trick), so the
    Hessian (size #α × #α) is never formed. The network is put in eval mode for the computation, so
    that batch norm uses its running statistics and nothing is updated.
    """
    alphas = list(network.arch_parameters())
    was_training = network.training
    network.eval()
    try:
        loss = F.cross_entropy(network(x), y)
        grads = torch.autograd.grad(loss, alphas, create_graph=True)
        vector = [torch.randn(a.shape, generator=generator, dtype=a.dtype).to(a.device) for a in alphas]
        norm = torch.sqrt(sum((v**2).sum() for v in vector))
        vector = [v / norm for v in vector]
        eigenvalue = 0.0
        for _ in range(iterations):
            product = torch.autograd.grad(grads, alphas, grad_outputs=vector, retain_graph=True)
            eigenvalue = float(sum((p * v).sum() for p, v in zip(product, vector)))
            norm = torch.sqrt(sum((p**2).sum() for p in product))
            if norm == 0:
                return 0.0
            vector = [p / norm for p in product]
        return eigenvalue
    finally:
        network.train(was_training)


class EigenvalueEarlyStop:
    """DARTS-ES, the early-stopping rule of R-DARTS (Zela et al., ICLR 2020, sec. 4.3).

    The eigenvalue measurements ``λ_0, λ_1, …`` are smoothed by a moving average over ``window``
    measurements. At measurement ``m`` (not before epoch ``start_epoch``) the search stops when
    ``avg(m) / avg(m − delta) > factor``: the curvature has grown quickly, so the search has entered the
    sharp region where the discretised cell degrades. The answer is the genotype of the epoch at the
    centre of the earlier window, measurement ``m − delta − window // 2``. Defaults are those of the
    R-DARTS code (window 5, delta 4, factor 1.3, start epoch 10, with the eigenvalue every 2 epochs).
    """

    def __init__(self, window: int = 5, delta: int = 4, factor: float = 1.3, start_epoch: int = 10) -> None:
        if window < 1 or delta < 1 or factor <= 0:
            raise ValueError(f"need window >= 1, delta >= 1 and factor > 0, got {window}, {delta}, {factor}")
        self.window, self.delta, self.factor, self.start_epoch = window, delta, factor, start_epoch

    def local_average(self, values: list[float], index: int) -> float:
        return sum(values[index - self.window + 1 : index + 1]) / self.window

    def check(self, history: list[dict[str, float]]) -> int | None:
        """The epoch whose genotype to return if the search should stop now, else ``None``.

        ``history`` holds ``{"epoch": e, "eigenvalue": λ}`` per measurement, oldest first.
        """
        values = [float(h["eigenvalue"]) for h in history]
        m = len(values) - 1
        if m < 0 or history[m]["epoch"] < self.start_epoch or m - self.delta < self.window - 1:
            return None
        now, before = self.local_average(values, m), self.local_average(values, m - self.delta)
        if before > 0 and now / before > self.factor:
            return int(history[m - self.delta - self.window // 2]["epoch"])
        return None
