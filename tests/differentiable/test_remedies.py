"""Remedies against collapse as parts of the search: PC-DARTS's warm-up, DARTS-'s auxiliary skip connection,
β-DARTS's β-decay and SDARTS's perturbations of the weight step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import DARTSSearch
from darts_lightning.differentiable.estimators import FirstOrderGradient
from darts_lightning.differentiable.optimizers import ArchOptimizer
from darts_lightning.differentiable.remedies import (
    REMEDIES,
    AdversarialPerturbation,
    ArchWarmup,
    AuxiliarySkip,
    BetaDecay,
    RandomSmoothing,
    Remedy,
    clip_rows_,
    pgd_perturbation,
    random_perturbation,
)
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.spaces.edges import MixedEdge
from darts_lightning.spaces.nasbench201 import NB201Space
from tests.conftest import quick_trainer


def _search(*remedies: Remedy | str, space=None) -> DARTSSearch:
    """A normal and two reduction cells of two nodes, C = 4, for the digits (or the given space)."""
    space = space or DartsSpace(channels=4, layers=3, nodes=2, multiplier=2)
    return DARTSSearch(space=space, arch_optimizer=ArchOptimizer(lr=3e-2), remedies=list(remedies), in_channels=1,
                       image_size=8)


def test_arch_warmup_holds_alpha_for_its_epochs_while_the_weights_train(tmp_path, digits):
    assert [ArchWarmup(epochs=2).arch_moves(e) for e in range(4)] == [False, False, True, True]
    assert ArchWarmup(epochs=0).arch_moves(0)
    pl.seed_everything(0)
    model = _search(ArchWarmup(epochs=1))
    alpha = {n: a.detach().clone() for n, a in model.network.named_arch_parameters().items()}
    stem = model.network.stem[0].weight.detach().clone()
    seen = []

    class EndOfEpoch(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append((pl_module.arch_moves(),
                         {n: a.detach().clone() for n, a in pl_module.network.named_arch_parameters().items()},
                         pl_module.network.stem[0].weight.detach().clone()))

    quick_trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False,
                  enable_checkpointing=False, callbacks=[EndOfEpoch()]).fit(model, digits)
    (moves_0, alpha_0, stem_0), (moves_1, alpha_1, _) = seen
    assert not moves_0 and moves_1
    assert all(torch.equal(alpha[n], alpha_0[n]) for n in alpha), "α is held in the warm-up epoch"
    assert not torch.equal(stem, stem_0), "the weights train during the warm-up"
    assert all(not torch.equal(alpha[n], alpha_1[n]) for n in alpha), "α moves after the warm-up"


def test_auxiliary_skip_decays_its_weight_and_gives_every_mixed_edge_a_skip_connection():
    """DARTS- (Chu et al., ICLR 2021): β_t = (E − t) / E in epoch t of E, on a skip connection the supernet
    adds to every mixed edge (a factorized reduction on the edges of stride 2)."""
    model = _search(AuxiliarySkip())
    edges = [m for m in model.network.modules() if isinstance(m, MixedEdge)]
    assert edges and all(e.auxiliary_skip is not None for e in edges)
    assert {type(e.auxiliary_skip).__name__ for e in edges} == {"Identity", "FactorizedReduce"}
    remedy = model.remedies[0]
    logged = [remedy.on_epoch_start(model.network, epoch, 4) for epoch in range(4)]
    assert logged == [{"auxiliary_skip_weight": w} for w in (1.0, 0.75, 0.5, 0.25)]
    assert model.network.auxiliary_skip_weight == 0.25

    # The weight scales the skip connection: the supernet's output depends on it.
    model.network.eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        outputs = []
        for weight in (0.0, 1.0):
            model.network.auxiliary_skip_weight = weight
            outputs.append(model.network(x))
    assert not torch.allclose(*outputs)

    plain = _search()
    assert plain.network.auxiliary_skip_weight == 0.0
    assert all(m.auxiliary_skip is None for m in plain.network.modules() if isinstance(m, MixedEdge))
    nb201 = _search(AuxiliarySkip(), space=NB201Space(channels=4, cells_per_stage=1))
    assert all(m.auxiliary_skip is not None for m in nb201.network.modules() if isinstance(m, MixedEdge))


def test_auxiliary_skip_weight_is_set_by_epoch_in_a_search(tmp_path, digits):
    model = _search(AuxiliarySkip())
    weights = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            weights.append(pl_module.network.auxiliary_skip_weight)

    quick_trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=0, callbacks=[Record()]).fit(model, digits)
    assert weights == [1.0, 0.5]
    assert "arch/auxiliary_skip_weight" in model.trainer.callback_metrics


def test_beta_decay_term_is_the_formula_and_its_gradient_the_beta_decay():
    """β-DARTS (Ye et al., CVPR 2022): λ_t · Σ_cells mean_edges logsumexp(α_edge) with λ_t = max_weight · t / E,
    whose gradient with respect to α is λ_t · softmax(α) / #edges."""
    remedy = BetaDecay(max_weight=10.0)
    assert [remedy.weight(e, 4) for e in range(4)] == [0.0, 2.5, 5.0, 7.5]
    model = _search(remedy)
    with torch.no_grad():
        for alpha in model.network.arch_parameters():
            alpha.normal_()
    assert remedy.arch_loss(model.network, 0, 4) is None, "no term while λ is 0"
    alphas = model.network.alphas()
    term = remedy.arch_loss(model.network, 2, 4)
    expected = 5.0 * sum(torch.logsumexp(a, -1).mean() for a in alphas.values())
    assert torch.allclose(term, expected)
    grads = torch.autograd.grad(term, list(alphas.values()))
    for g, a in zip(grads, alphas.values()):
        assert torch.allclose(g, 5.0 * torch.softmax(a.detach(), -1) / a.shape[0], atol=1e-6)

    # The search adds it to the architecture loss in the trainer's epoch of its planned epochs.
    model._trainer = SimpleNamespace(max_epochs=4, current_epoch=2)
    assert torch.allclose(model.architecture_regularizer(), expected)
    model._trainer = SimpleNamespace(max_epochs=4, current_epoch=0)
    assert model.architecture_regularizer() is None
    plain = _search()
    plain._trainer = SimpleNamespace(max_epochs=4, current_epoch=2)
    assert plain.architecture_regularizer() is None


