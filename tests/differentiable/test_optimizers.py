"""The settings of the search's two optimizers: what they build, their schedules, and their checks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from darts_lightning import DARTSSearch
from darts_lightning.differentiable.optimizers import ArchOptimizer, WeightOptimizer
from darts_lightning.spaces.darts.space import DartsSpace


def _parameters() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]


def _rates(optimizer: torch.optim.Optimizer, scheduler, epochs: int) -> list[float]:
    """The learning rate of every epoch, the scheduler stepped once per epoch as the search does."""
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _cosine(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def test_weight_optimizer_builds_sgd_with_its_settings_annealed_by_cosine():
    settings = WeightOptimizer(lr=0.1, lr_min=0.01, momentum=0.8, weight_decay=1e-4, nesterov=True)
    parameters = _parameters()
    optimizer, scheduler = settings.build(parameters, epochs=4)
    assert type(optimizer) is torch.optim.SGD
    assert {k: optimizer.defaults[k] for k in ("lr", "momentum", "weight_decay", "nesterov")} == dict(
        lr=0.1, momentum=0.8, weight_decay=1e-4, nesterov=True)
    assert optimizer.param_groups[0]["params"] == parameters
    rates = _rates(optimizer, scheduler, 5)
    assert rates == pytest.approx([_cosine(e, 4, 0.1, 0.01) for e in range(5)], rel=1e-12)
    assert rates[4] == pytest.approx(0.01), "after its epochs the rate is lr_min"


def test_lr_epoch_offset_trains_every_epoch_at_the_rate_of_a_later_one():
    """``lr_epoch_offset: 1``: epoch e trains at the cosine rate of epoch e + 1 (capped at the last), as a
    scheduler stepped at the start of every epoch does (SNAS's and β-DARTS's call order)."""
    optimizer, scheduler = WeightOptimizer(lr=0.025, lr_min=0.001, lr_epoch_offset=1).build(_parameters(), epochs=4)
    assert type(scheduler) is torch.optim.lr_scheduler.LambdaLR
    expected = [_cosine(min(e + 1, 4), 4, 0.025, 0.001) for e in range(5)]
    assert _rates(optimizer, scheduler, 5) == pytest.approx(expected, rel=1e-12)
    optimizer, scheduler = WeightOptimizer(lr=0.025, lr_min=0.001, lr_epoch_offset=2).build(_parameters(), epochs=4)
    assert _rates(optimizer, scheduler, 4) == pytest.approx([_cosine(min(e + 2, 4), 4, 0.025, 0.001) for e in range(4)])


def test_arch_optimizer_builds_adam_or_plain_sgd_with_its_settings():
    adam = ArchOptimizer(lr=1e-2, betas=(0.6, 0.9), weight_decay=1e-3).build(_parameters())
    assert type(adam) is torch.optim.Adam
    assert (adam.defaults["lr"], adam.defaults["betas"], adam.defaults["weight_decay"]) == (1e-2, (0.6, 0.9), 1e-3)
    sgd = ArchOptimizer(name="sgd", lr=0.5, weight_decay=0.0).build(_parameters())
    assert type(sgd) is torch.optim.SGD
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.5, 0, 0.0)
    assert ArchOptimizer(betas=[0.5, 0.999]).config()["init_args"]["betas"] == [0.5, 0.999]


def test_the_search_builds_its_optimizers_from_the_settings():
    model = DARTSSearch(
        space=DartsSpace(channels=4, layers=2),
        weight_optimizer=WeightOptimizer(lr=0.05, lr_min=0.0, momentum=0.5, weight_decay=1e-5, clip_includes_arch=True),
        arch_optimizer=ArchOptimizer(name="sgd", lr=0.2, weight_decay=0.0),
        in_channels=1, image_size=8,
    )
    model._trainer = SimpleNamespace(max_epochs=3)
    (weights, arch), (scheduler,) = model.configure_optimizers()
    assert type(weights) is torch.optim.SGD and weights.defaults["lr"] == 0.05 and weights.defaults["momentum"] == 0.5
    assert type(arch) is torch.optim.SGD and arch.defaults["lr"] == 0.2
    assert {id(p) for g in weights.param_groups for p in g["params"]} == {id(p) for p in model.weight_parameters()}
    assert {id(p) for g in arch.param_groups for p in g["params"]} == {id(p) for p in model.arch_parameters()}
    assert scheduler["interval"] == "epoch" and scheduler["scheduler"].T_max == 3
    # GDAS's clip over α and the weights: the last architecture gradient is kept as buffers, in the checkpoint.
    assert {"last_arch_grad_alpha_normal", "last_arch_grad_alpha_reduce"} <= set(model.state_dict())
    assert not any(k.startswith("last_arch_grad") for k in DARTSSearch(space=DartsSpace(channels=4, layers=2),
                                                                        in_channels=1, image_size=8).state_dict())


def test_optimizer_settings_are_checked():
    with pytest.raises(ValueError, match="nesterov needs a momentum"):
        WeightOptimizer(momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="lr_epoch_offset must be a non-negative integer"):
        WeightOptimizer(lr_epoch_offset=-1)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\)"):
        WeightOptimizer(momentum=1.0)
    with pytest.raises(ValueError, match="lr must be a non-negative number"):
        WeightOptimizer(lr=-0.1)
    with pytest.raises(ValueError, match="betas must be Adam's two betas"):
        ArchOptimizer(betas=(0.5,))
    with pytest.raises(ValueError, match="name must be one of adam, sgd"):
        ArchOptimizer(name="rmsprop")
    with pytest.raises(ValueError, match=r"model\.weight_optimizer must be a WeightOptimizer"):
        DARTSSearch(weight_optimizer=0.1)
