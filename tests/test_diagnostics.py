"""Collapse diagnostics: the dominant Hessian eigenvalue w.r.t. α, and α warm-up."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.func import functional_call

from darts_lightning import SearchNetwork
from darts_lightning.diagnostics import EigenvalueEarlyStop, dominant_hessian_eigenvalue

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


def _history(values, every=2):
    return [{"epoch": every * i + (every - 1), "eigenvalue": v} for i, v in enumerate(values)]


def test_eigenvalue_early_stop_rule_of_r_darts():
    rule = EigenvalueEarlyStop(window=5, delta=4, factor=1.3, start_epoch=10)
    flat = [1.0] * 12
    assert all(rule.check(_history(flat[: i + 1])) is None for i in range(len(flat)))
    # the eigenvalue starts growing at measurement 8: the averaged value passes 1.3x that of 4 measurements
    # earlier at measurement m; the answer is the epoch at the centre of that earlier window
    rising = [1.0] * 8 + [1.0 + 0.5 * k for k in range(1, 8)]
    stops = [i for i in range(len(rising)) if rule.check(_history(rising[: i + 1])) is not None]
    m = stops[0]
    now = sum(rising[m - 4 : m + 1]) / 5
    before = sum(rising[m - 8 : m - 3]) / 5
    assert now / before > 1.3
    previous = sum(rising[m - 5 : m]) / 5 / (sum(rising[m - 9 : m - 4]) / 5)
    assert previous <= 1.3, "the rule must fire at the first measurement that passes the threshold"
    assert rule.check(_history(rising[: m + 1])) == _history(rising)[m - 4 - 2]["epoch"]
    # not before the start epoch
    assert EigenvalueEarlyStop(start_epoch=1000).check(_history(rising)) is None


def test_search_stops_early_and_returns_the_earlier_genotype(tmp_path):
    pl.seed_everything(0)
    model = tiny_search(
        hessian_eigenvalue_every=1, eigenvalue_early_stop=True, eigenvalue_stop_window=1,
        eigenvalue_stop_delta=1, eigenvalue_stop_factor=1e-9, eigenvalue_stop_start_epoch=2,
    )
    trainer = quick_trainer(tmp_path, max_epochs=6)
    from darts_lightning import SearchDataModule, Genotype

    trainer.fit(model, SearchDataModule("digits", batch_size=16))
    assert trainer.current_epoch == 3  # stopped after epoch 2 (the first allowed), not at 6
    assert model.selected_epoch == 1
    chosen = Genotype.from_dict(model.genotype_history[1]["genotype"])
    assert model.selected_genotype() == chosen
    assert Genotype.load(tmp_path / "lightning_logs" / "version_0" / "genotype.json") == chosen


def test_early_stop_without_eigenvalue_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="hessian_eigenvalue_every"):
        tiny_search(eigenvalue_early_stop=True)