def test_remedies_are_registered_by_name_and_recorded_as_plain_configs():
    assert {"arch_warmup", "auxiliary_skip", "beta_decay"} <= set(REMEDIES.names())
    model = _search("arch_warmup", "auxiliary_skip", BetaDecay(max_weight=2.0))
    assert [type(r) for r in model.remedies] == [ArchWarmup, AuxiliarySkip, BetaDecay]
    assert model.remedies[0].epochs == 15, "a name takes the remedy's defaults (PC-DARTS: 15 epochs)"
    assert model.hparams["remedies"] == [
        {"class_path": "darts_lightning.differentiable.remedies.ArchWarmup", "init_args": {"epochs": 15}},
        {"class_path": "darts_lightning.differentiable.remedies.AuxiliarySkip", "init_args": {}},
        {"class_path": "darts_lightning.differentiable.remedies.BetaDecay", "init_args": {"max_weight": 2.0}},
    ]
    rebuilt = DARTSSearch(**model.hparams)
    assert [r.config() for r in rebuilt.remedies] == model.hparams["remedies"]
    with pytest.raises(ValueError, match="unknown remedy 'warmup'; valid remedies are: adversarial_perturbation, arch_warmup, "
                                         "auxiliary_skip, beta_decay, cost_budget, random_smoothing"):
        _search("warmup")
    with pytest.raises(ValueError, match=r"model\.remedies\[0\]: darts_lightning\.spaces\.darts\.space\.DartsSpace is not "
                                         r"a Remedy"):
        _search({"class_path": "darts_lightning.spaces.darts.space.DartsSpace"})
    with pytest.raises(ValueError, match="epochs must be a non-negative integer"):
        ArchWarmup(epochs=-1)


def test_the_base_remedy_changes_nothing():
    remedy, network = Remedy(), _search().network
    assert remedy.arch_moves(0) and remedy.on_epoch_start(network, 0, 2) == {} and remedy.arch_loss(network, 1, 2) is None
    assert not remedy.adds_auxiliary_skip and not remedy.perturbs_weight_step


# ---------------------------------------------------------------------- SDARTS

