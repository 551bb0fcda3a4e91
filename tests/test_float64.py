"""Every tensor that enters arithmetic follows the network's dtype (and so its device).

A tensor the package creates with torch's default dtype or device, and then combines with the network's
tensors, is a bug that a CPU run in float32 cannot see: on a GPU it fails with a device mismatch (or costs
a synchronisation), in bf16 or float64 it silently changes the precision. Running the supernet of every
relaxation, both orders of the architecture gradient, the single-path supernet and the retraining network
in float64 under a recorder of every torch call finds the same class of mistake on a CPU: no call may mix
float32 and float64 tensors.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from darts_lightning.architect import build_architecture_gradient
from darts_lightning.eval_network import build_eval_network
from darts_lightning.network import SearchNetwork
from darts_lightning.nasbench201 import NB201Network


class MixedPrecisionCalls(TorchFunctionMode):
    """Records every torch call whose floating-point tensor arguments do not share one dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.mixed: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves, _ = tree_flatten((args, kwargs))
        dtypes = {t.dtype for t in leaves if isinstance(t, torch.Tensor) and t.is_floating_point()}
        if len(dtypes) > 1:
            self.mixed.append(f"{getattr(func, '__qualname__', func)} with {sorted(map(str, dtypes))}")
        return func(*args, **kwargs)


def _batch(in_channels: int = 1, size: int = 8, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, in_channels, size, size, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, 10, (n,), generator=generator)


SUPERNETS = {
    "darts": dict(relaxation="darts"),
    "pcdarts_edge_normalization": dict(relaxation="pcdarts", relaxation_args={"partial_channels": 2}, edge_normalization=True),
    "gdas": dict(relaxation="gdas"),
    "gdas_edge_normalization": dict(relaxation="gdas", edge_normalization=True),
    "snas": dict(relaxation="snas"),
    "drnas_kl": dict(relaxation="drnas", relaxation_args={"kl_weight": 1e-3}),
    "darts_auxiliary_skip": dict(relaxation="darts", auxiliary_skip=True),
}


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", sorted(SUPERNETS))
def test_supernet_and_architecture_gradient_stay_in_float64(name, order):
    torch.manual_seed(0)
    network = SearchNetwork(1, 10, channels=4, layers=2, **SUPERNETS[name]).double()
    network.relaxation.auxiliary_skip_weight = 0.5
    network.relaxation.set_sample_key(0, 0, 0)
    weights = network.weight_parameters()
    optimizer = torch.optim.SGD(weights, lr=0.1, momentum=0.9, weight_decay=3e-4)
    x, y = _batch()
    with MixedPrecisionCalls() as recorder:
        loss = F.cross_entropy(network(x), y)
        loss.backward()  # a weight step's gradient (and a momentum buffer for the second order)
        optimizer.step()
        optimizer.zero_grad()
        estimate = build_architecture_gradient(order).estimate(network, (x, y), (x, y), optimizer)
        for alpha in network.alphas().values():
            regularizer = network.relaxation.regularizer(alpha)
            if regularizer is not None:
                torch.autograd.grad(regularizer, alpha)
        network.genotype()
    assert recorder.mixed == []
    assert loss.dtype == torch.float64 and all(g.dtype == torch.float64 for g in estimate.grads)
    assert all(bool(torch.isfinite(g).all()) for g in estimate.grads)


def test_nasbench201_supernet_stays_in_float64():
    torch.manual_seed(0)
    network = NB201Network(None, num_classes=10, in_channels=1, channels=(4, 8, 16), cells_per_stage=1).double()
    x, y = _batch()
    with MixedPrecisionCalls() as recorder:
        F.cross_entropy(network(x), y).backward()
        network.derive()
    assert recorder.mixed == []


def test_retraining_network_with_drop_path_and_auxiliary_head_stays_in_float64():
    torch.manual_seed(0)
    network = build_eval_network("DARTS_V2", channels=4, layers=3, num_classes=10, in_channels=1, image_size=8).double()
    network.set_drop_path_prob(0.2)
    network.train()
    x, y = _batch()
    with MixedPrecisionCalls() as recorder:
        logits, logits_aux = network.forward_with_auxiliary(x)
        (F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(logits_aux, y)).backward()
    assert recorder.mixed == []
    assert logits.dtype == torch.float64


def test_the_recorder_sees_a_float32_tensor_mixed_in():
    """The check itself: a default-dtype tensor combined with a float64 one is reported."""
    with MixedPrecisionCalls() as recorder:
        torch.ones(2, dtype=torch.float64) * torch.ones(2)
    assert recorder.mixed and "float32" in recorder.mixed[0]
