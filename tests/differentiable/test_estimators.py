"""Architecture-gradient estimates: first order, and second order against the exact hypergradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from darts_lightning import SearchNetwork
from darts_lightning.differentiable.estimators import FirstOrderGradient, SecondOrderGradient, build_architecture_gradient

LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 3e-4


def _setup(dtype=torch.float64, seed=0):
    """A small supernet, two batches, and an SGD optimizer with a non-zero momentum buffer."""
    torch.manual_seed(seed)
    net = SearchNetwork(1, 10, channels=4, layers=3, nodes=3, multiplier=3, image_size=8).to(dtype)
    with torch.no_grad():  # α away from uniform, so the mixture is not symmetric
        for alpha in net.arch_parameters():
            alpha.normal_(0, 0.5)
    optimizer = torch.optim.SGD(net.weight_parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    x_prev, y_prev = torch.randn(8, 1, 8, 8, dtype=dtype), torch.randint(10, (8,))
    F.cross_entropy(net(x_prev), y_prev).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for alpha in net.arch_parameters():
        alpha.grad = None
    train = (torch.randn(8, 1, 8, 8, dtype=dtype), torch.randint(10, (8,)))
    val = (torch.randn(8, 1, 8, 8, dtype=dtype), torch.randint(10, (8,)))
    return net, optimizer, train, val


def _exact_hypergradient(net, optimizer, train, val, xi=LR):
    """d/dα L_val(w'(α), α) with w'(α) = w − ξ (∇w L_train(w, α) + μ v + λ w), by autograd through the step."""
    names, weights = zip(*net.named_weight_parameters())
    alphas = net.arch_parameters()
    buffers = lambda: {n: b.clone() for n, b in net.named_buffers()}  # noqa: E731
    params = {**dict(zip(names, weights)), "alpha_normal": alphas[0], "alpha_reduce": alphas[1]}
    train_loss = F.cross_entropy(functional_call(net, {**params, **buffers()}, (train[0],)), train[1])
    grads = torch.autograd.grad(train_loss, weights, create_graph=True)
    unrolled = {
        n: w - xi * (g + WEIGHT_DECAY * w + MOMENTUM * optimizer.state[w]["momentum_buffer"])
        for n, w, g in zip(names, weights, grads)
    }
    val_loss = F.cross_entropy(functional_call(net, {**params, **unrolled, **buffers()}, (val[0],)), val[1])
    return torch.autograd.grad(val_loss, alphas)


def _compare(got, want):
    got, want = torch.cat([g.flatten() for g in got]), torch.cat([w.flatten() for w in want])
    cosine = F.cosine_similarity(got, want, dim=0).item()
    relative = ((got - want).norm() / want.norm()).item()
    return cosine, relative


def test_finite_difference_matches_exact_hypergradient_with_small_epsilon():
    net, optimizer, train, val = _setup()
    estimate = SecondOrderGradient("finite_difference", epsilon=1e-6).estimate(net, val, train, optimizer)
    cosine, relative = _compare(estimate.grads, _exact_hypergradient(net, optimizer, train, val))
    assert cosine > 0.999 and relative < 1e-3, (cosine, relative)


def test_exact_mode_matches_autograd_through_the_unrolled_step():
    net, optimizer, train, val = _setup()
    estimate = SecondOrderGradient("exact").estimate(net, val, train, optimizer)
    for got, want in zip(estimate.grads, _exact_hypergradient(net, optimizer, train, val)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_second_order_term_matters():
    # The test above would pass for a first-order estimate if the Hessian term were negligible here.
    net, optimizer, train, val = _setup()
    first = FirstOrderGradient().estimate(net, val, train).grads
    cosine, relative = _compare(first, _exact_hypergradient(net, optimizer, train, val))
    assert relative > 1e-2


def test_paper_epsilon_is_a_coarser_approximation_on_relu_networks():
    # Documented behaviour: at ε = 0.01/‖∇w' L_val‖ the finite difference crosses ReLU and max-pool kinks.
    net, optimizer, train, val = _setup()
    exact = _exact_hypergradient(net, optimizer, train, val)
    small = _compare(SecondOrderGradient(epsilon=1e-6).estimate(net, val, train, optimizer).grads, exact)
    paper = _compare(SecondOrderGradient(epsilon=1e-2).estimate(net, val, train, optimizer).grads, exact)
    assert paper[1] > small[1]


def test_zero_xi_equals_first_order():
    net, optimizer, train, val = _setup()
    first = FirstOrderGradient().estimate(net, val, train).grads
    second = SecondOrderGradient(xi=0.0).estimate(net, val, train, optimizer).grads
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("hessian", ["finite_difference", "exact"])
def test_second_order_step_leaves_weights_statistics_and_optimizer_state_bit_identical(hessian):
    net, optimizer, train, val = _setup(dtype=torch.float32)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    momentum = {id(p): s["momentum_buffer"].clone() for p, s in optimizer.state.items()}
    SecondOrderGradient(hessian).estimate(net, val, train, optimizer)
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    for p, s in optimizer.state.items():
        assert torch.equal(s["momentum_buffer"], momentum[id(p)])
    assert all(p.grad is None for p in net.parameters())


def test_build_rejects_unknown_settings():
    with pytest.raises(ValueError, match="order must be 1 .* or 2"):
        build_architecture_gradient(3)
    with pytest.raises(ValueError, match="hessian must be one of finite_difference, exact"):
        build_architecture_gradient(2, hessian="lanczos")
    with pytest.raises(ValueError, match="epsilon must be a positive number"):
        build_architecture_gradient(2, epsilon=0.0)
