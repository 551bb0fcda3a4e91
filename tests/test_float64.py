"""Every tensor that enters arithmetic follows the network's dtype (and so its device).

A tensor the package creates with torch's default dtype or device, and then combines with the network's
tensors, is a bug that a CPU run in float32 cannot see: on a GPU it fails with a device mismatch (or costs
a synchronisation), in bf16 or float64 it silently changes the precision. Running the supernet of every
relaxation, both orders of the architecture gradient, whole search steps with the collapse remedies, the
sampling relaxations' samples, the Hessian diagnostics, the discrete evaluators, the controller of
REINFORCE and the retraining network and its export in float64 under a recorder of every torch call finds
the same class of mistake on a CPU: no call may mix float32 and float64 tensors.
"""

from __future__ import annotations

import random
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from darts_lightning import DARTSSearch, SearchDataModule
from darts_lightning.differentiable.diagnostics import architecture_hessian, dominant_hessian_eigenvalue
from darts_lightning.differentiable.estimators import build_architecture_gradient
from darts_lightning.differentiable.relaxations import DirichletRelaxation, build_relaxation
from darts_lightning.differentiable.remedies import BetaDecay
from darts_lightning.discrete.evaluators import build_evaluator
from darts_lightning.discrete.searchers import Reinforce
from darts_lightning.discrete.weight_sharing import SinglePathSupernet, WeightSharingEvaluator
from darts_lightning.retrain.module import GenotypeClassifier, export_network
from darts_lightning.spaces import get_space
from darts_lightning.spaces.darts.network import build_eval_network
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.spaces.darts.supernet import SearchNetwork
from darts_lightning.spaces.nasbench201 import NB201Space, NB201Supernet

from .conftest import quick_trainer
from .searches import tiny_search


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


#: name -> (relaxation, its arguments, the supernet's options)
SUPERNETS = {
    "darts": ("darts", {}, {}),
    "pcdarts_edge_normalization": ("pcdarts", {"partial_channels": 2}, dict(edge_normalization=True)),
    "gdas": ("gdas", {}, {}),
    "gdas_edge_normalization": ("gdas", {}, dict(edge_normalization=True)),
    "snas": ("snas", {}, {}),
    "drnas_kl": ("drnas", {"kl_weight": 1e-3}, {}),
    "darts_auxiliary_skip": ("darts", {}, dict(auxiliary_skip=True)),
}


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", sorted(SUPERNETS))
def test_supernet_and_architecture_gradient_stay_in_float64(name, order):
    torch.manual_seed(0)
    relaxation, relaxation_args, options = SUPERNETS[name]
    network = SearchNetwork(1, 10, channels=4, layers=2, relaxation=build_relaxation(relaxation, **relaxation_args),
                            **options).double()
    network.auxiliary_skip_weight = 0.5
    network.set_sample_key(0, 0, 0)
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
    network = NB201Supernet(num_classes=10, in_channels=1, channels=(4, 8, 16), cells_per_stage=1).double()
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


# --------------------------------------------------------------------------- the search step, remedies and samples


def _without_lightning_frames(mixed: list[tuple[str, str]]) -> list[str]:
    return [call for call, caller in mixed if "pytorch_lightning" not in caller]


class MixedPrecisionCallsWithCaller(MixedPrecisionCalls):
    """:class:`MixedPrecisionCalls` that also keeps the file of the caller of every mixed call."""

    def __init__(self) -> None:
        super().__init__()
        self.callers: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        before = len(self.mixed)
        result = super().__torch_function__(func, types, args, kwargs)
        if len(self.mixed) > before:
            self.callers.append((self.mixed[-1], sys._getframe(1).f_code.co_filename))
        return result


SEARCHES = {
    # GDAS's host-side sample meets the edge-normalisation scales; drop-path masks; DARTS-'s auxiliary skip;
    # β-DARTS's β-decay term (λ > 0 from the second epoch on)
    "gdas_edge_normalization_remedies": dict(relaxation="gdas", edge_normalization=True, search_drop_path=0.2,
                                             auxiliary_skip=True, beta_decay_max=1.0),
    # DrNAS's KL term beside the β-decay term
    "drnas_kl_beta_decay": dict(relaxation="drnas", relaxation_args={"kl_weight": 1e-3}, beta_decay_max=1.0),
}


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_search_steps_stay_in_float64(name, tmp_path):
    """Whole search steps in float64 (Lightning's ``64-true``), with torch's default dtype set back to float32
    inside the step: a tensor the package makes with the default dtype is float32 there and shows as a mixed
    call. Lightning's own result accumulation, which the reset default dtype also mixes, is left out."""
    torch.manual_seed(0)
    model = tiny_search(layers=2, **SEARCHES[name])
    recorder = MixedPrecisionCallsWithCaller()
    step = model.training_step

    def recorded(*args, **kwargs):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            with recorder:
                return step(*args, **kwargs)
        finally:
            torch.set_default_dtype(previous)

    model.training_step = recorded
    trainer = quick_trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0, precision="64-true")
    trainer.fit(model, SearchDataModule("digits", batch_size=4))
    beta_decay, = [r for r in model.remedies if isinstance(r, BetaDecay)]
    assert trainer.global_step == 4 and beta_decay.weight(1, 2) > 0
    assert _without_lightning_frames(recorder.callers) == []
    assert all(p.dtype == torch.float64 for p in model.arch_parameters())
    assert all(bool(torch.isfinite(p).all()) for p in model.arch_parameters())