# Golden values of the released SDARTS code (xiangning-chen/SmoothDARTS at d3dbfed, attacker/perturb.py:
# Random_alpha and Linf_PGD_alpha with its defaults, 7 steps and a random start), run on torch 2 on a toy
# model whose forward pass with updateType='weight' gives _toy_loss below, whose arch_parameters() are the
# two tensors of _toy_data() after the released softmax_arch_parameters, and whose clip() is the released
# Network.clip (sota/cnn/model_search.py); torch.manual_seed(5) before each call, ε as in each name.
GOLDEN = {
    "rs 0.3": [
        [[0.5470900535583496, 0.0, 0.16967368125915527, 0.28323617577552795],
         [0.28930121660232544, 0.0, 0.1225028932094574, 0.5881959199905396],
         [0.0, 0.42749831080436707, 0.20575577020645142, 0.36674588918685913]],
        [[0.0, 0.5976662635803223, 0.1677342802286148, 0.2345995008945465],
         [0.34054651856422424, 0.43218159675598145, 0.0, 0.2272718846797943]],
    ],
    "adv 0.1": [
        [[0.48072198033332825, 0.1474529355764389, 0.10280206054449081, 0.26902297139167786],
         [0.0, 0.1452588140964508, 0.3308337926864624, 0.5239074230194092],
         [0.19798937439918518, 0.3023483455181122, 0.0820372998714447, 0.41762498021125793]],
        [[0.0, 0.7035620808601379, 0.16761678457260132, 0.12882111966609955],
         [0.27060723304748535, 0.40096449851989746, 0.16421926021575928, 0.1642090529203415]],
    ],
    "adv 0.3": [
        [[0.28920868039131165, 0.21935221552848816, 0.2359212189912796, 0.2555178701877594],
         [0.0, 0.2748551368713379, 0.30509471893310547, 0.42005014419555664],
         [0.27135148644447327, 0.37099689245224, 0.0, 0.35765162110328674]],
        [[0.0, 0.6719473600387573, 0.32805269956588745, 0.0],
         [0.2614990770816803, 0.2731364071369171, 0.21825091540813446, 0.24711361527442932]],
    ],
}
# The released Network.clip on [[-0.2, -0.5, -0.1, -0.3], [0.5, 1.4, -0.2, 0.1], [0.3, 0.3, 0.3, 0.3]].
GOLDEN_CLIP = [[0.0, 0.0, 1.0, 0.0], [0.3125, 0.625, 0.0, 0.0625], [0.25, 0.25, 0.25, 0.25]]


def _toy_data():
    g = torch.Generator().manual_seed(0)
    alphas = [torch.randn(3, 4, generator=g), torch.randn(2, 4, generator=g)]
    features = [torch.randn(3, 4, 5, 6, generator=g), torch.randn(2, 4, 5, 6, generator=g)]
    x = torch.randn(8, 5, generator=g)
    y = torch.randint(0, 6, (8,), generator=g)
    return alphas, features, x, y


def _toy_loss(weights):
    _, features, x, y = _toy_data()
    logits = sum(torch.einsum("eo,eobc,nb->nc", w, torch.tanh(f), x) for w, f in zip(weights, features))
    return torch.nn.functional.cross_entropy(logits, y)


def test_sdarts_perturbations_reproduce_the_released_code():
    alphas = [torch.softmax(a, -1) for a in _toy_data()[0]]
    rs = random_perturbation(alphas, 0.3, torch.Generator().manual_seed(5))
    for w, golden in zip(rs, GOLDEN["rs 0.3"]):
        assert torch.allclose(w, torch.tensor(golden), atol=1e-6)
    for epsilon in (0.1, 0.3):
        adv = pgd_perturbation(alphas, _toy_loss, epsilon, 7, torch.Generator().manual_seed(5))
        for w, golden in zip(adv, GOLDEN[f"adv {epsilon}"]):
            assert torch.allclose(w, torch.tensor(golden), atol=1e-6)
            assert torch.allclose(w.sum(-1), torch.ones(w.shape[0]), atol=1e-6) and bool((w >= 0).all())
        assert _toy_loss(adv) > _toy_loss(alphas), "the attack raises the loss"
    rows = torch.tensor([[-0.2, -0.5, -0.1, -0.3], [0.5, 1.4, -0.2, 0.1], [0.3, 0.3, 0.3, 0.3]])
    assert torch.allclose(clip_rows_(rows), torch.tensor(GOLDEN_CLIP))


