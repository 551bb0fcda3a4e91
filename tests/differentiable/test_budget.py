"""A differentiable search under a budget of multiply-adds or parameters: the expected cost in the architecture
loss, for every relaxation and both orders, logged each epoch with the derived answer's cost."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import DARTSSearch, SearchDataModule, SecondOrderGradient
from darts_lightning.costs import CostTable
from darts_lightning.differentiable.budget import CostBudget
from darts_lightning.differentiable.optimizers import ArchOptimizer
from darts_lightning.differentiable.relaxations import build_relaxation
from darts_lightning.spaces import DartsSpace, NB201Space
from tests.conftest import quick_trainer

DIGITS = dict(in_channels=1, num_classes=10, image_size=8)
SHAPE = dict(in_channels=1, image_size=8)


def _space(edge_normalization: bool = False) -> DartsSpace:
    return DartsSpace(channels=4, layers=3, nodes=2, multiplier=2, edge_normalization=edge_normalization)


def _cheapest() -> float:
    """Multiply-adds of the cheapest network of the tiny space (its fixed parts: pools and skips cost none)."""
    return CostTable.build(_space(), "multiply_adds", channels=4, layers=3, num_classes=10, **SHAPE).cheapest()


@pytest.mark.parametrize(("relaxation", "edge_normalization"), [
    ("darts", False), ("pcdarts", True), ("gdas", False), ("snas", False), ("drnas", False),
])
def test_the_budget_term_reaches_every_architecture_parameter(relaxation, edge_normalization):
    space = _space(edge_normalization)
    budget = CostBudget(budget=_cheapest() + 1, channels=4, layers=3)
    model = DARTSSearch(space=space, relaxation=build_relaxation(relaxation, partial_channels=1) if relaxation == "pcdarts"
                        else relaxation, remedies=[budget], **DIGITS)
    term = budget.arch_loss(model.network, 0, 1)
    assert term is not None and float(term.detach()) > 0, "uniform weights are far over the cheapest network"
    term.backward()
    for name, parameter in model.network.named_arch_parameters().items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def _search(tmp_path, remedies, **kwargs) -> tuple[DARTSSearch, pl.Trainer]:
    torch.manual_seed(0)
    model = DARTSSearch(space=_space(), arch_optimizer=ArchOptimizer(lr=3e-2), remedies=remedies, **DIGITS, **kwargs)
    trainer = quick_trainer(tmp_path, max_epochs=1, limit_train_batches=4, limit_val_batches=1)
    trainer.fit(model, SearchDataModule("digits", batch_size=16))
    return model, trainer


@pytest.mark.parametrize("order", [1, 2])
def test_a_budget_lowers_the_expected_cost_and_is_logged_each_epoch(tmp_path, order):
    estimator = dict(estimator=SecondOrderGradient()) if order == 2 else {}
    budget = CostBudget(budget=_cheapest(), form="linear", weight=5.0, channels=4, layers=3)
    free, _ = _search(tmp_path / "free", [], **estimator)
    priced, trainer = _search(tmp_path / "priced", [budget], **estimator)
    assert float(budget.expected_cost(priced.network)) < float(budget.expected_cost(free.network))
    logged = trainer.callback_metrics
    for key in ("expected", "derived", "budget"):
        assert f"arch/cost/multiply_adds/{key}" in logged
    assert float(logged["arch/cost/multiply_adds/derived"]) == pytest.approx(
        budget.table.arch_cost(priced.selected_answer()), rel=1e-6)
    # the checkpoint records the budget as a part, and the search rebuilds from it
    rebuilt = DARTSSearch(**priced.hparams)
    assert rebuilt.remedies[0].config() == budget.config() and rebuilt.remedies[0].table is not None


def test_a_budget_below_the_cheapest_network_is_a_clear_error():
    with pytest.raises(ValueError, match=r"the budget 10 multiply-adds is below the cheapest network of the nasbench201"):
        DARTSSearch(space=NB201Space(channels=4, cells_per_stage=1), remedies=[CostBudget(budget=10, channels=4, layers=1)],
                    **DIGITS)
    with pytest.raises(ValueError, match="form must be one of"):
        CostBudget(budget=1e6, form="fbnet")


def test_sharpness_moves_the_expected_cost_to_the_derived_answers():
    """w^s / Σ w^s tends to the strongest op as s grows: the expected cost of a space that keeps every edge then
    tends to the cost of the answer it derives."""
    torch.manual_seed(0)
    space = NB201Space(channels=4, cells_per_stage=1)
    plain, sharp = (CostBudget(budget=1e9, channels=4, layers=1, sharpness=s) for s in (1.0, 200.0))
    search = DARTSSearch(space=space, remedies=[plain, sharp], **DIGITS)
    with torch.no_grad():
        search.network.alpha.normal_(0, 1)
    derived = plain.table.arch_cost(search.network.derive())
    assert abs(float(sharp.expected_cost(search.network)) - derived) < 1e-3 * derived
    assert abs(float(plain.expected_cost(search.network)) - derived) > 0.05 * derived
    with pytest.raises(ValueError, match="sharpness must be"):
        CostBudget(budget=1e6, sharpness=0.5)


def test_the_target_form_pulls_towards_the_budget_from_both_sides():
    space = NB201Space(channels=4, cells_per_stage=1)
    for factor, sign in ((0.5, -1), (2.0, 1)):
        budget = CostBudget(budget=1.0e9, form="target", channels=4, layers=1)
        search = DARTSSearch(space=space, remedies=[budget], **DIGITS)
        budget.budget = float(budget.expected_cost(search.network)) / factor  # E[c] = factor · B
        term = budget.arch_loss(search.network, 0, 1)
        assert float(term.detach()) == pytest.approx(abs(factor - 1))
        term.backward()
        # the gradient lowers the expected cost when over the budget and raises it when under
        step = -1e-3 * search.network.alpha.grad
        with torch.no_grad():
            before = float(budget.expected_cost(search.network))
            search.network.alpha.add_(step)
            assert sign * (float(budget.expected_cost(search.network)) - before) < 0


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_the_budget_config_composes_with_the_digits_search(tmp_path, monkeypatch):
    from pathlib import Path

    from darts_lightning.entry.runner import DartsLightningCLI

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)
    cli = DartsLightningCLI(
        pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False,
        save_config_callback=None, parser_kwargs={"exit_on_error": False},
        args=["--config", str(repo / "configs" / "darts_digits.yaml"), "--config",
              str(repo / "configs" / "budget_darts_digits.yaml"), "--trainer.logger", "false"],
    )
    (budget,) = cli.model.remedies
    assert isinstance(budget, CostBudget) and budget.budget == 278080 and budget.form == "hinge"
    assert budget.table is not None and budget.table.cheapest() < budget.budget
