"""Collapse diagnostics: the dominant Hessian eigenvalue w.r.t. α, and α warm-up."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.func import functional_call

from darts_lightning import SearchNetwork
from darts_lightning.diagnostics import dominant_hessian_eigenvalue

from .conftest import quick_trainer, tiny_search


def test_power_iteration_finds_the_dominant_eigenvalue_of_the_exact_hessian():
    torch.manual_seed(0)
    net = SearchNetwork(1, 4, channels=2, layers=3, nodes=2, multiplier=2, image_size=4).double()
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.normal_(0, 1.0)
    net.eval()
    x, y = torch.randn(6, 1, 4, 4, dtype=torch.float64), torch.randint(4, (6,))
    shapes = [a.shape for a in net.arch_parameters()]
    sizes = [a.numel() for a in net.arch_parameters()]

    def loss(flat):
        normal, reduce = torch.split(flat, sizes)
        params = {"alpha_normal": normal.view(shapes[0]), "alpha_reduce": reduce.view(shapes[1])}
        return F.cross_entropy(functional_call(net, params, (x,)), y)

    flat = torch.cat([a.detach().flatten() for a in net.arch_parameters()])
    eigenvalues = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, flat))
    dominant = eigenvalues[eigenvalues.abs().argmax()].item()
    estimate = dominant_hessian_eigenvalue(net, x, y, iterations=300, generator=torch.Generator().manual_seed(0))
    assert abs(estimate - dominant) <= 1e-3 * abs(dominant)
    assert all(a.grad is None for a in net.parameters())


def test_alpha_warmup_trains_weights_only(tmp_path, digits):
    pl.seed_everything(0)
    model = tiny_search(arch_warmup_epochs=1)
    alpha = model.network.alpha_normal.detach().clone()
    stem = model.network.stem[0].weight.detach().clone()
    quick_trainer(tmp_path / "a", max_epochs=1).fit(model, digits)
    assert torch.equal(alpha, model.network.alpha_normal)
    assert not torch.equal(stem, model.network.stem[0].weight)
    quick_trainer(tmp_path / "b", max_epochs=2).fit(model, digits, ckpt_path=None)
    assert not torch.equal(alpha, model.network.alpha_normal)


def test_hessian_eigenvalue_is_logged(tmp_path, digits):
    model = tiny_search(hessian_eigenvalue_every=1)
    trainer = quick_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, digits)
    value = trainer.callback_metrics["arch/hessian_eigenvalue"]
    assert torch.isfinite(value) and value != 0