def test_pgd_keeps_the_unperturbed_weights_when_the_attack_lowers_the_loss():
    """Linf_PGD_alpha restores the saved weights when loss_before > loss_after."""
    alphas = [torch.softmax(a, -1) for a in _toy_data()[0]]
    moved = pgd_perturbation(alphas, _toy_loss, 0.1, 7, torch.Generator().manual_seed(5))
    assert not all(torch.equal(m, a) for m, a in zip(moved, alphas))
    # A loss with its maximum at the unperturbed weights: every perturbation lowers it.
    target = [m.detach().clone() for m in moved]
    peak = lambda ws: -sum(((w - t) ** 2).sum() for w, t in zip(ws, target))  # noqa: E731
    kept = pgd_perturbation(target, peak, 0.1, 7, torch.Generator().manual_seed(5))
    assert all(torch.equal(k, t) for k, t in zip(kept, target)), "a perturbation that lowered the loss is dropped"


def test_sdarts_radius_schedule_and_settings():
    """ε_t = 0.03 + (ε − 0.03) · t / E (sota/cnn/train_search.py, line 170), logged per epoch."""
    remedy = RandomSmoothing()
    assert [remedy.radius(e, 4) for e in range(4)] == pytest.approx([0.03, 0.0975, 0.165, 0.2325])
    assert remedy.on_epoch_start(_search().network, 2, 4) == {"perturbation_radius": pytest.approx(0.165)}
    assert AdversarialPerturbation().steps == 7 and AdversarialPerturbation().epsilon == 0.3
    with pytest.raises(ValueError, match="epsilon_min=0.5 exceeds epsilon=0.3"):
        RandomSmoothing(epsilon_min=0.5)
    with pytest.raises(ValueError, match="steps"):
        AdversarialPerturbation(steps=0)
    with pytest.raises(ValueError, match="step_order 'joint' has no separate weight step"):
        DARTSSearch(space=DartsSpace(channels=4, layers=3, nodes=2, multiplier=2), remedies=["random_smoothing"],
                    step_order="joint", estimator=FirstOrderGradient(arch_batch="train"))


@pytest.mark.parametrize("remedy", [RandomSmoothing(epsilon=0.5), AdversarialPerturbation(epsilon=0.5, steps=7)])
def test_sdarts_perturbs_only_inside_its_context_and_leaves_alpha_and_the_statistics(remedy):
    pl.seed_everything(0)
    network = _search(remedy).network
    with torch.no_grad():
        for alpha in network.arch_parameters():
            alpha.normal_()
    alphas = {n: a.detach().clone() for n, a in network.named_arch_parameters().items()}
    relaxation = network.relaxation
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    network.set_sample_key(0, 0, 1)
    network.eval()  # the comparisons below must not move the batch-norm statistics
    with torch.no_grad():
        plain = network(x, detach_alpha=True)
    network.train()
    statistics = {n: b.clone() for n, b in network.named_buffers()}
    with remedy.perturb_weight_step(network, (x, y), 3, 4):
        assert network.training, "the attack leaves the supernet in training mode"
        assert all(torch.equal(b, statistics[n]) for n, b in network.named_buffers()), "the attack runs in eval mode"
        network.eval()
        with torch.no_grad():
            perturbed = network(x, detach_alpha=True)
    assert network.relaxation is relaxation
    assert all(torch.equal(a.detach(), alphas[n]) for n, a in network.named_arch_parameters().items())
    assert not torch.allclose(plain, perturbed, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(network(x, detach_alpha=True), plain), "the mixing is back after the context"
        network.train()
        with remedy.perturb_weight_step(network, (x, y), 3, 4):  # the same sample key draws the same perturbation
            network.eval()
            assert torch.allclose(network(x, detach_alpha=True), perturbed)


@pytest.mark.parametrize("remedy", ["random_smoothing", "adversarial_perturbation"])
def test_sdarts_weight_step_leaves_alpha_to_the_architecture_step(tmp_path, digits, remedy):
    """One DARTS step (α first): α after it is α after the architecture step, which saw α unperturbed, so it
    equals α of the same step without the remedy; the weights differ, trained on perturbed mixing weights."""
    models = {}
    for name, remedies in (("plain", []), ("sdarts", [remedy])):
        pl.seed_everything(0)
        models[name] = _search(*remedies)
        quick_trainer(tmp_path / name, max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                      enable_checkpointing=False).fit(models[name], digits)
    plain, sdarts = models["plain"].network, models["sdarts"].network
    for name, alpha in plain.named_arch_parameters().items():
        assert torch.equal(alpha, sdarts.named_arch_parameters()[name]), name
    assert not torch.equal(plain.stem[0].weight, sdarts.stem[0].weight)
