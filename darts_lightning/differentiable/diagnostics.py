"""Collapse diagnostics of a differentiable search.

The dominant eigenvalue of the Hessian of the architecture loss with respect to α (Zela et al.,
"Understanding and Robustifying Differentiable Architecture Search", ICLR 2020) grows as DARTS drifts
towards sharp regions of the architecture space, where the discretised cell performs poorly; R-DARTS
stops the search when it rises quickly (DARTS-ES).

Both the eigenvalue and the stopping rule follow the authors' released code (automl/RobustDARTS, commit
3dec3fedaa1770614bbfd4b98f5299d946ea7ac6): ``Analyzer.compute_Hw``/``_hessian`` in
``src/search/analyze.py`` (l.110-124, l.157-192), the measurement and early-stop calls at the end of
``train()`` in ``src/search/train_search.py`` (l.373-425) and ``EVLocalAvg`` in ``src/utils.py``
(l.31-140).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from darts_lightning.spaces.supernet import Supernet
from darts_lightning.utils.validation import check_range

__all__ = ["architecture_hessian", "dominant_hessian_eigenvalue", "eigenvalue_measured", "EigenvalueEarlyStop"]


def architecture_hessian(
    network: Supernet, x: Tensor, y: Tensor, weight_decay: float = 0.0, rows_per_pass: int = 32,
) -> Tensor:
    """The full Hessian of the architecture loss ``L_val(w, α) + weight_decay / 2 · ‖α‖²`` w.r.t. all
    architecture parameters (α, and PC-DARTS's β where present), on one batch, in float64.

    As in R-DARTS's ``Analyzer._hessian`` (``src/search/analyze.py`` l.157-192): one double-backward row
    per architecture entry (224 for the DARTS cell: 2 × 14 edges × 8 ops; the released code computes the
    upper triangle and mirrors it, here every row is computed and the matrix symmetrised), with the
    gradient of α's weight decay (``arch_weight_decay · α``, Adam's L2 term) added to the gradient before
    differentiating again, i.e. ``weight_decay · I`` added to ∇²α L_val. The network runs in training
    mode, so that batch norm normalises with the batch's statistics as in the released code (whose model
    is still in training mode after the epoch's last step). Unlike there, every buffer (batch norm's
    running statistics and counters) is restored afterwards and the forward pass draws from forked random
    generators, so that measuring the eigenvalue does not change the search: a search with and without it,
    and a resumed one, stay bit-identical. Nothing is accumulated in ``.grad``.

    The rows are computed ``rows_per_pass`` at a time by one batched double-backward pass
    (``torch.autograd.grad(..., is_grads_batched=True)``), bit-identical to one pass per row; each pass holds
    ``rows_per_pass`` copies of the backward's intermediate gradients.
    """
    check_range("rows_per_pass", rows_per_pass, 1, integer=True, hint="rows of the Hessian per batched pass")
    alphas = list(network.arch_parameters())
    saved = [(buffer, buffer.detach().clone()) for buffer in network.buffers()]
    was_training = network.training
    network.train()
    # Random draws of the forward pass (e.g. drop-path masks) come from forked generators, so the search's
    # global random state is the same afterwards.
    devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []
    try:
        with torch.random.fork_rng(devices=devices):
            loss = F.cross_entropy(network(x), y)
        grads = torch.autograd.grad(loss, alphas, create_graph=True, allow_unused=True)
        flat = torch.cat([
            (torch.zeros_like(a) if g is None else g).reshape(-1) + weight_decay * a.reshape(-1)
            for g, a in zip(grads, alphas)
        ])
        n = flat.numel()
        if not flat.requires_grad:  # no entry of the loss depends on α twice: the Hessian is weight_decay · I
            hessian = torch.zeros(n, n, dtype=torch.float64, device=flat.device)
        else:
            # Rows in batches of ``rows_per_pass``: one vectorised (vmap) double-backward pass per batch of unit
            # vectors computes exactly the rows of one pass per entry, with fewer, larger kernels.
            eye = torch.eye(n, dtype=flat.dtype, device=flat.device)
            rows = []
            for start in range(0, n, rows_per_pass):
                unit = eye[start:start + rows_per_pass]
                batch = torch.autograd.grad(flat, alphas, grad_outputs=unit, retain_graph=True, allow_unused=True,
                                            is_grads_batched=True)
                rows.append(torch.cat([
                    (unit.new_zeros(len(unit), a.numel()) if r is None else r.reshape(len(unit), -1))
                    for r, a in zip(batch, alphas)
                ], dim=1))
            hessian = torch.cat(rows).detach().double()
        return (hessian + hessian.T) / 2
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        network.train(was_training)


def dominant_hessian_eigenvalue(
    network: Supernet, x: Tensor, y: Tensor, weight_decay: float = 0.0, rows_per_pass: int = 32,
) -> float:
    """The largest (algebraic) eigenvalue of :func:`architecture_hessian`, the value R-DARTS tracks.

    The released code takes ``max(numpy.linalg.eigvals(H))`` of the full Hessian (``train_search.py``
    l.415): the largest eigenvalue, not the largest in magnitude. The full matrix is small (#α × #α), so
    its exact symmetric eigendecomposition (``eigvalsh`` in float64) is used rather than an iterative
    method, which would need a shift to find the largest algebraic eigenvalue of an indefinite matrix.
    """
    return float(torch.linalg.eigvalsh(architecture_hessian(network, x, y, weight_decay, rows_per_pass))[-1])


def eigenvalue_measured(epoch: int, every: int, max_epochs: int | None) -> bool:
    """Whether the eigenvalue is measured at the end of ``epoch`` (counted from 0): at epochs 0, ``every``,
    2 · ``every``, … and in the last epoch, as ``train_search.py`` l.374 does
    (``epoch % report_freq_hessian == 0 or epoch == epochs - 1``)."""
    if every <= 0:
        return False
    return epoch % every == 0 or (max_epochs is not None and epoch == max_epochs - 1)


class EigenvalueEarlyStop:
    """DARTS-ES, the early-stopping rule of R-DARTS (Zela et al., ICLR 2020, sec. 4.3) as the released
    code applies it (``EVLocalAvg`` in ``src/utils.py`` l.31-140, called from ``train_search.py``
    l.421-425).

    Measurements ``λ_0, λ_1, …`` are taken at epochs 0, ``every``, 2 · ``every``, … (plus one in the last
    epoch, which never stops the search: ``early_stop`` is not called in the last epoch). Local averages
    start once ``ceil(window / 2)`` measurements exist; each is the mean of the last ``window`` measurements
    (of all of them while fewer exist), and is attributed to the epoch ``every · ⌊window / 2⌋`` before the
    current one, the centre of its window. At a measurement epoch ``e`` the candidate answer is the epoch
    ``s = e − every · (⌊window / 2⌋ + delta)`` of the local average ``delta`` places earlier. The search
    stops when ``s ≥ start_epoch`` (the condition is on the returned epoch, not on ``e``) and the latest
    local average exceeds ``factor`` times that earlier one; it returns the genotype of epoch ``s``. With
    the released settings (``--window 5 --delta 4 --factor 1.3 --es_start_epoch 10`` defaults of
    ``src/search/args.py`` l.61-64, ``--report_freq_hessian 2`` in ``scripts/DARTS_search.sh`` and
    ``DARTS-ADA_search.sh``) the first check that can stop is at epoch 22 and returns epoch 10.
    """

    def __init__(self, window: int = 5, delta: int = 4, factor: float = 1.3, start_epoch: int = 10, every: int = 2) -> None:
        check_range("window", window, 1, integer=True)
        check_range("delta", delta, 1, integer=True)
        check_range("factor", factor, 0, low_open=True)
        check_range("start_epoch", start_epoch, 0, integer=True)
        check_range("every", every, 1, integer=True, hint="the eigenvalue is measured every `every` epochs (R-DARTS: 2)")
        self.window, self.delta, self.factor, self.start_epoch, self.every = window, delta, factor, start_epoch, every

    def local_averages(self, values: Sequence[float]) -> list[float]:
        """``EVLocalAvg.ev_local_avg`` for the measurements ``values``: one entry per measurement from the
        ``ceil(window / 2)``-th on, the mean of the last ``window`` measurements (all, while fewer)."""
        first = math.ceil(self.window / 2)
        return [sum(values[max(0, n - self.window) : n]) / min(n, self.window) for n in range(first, len(values) + 1)]

    def check(self, history: Sequence[dict[str, float]], max_epochs: int | None = None) -> int | None:
        """The epoch whose genotype to return if the search should stop now, else ``None``.

        ``history`` holds ``{"epoch": e, "eigenvalue": λ}`` per measurement, oldest first; the last entry is
        the current epoch's. ``max_epochs``: the search's length, whose last epoch never stops it. Only
        measurements at multiples of ``every`` enter the averages (the last epoch's extra measurement is
        taken after every check of a search).
        """
        if not history:
            return None
        epoch = int(history[-1]["epoch"])
        if epoch % self.every or (max_epochs is not None and epoch == max_epochs - 1):
            return None
        returned = epoch - self.every * (self.window // 2 + self.delta)
        if returned < self.start_epoch:
            return None
        values = [float(h["eigenvalue"]) for h in history if int(h["epoch"]) % self.every == 0]
        averages = self.local_averages(values)
        if len(averages) <= self.delta:
            return None
        now, before = averages[-1], averages[-1 - self.delta]
        if before == 0:  # numpy's float division, as in the released code: ±inf or nan
            ratio = math.inf if now > 0 else -math.inf if now < 0 else math.nan
        else:
            ratio = now / before
        return returned if ratio > self.factor else None
