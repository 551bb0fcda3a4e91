"""Collapse diagnostics: the dominant Hessian eigenvalue w.r.t. α, and α warm-up."""

from __future__ import annotations

import copy
import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.func import functional_call

from darts_lightning import DARTSSearch, SearchNetwork
from darts_lightning.differentiable.callbacks import HessianEigenvalue
from darts_lightning.differentiable.diagnostics import (
    EigenvalueEarlyStop,
    architecture_hessian,
    dominant_hessian_eigenvalue,
    eigenvalue_measured,
)
from darts_lightning.differentiable.optimizers import ArchOptimizer
from darts_lightning.differentiable.remedies import ArchWarmup
from darts_lightning.spaces.darts.space import DartsSpace
from tests.conftest import quick_trainer
from tests.searches import flat_search


def _small_search() -> DARTSSearch:
    """Two reduction cells of one node: a Hessian of 2 × 2 edges × 8 ops entries is quick to take."""
    return DARTSSearch(space=DartsSpace(channels=4, layers=2, nodes=1, multiplier=1), arch_optimizer=ArchOptimizer(lr=3e-2),
                       in_channels=1, image_size=8)


def test_eigenvalue_is_the_largest_of_the_full_hessian_with_weight_decay_in_training_mode():
    """R-DARTS tracks ``max(eigvals(H))`` of ``H = ∇²α L_val + arch_weight_decay · I`` with the network in
    training mode (``Analyzer._hessian``, ``src/search/analyze.py`` l.157-192, and ``train_search.py``
    l.415 in automl/RobustDARTS at 3dec3fedaa1770614bbfd4b98f5299d946ea7ac6): the largest algebraic
    eigenvalue, here smaller in magnitude than the most negative one. Measuring it changes no buffer,
    gradient or mode of the network, nor torch's global random state."""
    torch.manual_seed(3)
    net = SearchNetwork(1, 4, channels=2, layers=3, nodes=1, multiplier=1, image_size=4).double()
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.normal_(0, 1.0)
    x, y = torch.randn(6, 1, 4, 4, dtype=torch.float64), torch.randint(4, (6,))
    weight_decay = 1e-3
    reference = copy.deepcopy(net).train()  # batch statistics; its running statistics may change
    shapes = [a.shape for a in reference.arch_parameters()]
    sizes = [a.numel() for a in reference.arch_parameters()]

    def loss(flat):
        normal, reduce = torch.split(flat, sizes)
        params = {"alpha_normal": normal.view(shapes[0]), "alpha_reduce": reduce.view(shapes[1])}
        return F.cross_entropy(functional_call(reference, params, (x,)), y) + weight_decay / 2 * (flat**2).sum()

    flat = torch.cat([a.detach().flatten() for a in net.arch_parameters()])
    exact = torch.autograd.functional.hessian(loss, flat)
    eigenvalues = torch.linalg.eigvalsh(exact)
    assert -eigenvalues[0] > eigenvalues[-1] > 0  # the largest in magnitude is negative here

    net.eval()

    def random_draw(module, inputs):  # a draw from torch's global generator in the forward pass
        torch.rand(1)

    net.register_forward_pre_hook(random_draw)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    assert torch.allclose(architecture_hessian(net, x, y, weight_decay), exact, rtol=0, atol=1e-12)
    value = dominant_hessian_eigenvalue(net, x, y, weight_decay=weight_decay)
    assert abs(value - eigenvalues[-1].item()) <= 1e-9
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert not net.training
    assert all(a.grad is None for a in net.parameters())


def test_alpha_warmup_trains_weights_only(tmp_path, digits):
    pl.seed_everything(0)
    model = DARTSSearch(space=DartsSpace(channels=4, layers=3, nodes=2, multiplier=2), remedies=[ArchWarmup(epochs=1)],
                        arch_optimizer=ArchOptimizer(lr=3e-2), in_channels=1, image_size=8)
    alpha = model.network.alpha_normal.detach().clone()
    stem = model.network.stem[0].weight.detach().clone()
    quick_trainer(tmp_path / "a", max_epochs=1).fit(model, digits)
    assert torch.equal(alpha, model.network.alpha_normal)
    assert not torch.equal(stem, model.network.stem[0].weight)
    quick_trainer(tmp_path / "b", max_epochs=2).fit(model, digits, ckpt_path=None)
    assert not torch.equal(alpha, model.network.alpha_normal)


