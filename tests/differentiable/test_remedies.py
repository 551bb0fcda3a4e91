"""Remedies against collapse as parts of the search: PC-DARTS's warm-up, DARTS-'s auxiliary skip connection
and β-DARTS's β-decay."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import DARTSSearch
from darts_lightning.differentiable.optimizers import ArchOptimizer
from darts_lightning.differentiable.remedies import REMEDIES, ArchWarmup, AuxiliarySkip, BetaDecay, Remedy
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
    with pytest.raises(ValueError, match="unknown remedy 'warmup'; valid remedies are: arch_warmup, auxiliary_skip, beta_decay"):
        _search("warmup")
    with pytest.raises(ValueError, match=r"model\.remedies\[0\]: darts_lightning\.spaces\.darts\.space\.DartsSpace is not "
                                         r"a Remedy"):
        _search({"class_path": "darts_lightning.spaces.darts.space.DartsSpace"})
    with pytest.raises(ValueError, match="epochs must be a non-negative integer"):
        ArchWarmup(epochs=-1)


def test_the_base_remedy_changes_nothing():
    remedy, network = Remedy(), _search().network
    assert remedy.arch_moves(0) and remedy.on_epoch_start(network, 0, 2) == {} and remedy.arch_loss(network, 1, 2) is None
    assert not remedy.adds_auxiliary_skip
