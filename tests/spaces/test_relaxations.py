"""The mathematics of each relaxation of the DARTS family, on small tensors."""

from __future__ import annotations

import pytest
import torch

from darts_lightning.differentiable.relaxations import (
    DirichletRelaxation,
    GumbelRelaxation,
    build_relaxation,
    list_relaxations,
    temperature_schedule,
)
from darts_lightning.spaces.edges import MixedEdge
from darts_lightning.spaces.mixing import Relaxation, channel_shuffle
from darts_lightning.spaces.ops import DARTS_OPS
from darts_lightning.spaces.supernet import Supernet


def _alpha(rows: int = 3, ops: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, ops, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def _generator(seed: int, step: int, phase: int, name: str = "normal") -> torch.Generator:
    """The generator a supernet seeds for the sample key ``(seed, step, phase)`` and cell type ``name``."""
    net = Supernet(Relaxation())
    net.set_sample_key(seed, step, phase)
    return net.generator(name)


def _weights(relaxation: Relaxation, alpha: torch.Tensor, step: int = 0, name: str = "normal") -> torch.Tensor:
    return relaxation.mixing(alpha, _generator(0, step, 0, name)).weights


# ----------------------------------------------------------------------------- registry


def test_family_is_registered_and_unknown_names_list_the_valid_ones():
    assert {"darts", "pcdarts", "gdas", "snas", "drnas"} <= set(list_relaxations())
    with pytest.raises(ValueError, match="valid relaxations are: .*gdas"):
        build_relaxation("gumbel")
    with pytest.raises(ValueError, match="unknown key 'tau'; valid keys are: tau_max, tau_min"):
        build_relaxation("gdas", tau=3)
    assert build_relaxation("pcdarts").partial_channels == 4
    assert build_relaxation("pcdarts", partial_channels=2).partial_channels == 2
    with pytest.raises(ValueError, match="partial_channels"):
        build_relaxation("darts", partial_channels=0)


# ----------------------------------------------------------------------------- PC-DARTS


def test_channel_shuffle_is_a_permutation_that_interleaves_groups():
    x = torch.arange(8.0).view(1, 8, 1, 1).expand(2, 8, 3, 3).contiguous()
    out = channel_shuffle(x, 4)
    order = out[0, :, 0, 0].tolist()
    assert sorted(order) == list(range(8))
    # groups {0,1} {2,3} {4,5} {6,7} are interleaved: one channel of each group in turn
    assert order == [0, 2, 4, 6, 1, 3, 5, 7]
    assert torch.equal(channel_shuffle(out, 2), x)  # the inverse is the shuffle with C/K groups
    with pytest.raises(ValueError, match="cannot shuffle 6 channels into 4 groups"):
        channel_shuffle(torch.zeros(1, 6, 2, 2), 4)


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_edge_mixes_a_quarter_and_bypasses_the_rest(stride):
    torch.manual_seed(0)
    relaxation = build_relaxation("pcdarts")
    edge = MixedEdge(DARTS_OPS, 8, stride, relaxation)
    assert all(m.in_channels == 2 for m in edge.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(2, 8, 6, 6)
    weights = torch.softmax(torch.randn(len(DARTS_OPS)), dim=-1)
    out = edge(x, weights)
    assert out.shape == (2, 8, 6 // stride, 6 // stride)

    mixed = relaxation.mix(edge, x[:, :2], weights)
    bypass = x[:, 2:] if stride == 1 else torch.nn.functional.max_pool2d(x[:, 2:], 2, 2)
    assert torch.allclose(out, channel_shuffle(torch.cat([mixed, bypass], 1), 4))
    # channel c of the concatenation lands at position (c % 2) * 4 + c // 2
    for c in range(2, 8):
        assert torch.equal(out[:, (c % 2) * 4 + c // 2], bypass[:, c - 2])


def test_partial_channels_need_divisible_channels():
    with pytest.raises(ValueError, match="divisible by K"):
        MixedEdge(DARTS_OPS, 6, 1, build_relaxation("pcdarts"))


# ----------------------------------------------------------------------------- GDAS and SNAS


def test_gdas_weights_are_one_hot_and_every_alpha_gets_a_gradient():
    relaxation = build_relaxation("gdas")
    alpha = _alpha()
    weights = _weights(relaxation, alpha, step=5)
    assert torch.equal(weights.detach().sum(-1), torch.ones(3))
    assert torch.equal((weights.detach() == 1).sum(-1), torch.ones(3, dtype=torch.long))
    assert set(weights.detach().unique().tolist()) <= {0.0, 1.0}
    (weights * torch.randn(3, 8)).sum().backward()
    assert (alpha.grad != 0).all(), "the straight-through estimator must reach every alpha"


def test_gdas_edge_computes_only_the_sampled_op():
    torch.manual_seed(0)
    relaxation = build_relaxation("gdas")
    edge = MixedEdge(DARTS_OPS, 4, 1, relaxation)
    calls = set()
    for index, op in zip(edge.op_indices, edge.ops):
        for module in op.modules():  # ops that start with a ReLU run layer by layer
            module.register_forward_hook(lambda m, i, o, index=index: calls.add(index))
    alpha = torch.zeros(1, len(DARTS_OPS), requires_grad=True)  # every op equally likely
    x = torch.randn(2, 4, 5, 5)
    sampled = set()
    for step in range(40):
        calls.clear()
        alpha.grad = None
        mixing = relaxation.mixing(alpha, _generator(0, step, 0, "alpha"))
        weights = mixing.weights[0]
        column = int(weights.argmax())
        assert mixing.columns == [column]
        sampled.add(column)
        out = edge(x, weights, column=column)
        assert calls == ({column} if column in edge.op_indices else set()), f"step {step}: sampled {column}"
        assert torch.allclose(out, edge.op_output(column, x))
        if column in edge.op_indices:
            (out * torch.randn_like(out)).sum().backward()  # (a plain sum of a batch-normalised output is 0)
            assert (alpha.grad != 0).all(), "the straight-through estimator must reach every alpha"
    assert sampled == set(range(len(DARTS_OPS))), "every op, none included, was sampled at least once"


def test_gdas_weights_live_on_alphas_device_and_dtype_and_the_sampled_op_on_the_host(monkeypatch):
    from darts_lightning.spaces.darts.supernet import SearchNetwork

    relaxation = build_relaxation("gdas")
    alpha = _alpha().double()
    mixing = relaxation.mixing(alpha, _generator(0, 2, 1))
    weights = mixing.weights
    assert weights.dtype == alpha.dtype and weights.device == alpha.device
    assert mixing.columns == weights.argmax(-1).tolist()
    assert build_relaxation("snas").mixing(alpha, _generator(0, 2, 1)).columns is None

    # Under edge normalisation the hard weights meet β's scale (on the network's device): one device, one
    # dtype; and the edges take their op from the host-side sample, never reading the weights back.
    torch.manual_seed(0)
    net = SearchNetwork(1, 10, channels=4, layers=2, relaxation=build_relaxation("gdas"), edge_normalization=True).double()
    def no_device_read(*args, **kwargs):
        raise AssertionError("the sampled op must come from the host-side sample")
    monkeypatch.setattr(torch, "argmax", no_device_read)
    out = net(torch.randn(2, 1, 8, 8, dtype=torch.float64))
    out.sum().backward()
    assert out.dtype == torch.float64 and net.beta_reduce.grad is not None


def test_gdas_redraws_non_finite_samples():
    class Flaky(GumbelRelaxation):
        draws = 0

        def gumbel_noise(self, shape, generator):
            Flaky.draws += 1
            noise = super().gumbel_noise(shape, generator)
            return noise.fill_(float("inf")) if Flaky.draws <= 2 else noise

    relaxation = Flaky(hard=True)
    weights = _weights(relaxation, _alpha())
    assert Flaky.draws == 3 and torch.isfinite(weights).all()

    class Broken(GumbelRelaxation):
        def gumbel_noise(self, shape, generator):
            return torch.full(shape, float("nan"))

    with pytest.raises(FloatingPointError, match="non-finite"):
        _weights(Broken(hard=True, max_draws=4), _alpha())


def test_samples_are_a_function_of_the_key():
    relaxation = build_relaxation("snas")
    alpha = _alpha()

    def draw(seed, step, phase, name="normal"):
        return relaxation.mixing(alpha, _generator(seed, step, phase, name)).weights.detach()

    assert torch.equal(draw(0, 3, 0), draw(0, 3, 0))
    for other in (draw(1, 3, 0), draw(0, 4, 0), draw(0, 3, 1), draw(0, 3, 0, "reduce")):
        assert not torch.equal(draw(0, 3, 0), other)


def test_snas_weights_are_a_soft_sample_that_sharpens_as_the_temperature_falls():
    relaxation = build_relaxation("snas", tau_max=1.0, tau_min=0.03)
    alpha = _alpha(200)
    warm = _weights(relaxation, alpha).detach()
    assert torch.allclose(warm.sum(-1), torch.ones(200)) and (warm > 0).all()
    relaxation.update_schedule(9, 10)
    assert relaxation.tau == pytest.approx(0.03)
    cold = _weights(relaxation, alpha).detach()
    assert cold.max(-1).values.mean() > warm.max(-1).values.mean() + 0.3


def test_temperature_schedules():
    # GDAS: linear from tau_max at the first epoch to tau_min at the last
    assert [temperature_schedule(e, 5, 10.0, 0.1) for e in range(5)] == pytest.approx([10.0, 7.525, 5.05, 2.575, 0.1])
    # SNAS (SNAS-Series 9a43adb, SNAS/utils.py Temp_Scheduler, stepped as SNAS/train_search.py does): golden
    # figures of that class run over 150 epochs from 1 to 0.03.
    snas_golden = {0: 0.9935333333333333, 1: 0.9870666666666666, 2: 0.9806, 74: 0.515, 148: 0.03646666666666671, 149: 0.03}
    snas = [temperature_schedule(e, 150, 1.0, 0.03, "snas") for e in snas_golden]
    assert snas == pytest.approx(list(snas_golden.values()), rel=1e-12)
    assert temperature_schedule(4, 5, 1.0, 0.01, "exponential") == pytest.approx(0.01)
    assert temperature_schedule(2, 5, 1.0, 0.01, "exponential") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="linear"):
        temperature_schedule(0, 5, 1.0, 0.1, "cosine")
    with pytest.raises(ValueError, match="tau_max >= tau_min > 0"):
        GumbelRelaxation(tau_max=0.1, tau_min=1.0)


# ----------------------------------------------------------------------------- DrNAS


def test_dirichlet_samples_lie_on_the_simplex_and_are_reparameterised():
    relaxation = build_relaxation("drnas")
    alpha = _alpha(50)
    weights = _weights(relaxation, alpha, step=1)
    assert (weights >= 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(50), atol=1e-6)
    (weights * torch.randn(50, 8)).sum().backward()
    assert (alpha.grad != 0).all(), "the pathwise gradient of the Dirichlet sample must reach alpha"
    concentration = torch.nn.functional.elu(alpha.detach()) + 1
    assert torch.allclose(relaxation.expected_weights(alpha.detach()), concentration / concentration.sum(-1, keepdim=True))
    # the genotype is derived from softmax(alpha), as DrNAS's code does
    assert torch.allclose(relaxation.derivation_weights(alpha.detach()), torch.softmax(alpha.detach(), -1))


def test_dirichlet_sample_mean_approaches_the_concentration_mean():
    relaxation = DirichletRelaxation()
    alpha = torch.tensor([[2.0, 0.0, -0.5, 1.0]])
    samples = []
    for step in range(2000):
        samples.append(_weights(relaxation, alpha, step=step))
    mean = torch.cat(samples).mean(0)
    assert torch.allclose(mean, relaxation.expected_weights(alpha)[0], atol=0.02)


def test_drnas_kl_regulariser_is_the_closed_form_dirichlet_kl():
    alpha = _alpha(4)
    relaxation = DirichletRelaxation(kl_weight=0.5, prior=1.0)
    a = torch.nn.functional.elu(alpha.detach()) + 1
    b = torch.ones_like(a)
    kl = (
        torch.lgamma(a.sum(-1)) - torch.lgamma(a).sum(-1) - torch.lgamma(b.sum(-1)) + torch.lgamma(b).sum(-1)
        + ((a - b) * (torch.digamma(a) - torch.digamma(a.sum(-1, keepdim=True)))).sum(-1)
    )
    assert torch.allclose(relaxation.regularizer(alpha), 0.5 * kl.sum(), rtol=1e-5)
    assert DirichletRelaxation().regularizer(alpha) is None  # DrNAS's default: L2 through Adam's weight decay


# ----------------------------------------------------------------------------- DARTS-


@pytest.mark.parametrize("stride", [1, 2])
def test_auxiliary_skip_adds_the_scaled_skip(stride):
    torch.manual_seed(0)
    relaxation = build_relaxation("darts")
    edge = MixedEdge(DARTS_OPS, 4, stride, relaxation, auxiliary_skip=True)
    x = torch.randn(2, 4, 6, 6)
    weights = torch.softmax(torch.randn(len(DARTS_OPS)), -1)
    plain = edge(x, weights)
    assert torch.equal(edge(x, weights, skip_weight=0.0), plain)
    skip = x if stride == 1 else edge.auxiliary_skip(x)
    assert torch.allclose(edge(x, weights, skip_weight=0.3), plain + 0.3 * skip, atol=1e-6)
    if stride == 2:
        assert type(edge.auxiliary_skip).__name__ == "FactorizedReduce"