def test_beta_decay_regularizer_and_its_gradient_stay_in_float64():
    model = DARTSSearch(space=DartsSpace(channels=4, layers=2), relaxation=DirichletRelaxation(kl_weight=1e-3),
                        remedies=[BetaDecay(max_weight=1.0)], in_channels=1, image_size=8).double()
    model._trainer = SimpleNamespace(max_epochs=4, current_epoch=2)  # λ = 1.0 · 2 / 4
    assert model.remedies[0].weight(model.current_epoch, model.epochs()) == 0.5
    with MixedPrecisionCalls() as recorder:
        regularizer = model.architecture_regularizer()
        grads = torch.autograd.grad(regularizer, model.arch_parameters(), allow_unused=True)
    assert recorder.mixed == []
    assert regularizer.dtype == torch.float64 and all(g.dtype == torch.float64 for g in grads if g is not None)


def test_sampling_relaxations_compute_their_samples_in_float64():
    """A float64 α gets a sample computed in float64 (at least float32: the noise is the same draw in every
    dtype), not a float32 sample cast up: GDAS's straight-through weights are one-hot to float64 rounding,
    SNAS's equal the float64 Gumbel-softmax of the same noise, a DrNAS sample sums to 1 in float64."""
    torch.manual_seed(0)
    alpha = torch.randn(14, 8, dtype=torch.float64, requires_grad=True)
    for name in ("gdas", "snas", "drnas"):
        relaxation = build_relaxation(name)
        with MixedPrecisionCalls() as recorder:
            weights = relaxation.mixing(alpha, torch.Generator().manual_seed(35)).weights
            torch.autograd.grad(weights[:, 2].sum(), alpha)
        assert recorder.mixed == [] and weights.dtype == torch.float64, name
        if name == "drnas":
            torch.testing.assert_close(weights.sum(-1), torch.ones(14, dtype=torch.float64), rtol=0, atol=1e-13)
            continue
        noise = relaxation.gumbel_noise(alpha.shape, torch.Generator().manual_seed(35)).double()
        expected = torch.softmax((torch.log_softmax(alpha.detach(), dim=-1) + noise) / relaxation.tau, dim=-1)
        if name == "gdas":
            expected = F.one_hot(expected.argmax(-1), 8).double()
        torch.testing.assert_close(weights.detach(), expected, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------- diagnostics and discrete evaluation


def test_architecture_hessian_and_its_eigenvalue_stay_in_float64():
    torch.manual_seed(0)
    network = SearchNetwork(1, 10, channels=4, layers=2, nodes=2, multiplier=2, edge_normalization=True,
                            op_names=["none", "skip_connect", "sep_conv_3x3", "avg_pool_3x3"]).double()
    x, y = _batch()
    with MixedPrecisionCalls() as recorder:
        hessian = architecture_hessian(network, x, y, weight_decay=1e-3)
        value = dominant_hessian_eigenvalue(network, x, y, weight_decay=1e-3)
    assert recorder.mixed == []
    assert hessian.dtype == torch.float64 and hessian.shape == (2 * 5 * 4 + 2 * 5,) * 2
    assert value == pytest.approx(float(torch.linalg.eigvalsh(hessian)[-1]), rel=1e-9)


@pytest.mark.parametrize("space", ["nasbench201", "darts"])
def test_weight_sharing_evaluator_scores_a_float64_supernet(space):
    """The evaluator's batches (float32 images) follow the supernet's dtype, for the batch-norm re-estimation
    and the scoring."""
    torch.manual_seed(0)
    space = NB201Space(channels=4, cells_per_stage=1) if space == "nasbench201" else DartsSpace(channels=4, layers=2)
    supernet = SinglePathSupernet(space, in_channels=1, num_classes=10, image_size=8).double()
    evaluator = WeightSharingEvaluator(space, supernet, data=SearchDataModule("digits", batch_size=4), batches=2,
                                       bn_batches=2)
    with MixedPrecisionCalls() as recorder:
        result = evaluator.evaluate(supernet.path_at(0))
    assert recorder.mixed == []
    assert 0.0 <= result.reward <= 1.0 and result.metrics["images"] == 8


def test_scratch_evaluator_scores_a_network_trained_in_float64():
    """Lightning's ``64-true`` leaves the trained proxy network in float64: the holdout batches follow it."""
    evaluator = build_evaluator("scratch", "nasbench201", epochs=1, channels=4, layers=1,
                                data={"dataset": "digits", "batch_size": 32},
                                trainer_args={"limit_train_batches": 1, "precision": "64-true"})
    result = evaluator.evaluate(get_space("nasbench201").sample(random.Random(0)))
    assert 0.0 <= result.reward <= 1.0 and result.metrics["steps"] == 1


def test_a_float64_retrained_network_is_exported_in_float64(tmp_path):
    """The example input of the torch.export and ONNX traces follows the network's dtype (a float32 example
    fails the trace, and the export writes torch_export_failed.txt and onnx_failed.txt instead)."""
    model = GenotypeClassifier(genotype="DARTS_V2", in_channels=1, num_classes=10, image_size=8, channels=4,
                               layers=3, auxiliary_weight=0.0).double()
    written = export_network(model, tmp_path)
    failures = {p.name: p.read_text() for p in tmp_path.glob("*_failed.txt") if p.name != "latency_failed.txt"}
    assert "torch_export" in written and "onnx" in written, failures
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    model.eval()
    program = torch.export.load(str(written["torch_export"])).module()
    torch.testing.assert_close(program(x), model.network(x))


def test_the_lstm_controller_runs_in_float64():
    searcher = Reinforce("nasbench201", seed=0, controller="lstm")
    searcher.policy.double()
    with MixedPrecisionCalls() as recorder:
        arch = searcher.ask()
        searcher.tell(arch, 0.5)
        searcher.tell(searcher.ask(), 0.7)
    assert recorder.mixed == []
    assert all(p.dtype == torch.float64 for p in searcher.policy.parameters())
