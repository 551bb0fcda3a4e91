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

__all__ = ["dominant_hessian_eigenvalue"]


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