# Synthetic eigenvalue histories and the decision of the released rule on each: (epochs, every, window,
# delta, factor, start epoch, eigenvalue of an epoch) -> (epoch at which the search stops, epoch returned).
RULE_CASES = {
    "flat": ((50, 2, 5, 4, 1.3, 10, lambda e: 1.0), (None, None)),
    "rising_after_20": ((50, 2, 5, 4, 1.3, 10, lambda e: 1.0 if e < 20 else 1.0 + 0.1 * (e - 20)), (28, 16)),
    # the ratio passes 1.3 from epoch 12 on, but the returned epoch must be >= 10: first at epoch 22
    "jump_at_10": ((50, 2, 5, 4, 1.3, 10, lambda e: 1.0 if e < 10 else 10.0), (22, 10)),
    # the ratio passes 1.3 only while the returned epoch is below 10: never stops
    "jump_at_8_blocked": ((50, 2, 5, 4, 1.3, 10, lambda e: 1.0 if e < 8 else 2.0), (None, None)),
    # the last epoch is measured but never checked (odd and even last epochs)
    "last_epoch_spike": ((50, 2, 5, 4, 1.3, 10, lambda e: 100.0 if e == 49 else 1.0), (None, None)),
    "last_epoch_even_spike": ((51, 2, 5, 4, 1.3, 10, lambda e: 100.0 if e == 50 else 1.0), (None, None)),
    "spike_at_48": ((50, 2, 5, 4, 1.3, 10, lambda e: 100.0 if e == 48 else 1.0), (48, 36)),
    "odd_epochs_ignored": ((50, 2, 5, 4, 1.3, 10, lambda e: 100.0 if e % 2 else 1.0), (None, None)),
    "short_search": ((20, 2, 5, 4, 1.3, 10, lambda e: 1.0 + e * e), (None, None)),
    "noisy_rise": ((50, 2, 5, 4, 1.3, 10, lambda e: 1.0 + 0.3 * math.sin(e) + max(0, e - 30) * 0.2), (34, 22)),
    "window4_delta2": ((30, 2, 4, 2, 1.3, 4, lambda e: 1.0 + (0.0 if e < 12 else 0.3 * (e - 10))), (14, 6)),
    "window3_every1": ((12, 1, 3, 2, 1.3, 3, lambda e: 1.0 if e < 4 else 1.5 ** (e - 3)), (6, 3)),
    "window1_every2_start0": ((6, 2, 1, 1, 1e-9, 0, lambda e: 0.5 + e), (2, 0)),
    # the rule of configs/rdarts_es_digits.yaml
    "digits_config_rule": ((10, 2, 3, 1, 1.3, 2, lambda e: 1.0 if e < 8 else 2.0), (8, 4)),
    "digits_config_rule_jump_at_4": ((10, 2, 3, 1, 1.3, 2, lambda e: 1.0 if e < 4 else 3.0), (6, 2)),
}


@pytest.mark.parametrize("case", list(RULE_CASES))
def test_eigenvalue_early_stop_decides_as_the_released_code(case):
    """Expected decisions from the released rule: automl/RobustDARTS at commit
    3dec3fedaa1770614bbfd4b98f5299d946ea7ac6, ``python /tmp/h1/golden/rdarts_es_golden.py``, a script that
    imports ``EVLocalAvg`` from that commit's ``src/utils.py`` and drives it as ``train()`` in
    ``src/search/train_search.py`` does (eigenvalue when ``epoch % report_freq_hessian == 0`` or in the last
    epoch, l.374; ``update`` then ``early_stop`` unless in the last epoch, l.421-425; the search ends when
    ``stop_search`` is set, l.178-194 with ``--early_stop 1``), on the histories above (every as a float,
    2.0, as the released argument parser gives it)."""
    (epochs, every, window, delta, factor, start, eigenvalue), expected = RULE_CASES[case]
    rule = EigenvalueEarlyStop(window=window, delta=delta, factor=factor, start_epoch=start, every=every)
    history: list[dict[str, float]] = []
    decision = (None, None)
    for epoch in range(epochs):
        if eigenvalue_measured(epoch, every, epochs):
            history.append({"epoch": epoch, "eigenvalue": eigenvalue(epoch)})
            returned = rule.check(history, epochs)
            if returned is not None:
                decision = (epoch, returned)
                break
    assert decision == expected


