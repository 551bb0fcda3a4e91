"""Settings and checkpoints of the flat search (one list of model arguments) mapped onto today's parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import DARTSSearch
from darts_lightning.differentiable.callbacks import CompileSupernet, HessianEigenvalue
from darts_lightning.differentiable.estimators import FirstOrderGradient, SecondOrderGradient
from darts_lightning.differentiable.legacy import FLAT_DEFAULTS, convert_checkpoint, convert_flat_settings, is_flat
from darts_lightning.differentiable.optimizers import ArchOptimizer, WeightOptimizer
from darts_lightning.differentiable.relaxations import DirichletRelaxation, GDASRelaxation, PCDartsRelaxation
from darts_lightning.differentiable.remedies import ArchWarmup, AuxiliarySkip, BetaDecay
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.spaces.mixing import SoftmaxRelaxation
from darts_lightning.spaces.nasbench201 import NB201Space
from tests.conftest import quick_trainer
from tests.searches import TINY, checkpointing, last_ckpt

Check = Callable[[dict[str, Any], list[Any]], bool]


def _eigenvalue(callbacks: list[Any]) -> HessianEigenvalue | None:
    found = [c for c in callbacks if isinstance(c, HessianEigenvalue)]
    assert len(found) <= 1
    return found[0] if found else None


def _holds(check: Check, model: dict[str, Any], callbacks: list[Any]) -> bool:
    """Whether ``check`` holds; a part without the checked attribute (a first-order estimator has no
    Hessian mode, a run without the eigenvalue no callback) does not hold it."""
    try:
        return bool(check(model, callbacks))
    except AttributeError:
        return False


# flat setting -> (flat settings that set it, what today's parts must then hold)
MAPPING: dict[str, tuple[dict[str, Any], Check]] = {
    "in_channels": ({"in_channels": 1}, lambda m, c: m["in_channels"] == 1),
    "num_classes": ({"num_classes": 7}, lambda m, c: m["num_classes"] == 7),
    "image_size": ({"image_size": 16}, lambda m, c: m["image_size"] == 16),
    "sample_seed": ({"sample_seed": 5}, lambda m, c: m["sample_seed"] == 5),
    "channels_last": ({"channels_last": False}, lambda m, c: m["channels_last"] is False),
    "space": ({"space": "nasbench201", "channels": 4, "layers": 2},
              lambda m, c: isinstance(m["space"], NB201Space) and (m["space"].channels, m["space"].cells_per_stage) == (4, 2)),
    "channels": ({"channels": 8}, lambda m, c: m["space"].channels == 8),
    "layers": ({"layers": 5}, lambda m, c: m["space"].layers == 5),
    "nodes": ({"nodes": 3, "multiplier": 3}, lambda m, c: m["space"].nodes == 3),
    "multiplier": ({"multiplier": 2}, lambda m, c: m["space"].multiplier == 2),
    "stem_multiplier": ({"stem_multiplier": 2}, lambda m, c: m["space"].stem_multiplier == 2),
    "ops": ({"ops": ["none", "skip_connect", "sep_conv_3x3"]},
            lambda m, c: list(m["space"].ops) == ["none", "skip_connect", "sep_conv_3x3"]),
    "genotype_rule": ({"genotype_rule": "gdas"}, lambda m, c: m["space"].genotype_rule == "gdas"),
    "edge_normalization": ({"edge_normalization": True}, lambda m, c: m["space"].edge_normalization is True),
    "pool_batch_norm": ({"pool_batch_norm": False}, lambda m, c: m["space"].pool_batch_norm is False),
    "last_activation": ({"last_activation": True}, lambda m, c: m["space"].last_activation is True),
    "search_drop_path": ({"search_drop_path": 0.3}, lambda m, c: m["space"].drop_path == 0.3),
    "relaxation": ({"relaxation": "gdas"}, lambda m, c: type(m["relaxation"]) is GDASRelaxation),
    "relaxation_args": ({"relaxation": "pcdarts", "relaxation_args": {"partial_channels": 2}},
                        lambda m, c: type(m["relaxation"]) is PCDartsRelaxation and m["relaxation"].partial_channels == 2),
    "order": ({"order": 2}, lambda m, c: type(m["estimator"]) is SecondOrderGradient),
    "hessian": ({"order": 2, "hessian": "exact"}, lambda m, c: m["estimator"].hessian == "exact"),
    "hessian_epsilon": ({"order": 2, "hessian_epsilon": 0.1}, lambda m, c: m["estimator"].epsilon == 0.1),
    "unrolled_lr": ({"order": 2, "unrolled_lr": 0.5}, lambda m, c: m["estimator"].xi == 0.5),
    "arch_batch": ({"arch_batch": "train"},
                   lambda m, c: type(m["estimator"]) is FirstOrderGradient and m["estimator"].arch_batch == "train"),
    "weight_lr": ({"weight_lr": 0.1}, lambda m, c: m["weight_optimizer"].lr == 0.1),
    "weight_lr_min": ({"weight_lr_min": 0.0}, lambda m, c: m["weight_optimizer"].lr_min == 0.0),
    "weight_momentum": ({"weight_momentum": 0.5}, lambda m, c: m["weight_optimizer"].momentum == 0.5),
    "weight_decay": ({"weight_decay": 5e-4}, lambda m, c: m["weight_optimizer"].weight_decay == 5e-4),
    "weight_nesterov": ({"weight_nesterov": True}, lambda m, c: m["weight_optimizer"].nesterov is True),
    "grad_clip": ({"grad_clip": 1.0}, lambda m, c: m["weight_optimizer"].grad_clip == 1.0),
    "weight_lr_epoch_offset": ({"weight_lr_epoch_offset": 1}, lambda m, c: m["weight_optimizer"].lr_epoch_offset == 1),
    "grad_clip_includes_arch": ({"grad_clip_includes_arch": True},
                                lambda m, c: m["weight_optimizer"].clip_includes_arch is True),
    "arch_optimizer": ({"arch_optimizer": "sgd"}, lambda m, c: m["arch_optimizer"].name == "sgd"),
    "arch_lr": ({"arch_lr": 0.01}, lambda m, c: m["arch_optimizer"].lr == 0.01),
    "arch_betas": ({"arch_betas": [0.9, 0.99]}, lambda m, c: m["arch_optimizer"].betas == (0.9, 0.99)),
    "arch_weight_decay": ({"arch_weight_decay": 0.0}, lambda m, c: m["arch_optimizer"].weight_decay == 0.0),
    "arch_grad_clip": ({"arch_grad_clip": 10.0}, lambda m, c: m["arch_optimizer"].grad_clip == 10.0),
    "arch_warmup_epochs": ({"arch_warmup_epochs": 3},
                           lambda m, c: [(type(r), r.epochs) for r in m["remedies"]] == [(ArchWarmup, 3)]),
    "auxiliary_skip": ({"auxiliary_skip": True}, lambda m, c: [type(r) for r in m["remedies"]] == [AuxiliarySkip]),
    "beta_decay_max": ({"beta_decay_max": 10.0},
                       lambda m, c: [(type(r), r.max_weight) for r in m["remedies"]] == [(BetaDecay, 10.0)]),
    "weight_step_first": ({"weight_step_first": True}, lambda m, c: m["step_order"] == "weight_first"),
    "joint_step": ({"joint_step": True, "arch_batch": "train"}, lambda m, c: m["step_order"] == "joint"),
    "hessian_eigenvalue_every": ({"hessian_eigenvalue_every": 2},
                                 lambda m, c: _eigenvalue(c).every == 2 and _eigenvalue(c).rule is None),
    "eigenvalue_early_stop": ({"hessian_eigenvalue_every": 2, "eigenvalue_early_stop": True},
                              lambda m, c: _eigenvalue(c).rule is not None),
    "eigenvalue_stop_window": ({"hessian_eigenvalue_every": 2, "eigenvalue_early_stop": True, "eigenvalue_stop_window": 3},
                               lambda m, c: _eigenvalue(c).rule.window == 3),
    "eigenvalue_stop_delta": ({"hessian_eigenvalue_every": 2, "eigenvalue_early_stop": True, "eigenvalue_stop_delta": 2},
                              lambda m, c: _eigenvalue(c).rule.delta == 2),
    "eigenvalue_stop_factor": ({"hessian_eigenvalue_every": 2, "eigenvalue_early_stop": True, "eigenvalue_stop_factor": 2.0},
                               lambda m, c: _eigenvalue(c).rule.factor == 2.0),
    "eigenvalue_stop_start_epoch": (
        {"hessian_eigenvalue_every": 2, "eigenvalue_early_stop": True, "eigenvalue_stop_start_epoch": 4},
        lambda m, c: _eigenvalue(c).rule.start_epoch == 4),
    "compile": ({"compile": True}, lambda m, c: [type(x) for x in c] == [CompileSupernet]),
}


def test_every_flat_setting_has_a_case():
    assert sorted(MAPPING) == sorted(FLAT_DEFAULTS)


@pytest.mark.parametrize("setting", sorted(MAPPING))
def test_each_flat_setting_maps_onto_its_part(setting):
    flat, check = MAPPING[setting]
    model, callbacks = convert_flat_settings(flat)
    assert _holds(check, model, callbacks), (setting, model, callbacks)
    # and without it, the part keeps its default
    assert not _holds(check, *convert_flat_settings({}))


def test_the_flat_defaults_are_the_defaults_of_the_parts():
    """Both are the paper's CIFAR-10 search: the flat defaults give DARTSSearch()'s parts and no callbacks."""
    model, callbacks = convert_flat_settings({})
    assert callbacks == []
    assert model["space"].config() == DartsSpace().config()
    assert model["relaxation"].config() == SoftmaxRelaxation().config()
    assert model["estimator"].config() == FirstOrderGradient().config()
    assert model["weight_optimizer"].config() == WeightOptimizer().config()
    assert model["arch_optimizer"].config() == ArchOptimizer().config()
    assert model["remedies"] == [] and model["step_order"] == "arch_first"


def test_a_nasbench201_checkpoint_with_every_flat_setting_recorded_converts():
    """A flat checkpoint records every setting, the DARTS cell's defaults included (its ops as a tuple):
    only settings that differ from them are refused in the NAS-Bench-201 space."""
    recorded = {**FLAT_DEFAULTS, "ops": tuple(FLAT_DEFAULTS["ops"]), "space": "nasbench201", "channels": 4, "layers": 1}
    model, _ = convert_flat_settings(recorded)
    assert model["space"].config() == NB201Space(channels=4, cells_per_stage=1).config()
    with pytest.raises(ValueError, match="nodes, ops apply to the DARTS cell, not to the NAS-Bench-201 space"):
        convert_flat_settings({**recorded, "nodes": 3, "ops": ["none", "skip_connect"]})


def test_flat_settings_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match=r"unknown flat search settings \['chanels'\]; known: .*channels"):
        convert_flat_settings({"chanels": 4})
    with pytest.raises(ValueError, match="order must be 1 .* or 2 .*got 3"):
        convert_flat_settings({"order": 3})
    with pytest.raises(ValueError, match="space must be 'darts' or 'nasbench201'"):
        convert_flat_settings({"space": "nasbench301"})
    with pytest.raises(ValueError, match="eigenvalue_early_stop needs hessian_eigenvalue_every"):
        convert_flat_settings({"eigenvalue_early_stop": True})
    with pytest.raises(ValueError, match="kl_weight"):
        convert_flat_settings({"relaxation": "gdas", "relaxation_args": {"kl_weight": 1.0}})
    assert type(convert_flat_settings({"relaxation": "drnas", "relaxation_args": {"kl_weight": 1.0}})[0]["relaxation"]) \
        is DirichletRelaxation


def _flat_checkpoint(tmp_path, digits) -> tuple[Any, dict]:
    """A checkpoint as the flat search wrote it: its hyperparameters the flat settings, R-DARTS's eigenvalue
    history and selected epoch at the top level. Made from a search of today run with the same settings, the
    state (weights, optimizers, loops) being the same in both forms."""
    flat = {**TINY, "layers": 2, "nodes": 1, "multiplier": 1, "auxiliary_skip": True, "hessian_eigenvalue_every": 1}
    model, callbacks = convert_flat_settings(flat)
    pl.seed_everything(0)
    trainer = quick_trainer(tmp_path / "flat", max_epochs=1, limit_train_batches=2, limit_val_batches=0,
                            callbacks=[*callbacks, *checkpointing()])
    trainer.fit(DARTSSearch(**model), digits)
    checkpoint = torch.load(last_ckpt(trainer), weights_only=True)
    state = checkpoint.pop("callbacks").pop("HessianEigenvalue")
    checkpoint["eigenvalue_history"], checkpoint["selected_epoch"] = state["history"], state["selected_epoch"]
    checkpoint["hyper_parameters"] = {**FLAT_DEFAULTS, **flat, "ops": tuple(FLAT_DEFAULTS["ops"])}
    assert is_flat(checkpoint["hyper_parameters"])
    path = tmp_path / "flat.ckpt"
    torch.save(checkpoint, path)
    return path, {"model": model, "flat": flat, "history": state["history"]}


def test_convert_checkpoint_turns_a_flat_checkpoint_into_one_that_loads_and_resumes(tmp_path, digits):
    source, expected = _flat_checkpoint(tmp_path, digits)
    # As written, the flat checkpoint is refused with the advice to convert it.
    model, callbacks = convert_flat_settings(expected["flat"])
    trainer = quick_trainer(tmp_path / "refused", max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=callbacks)
    with pytest.raises(ValueError, match="earlier version of DARTSSearch .*darts-lightning convert-checkpoint OLD.ckpt NEW.ckpt"):
        trainer.fit(DARTSSearch(**model), digits, ckpt_path=source)

    target = convert_checkpoint(source, tmp_path / "converted.ckpt")
    converted = torch.load(target, weights_only=True)
    assert converted["hyper_parameters"] == dict(DARTSSearch(**expected["model"]).hparams)
    assert converted["callbacks"]["HessianEigenvalue"] == {"history": expected["history"], "selected_epoch": None}
    assert "eigenvalue_history" not in converted and "selected_epoch" not in converted
    loaded = DARTSSearch.load_from_checkpoint(target)
    assert [type(r) for r in loaded.remedies] == [AuxiliarySkip]
    original = torch.load(source, weights_only=True)["state_dict"]
    assert all(torch.equal(value, original[key]) for key, value in loaded.state_dict().items())

    # It resumes, with the eigenvalue history restored into the trainer callback.
    model, callbacks = convert_flat_settings(expected["flat"])
    trainer = quick_trainer(tmp_path / "resumed", max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=callbacks)
    trainer.fit(DARTSSearch(**model), digits, ckpt_path=target)
    assert trainer.global_step == 4
    assert [h["epoch"] for h in _eigenvalue(callbacks).history] == [0, 1]

    with pytest.raises(ValueError, match="holds no flat DARTSSearch settings"):
        convert_checkpoint(target, tmp_path / "again.ckpt")