def test_eigenvalue_is_measured_at_even_epochs_and_the_last_without_changing_the_search(tmp_path, digits):
    """Epochs 0, 2, 4, … and the last one, as ``train_search.py`` l.374; the measurement leaves weights, α,
    batch-norm statistics and optimizer states exactly as a search without it."""
    runs = {}
    for every in (0, 2):
        pl.seed_everything(0)
        model = _small_search()
        eigenvalue = HessianEigenvalue(every=every) if every else None
        trainer = quick_trainer(tmp_path / str(every), max_epochs=2, callbacks=[eigenvalue] if eigenvalue else [])
        trainer.fit(model, digits)
        runs[every] = (model, trainer, eigenvalue)
    measured, trainer, eigenvalue = runs[2]
    assert [h["epoch"] for h in eigenvalue.history] == [0, 1]
    value = trainer.callback_metrics["arch/hessian_eigenvalue"]
    assert torch.isfinite(value) and value != 0
    plain = runs[0][0]
    assert plain.state_dict().keys() == measured.state_dict().keys()
    measured_state = measured.state_dict()
    assert all(torch.equal(v, measured_state[k]) for k, v in plain.state_dict().items())
    for a, b in zip(runs[0][1].optimizers, trainer.optimizers):
        states_a, states_b = a.state_dict()["state"], b.state_dict()["state"]
        assert states_a.keys() == states_b.keys()
        for i in states_a:
            assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(states_b[i][k])) for k, v in states_a[i].items())


def test_search_stops_early_and_returns_the_earlier_genotype(tmp_path):
    """A rule shortened so that a tiny search stops: every 2 epochs, window 1, delta 1, start epoch 2, so the
    check at epoch 2 (returned epoch 0) may not stop and the one at epoch 4 returns epoch 2."""
    pl.seed_everything(0)
    model = _small_search()
    eigenvalue = HessianEigenvalue(every=2, early_stop=True, window=1, delta=1, factor=1e-9, start_epoch=2)
    trainer = quick_trainer(tmp_path, max_epochs=8, callbacks=[eigenvalue])
    from darts_lightning import Genotype, SearchDataModule

    trainer.fit(model, SearchDataModule("digits", batch_size=16))
    assert [h["epoch"] for h in eigenvalue.history] == [0, 2, 4]
    assert eigenvalue.selected_epoch == 2
    assert trainer.current_epoch == 5  # stopped after epoch 4, not at 8
    assert model.selected_epoch == 2
    chosen = Genotype.from_dict(model.genotype_history[2]["genotype"])
    assert model.selected_genotype() == chosen
    assert model.genotype() != chosen  # the answer is the earlier genotype, not the last one
    assert Genotype.load(tmp_path / "lightning_logs" / "version_0" / "genotype.json") == chosen


def test_early_stop_without_eigenvalue_is_a_clear_error():
    with pytest.raises(ValueError, match="hessian_eigenvalue_every"):
        flat_search(eigenvalue_early_stop=True)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        HessianEigenvalue(every=0, early_stop=True)


@pytest.mark.parametrize("method", ["darts", "pcdarts", "nasbench201"])
def test_hessian_rows_in_batched_passes_equal_one_pass_per_row(method):
    """The batched double-backward passes give the Hessian of one pass per row, bit for bit, whatever the
    batch of rows (PC-DARTS adds β's rows; NAS-Bench-201's cell has its own α)."""
    from darts_lightning import NB201Space

    torch.manual_seed(0)
    if method == "nasbench201":
        model = DARTSSearch(space=NB201Space(channels=4, cells_per_stage=1), in_channels=1, image_size=8)
    else:
        model = DARTSSearch(space=DartsSpace(channels=4, layers=2, nodes=1, multiplier=1), in_channels=1,
                            image_size=8, **({"relaxation": "pcdarts"} if method == "pcdarts" else {}))
    net = model.network.double()
    x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randint(10, (4,))
    one_per_row = architecture_hessian(net, x, y, 1e-3, rows_per_pass=1)
    n = sum(a.numel() for a in net.arch_parameters())
    assert one_per_row.shape == (n, n) and one_per_row.abs().max() > 0
    for rows in (7, n, 4 * n):
        assert torch.equal(architecture_hessian(net, x, y, 1e-3, rows_per_pass=rows), one_per_row)
    with pytest.raises(ValueError, match="rows_per_pass"):
        architecture_hessian(net, x, y, rows_per_pass=0)
