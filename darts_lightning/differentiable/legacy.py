"""Settings of the search as earlier versions wrote them: one flat list of model arguments.

Before the search was composed of parts, ``DARTSSearch`` took some fifty flat arguments (``channels``,
``relaxation: gdas``, ``relaxation_args``, ``order``, ``weight_lr``, ``arch_warmup_epochs``,
``hessian_eigenvalue_every``, …), and its checkpoints recorded them so. :func:`convert_flat_settings` maps
such a set onto today's parts: the model's arguments (space, relaxation, estimator, the two optimizers'
settings, remedies, step order) and the trainer callbacks that took over side work (R-DARTS's eigenvalue
and early stopping, compilation). :func:`convert_checkpoint` rewrites a checkpoint accordingly
(``darts-lightning convert-checkpoint OLD NEW``); a checkpoint in the flat form is otherwise refused with
that advice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from darts_lightning.differentiable.callbacks import CompileSupernet, HessianEigenvalue
from darts_lightning.differentiable.estimators import FirstOrderGradient, SecondOrderGradient
from darts_lightning.differentiable.optimizers import ArchOptimizer, WeightOptimizer
from darts_lightning.differentiable.relaxations import build_relaxation
from darts_lightning.differentiable.remedies import ArchWarmup, AuxiliarySkip, BetaDecay, Remedy
from darts_lightning.spaces.base import SearchSpace
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.spaces.nasbench201 import NB201Space
from darts_lightning.spaces.ops import DARTS_OPS
from darts_lightning.utils.files import atomic_torch_save

__all__ = ["FLAT_DEFAULTS", "is_flat", "convert_flat_settings", "convert_checkpoint", "flat_checkpoint_error"]

#: The flat arguments and their defaults (the paper's CIFAR-10 search).
FLAT_DEFAULTS: dict[str, Any] = {
    "in_channels": 3, "num_classes": 10, "image_size": 32, "channels": 16, "layers": 8, "nodes": 4, "multiplier": 4,
    "stem_multiplier": 3, "ops": list(DARTS_OPS), "relaxation": "darts", "relaxation_args": None,
    "edge_normalization": False, "auxiliary_skip": False, "beta_decay_max": 0.0, "arch_batch": "val",
    "sample_seed": None, "genotype_rule": "darts", "space": "darts", "order": 1, "hessian": "finite_difference",
    "hessian_epsilon": 0.01, "unrolled_lr": None, "weight_lr": 0.025, "weight_lr_min": 0.001, "weight_momentum": 0.9,
    "weight_decay": 3e-4, "grad_clip": 5.0, "arch_lr": 3e-4, "arch_betas": (0.5, 0.999), "arch_weight_decay": 1e-3,
    "channels_last": None, "arch_warmup_epochs": 0, "hessian_eigenvalue_every": 0, "eigenvalue_early_stop": False,
    "eigenvalue_stop_window": 5, "eigenvalue_stop_delta": 4, "eigenvalue_stop_factor": 1.3,
    "eigenvalue_stop_start_epoch": 10, "pool_batch_norm": None, "last_activation": False, "search_drop_path": 0.0,
    "weight_step_first": False, "grad_clip_includes_arch": False, "joint_step": False, "arch_grad_clip": 0.0,
    "arch_optimizer": "adam", "weight_nesterov": False, "weight_lr_epoch_offset": 0, "compile": False,
}

#: Flat settings of the DARTS cell that the NAS-Bench-201 space has no counterpart for.
DARTS_SPACE_SETTINGS = (
    "nodes", "multiplier", "stem_multiplier", "ops", "genotype_rule", "edge_normalization", "last_activation",
    "search_drop_path",
)


def _listed(value: Any) -> Any:
    """``value`` with tuples as lists (a checkpoint keeps a tuple, YAML gives a list)."""
    return list(value) if isinstance(value, tuple) else value


def is_flat(settings: Mapping[str, Any]) -> bool:
    """Whether model settings (a checkpoint's ``hyper_parameters``) are in the flat form."""
    return isinstance(settings.get("arch_optimizer", "adam"), str) and any(
        key in settings for key in ("channels", "order", "weight_lr", "arch_lr", "relaxation_args")
    )


def convert_flat_settings(flat: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """``(model arguments, trainer callbacks)`` of today's search for the flat settings ``flat`` (missing keys
    take the flat defaults; unknown keys are refused)."""
    unknown = sorted(set(flat) - set(FLAT_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown flat search settings {unknown}; known: {', '.join(sorted(FLAT_DEFAULTS))}")
    s = {**FLAT_DEFAULTS, **dict(flat)}
    space: SearchSpace[Any]
    if s["space"] == "nasbench201":
        # Settings of the DARTS cell have no place in the NAS-Bench-201 space: refused, never silently dropped.
        # (A checkpoint records every flat setting, the DARTS cell's defaults included, its ops as a tuple.)
        darts_only = [k for k in DARTS_SPACE_SETTINGS if k in flat and _listed(flat[k]) != _listed(FLAT_DEFAULTS[k])]
        if darts_only:
            raise ValueError(
                f"{', '.join(darts_only)} {'apply' if len(darts_only) > 1 else 'applies'} to the DARTS cell, not to "
                "the NAS-Bench-201 space: remove it or use space='darts'"
            )
        space = NB201Space(channels=s["channels"], cells_per_stage=s["layers"], pool_batch_norm=bool(s["pool_batch_norm"]))
    elif s["space"] == "darts":
        space = DartsSpace(
            ops=list(s["ops"]), nodes=s["nodes"], multiplier=s["multiplier"], channels=s["channels"], layers=s["layers"],
            stem_multiplier=s["stem_multiplier"], genotype_rule=s["genotype_rule"],
            edge_normalization=s["edge_normalization"],
            pool_batch_norm=True if s["pool_batch_norm"] is None else s["pool_batch_norm"],
            last_activation=s["last_activation"], drop_path=s["search_drop_path"],
        )
    else:
        raise ValueError(f"space must be 'darts' or 'nasbench201', got {s['space']!r}")
    relaxation = build_relaxation(s["relaxation"], **dict(s["relaxation_args"] or {}))
    if s["order"] not in (1, 2) or isinstance(s["order"], bool):
        raise ValueError(f"order must be 1 (first order) or 2 (second order, unrolled), got {s['order']!r}")
    estimator = (
        FirstOrderGradient(arch_batch=s["arch_batch"]) if s["order"] == 1 else
        SecondOrderGradient(hessian=s["hessian"], epsilon=s["hessian_epsilon"], xi=s["unrolled_lr"], arch_batch=s["arch_batch"])
    )
    weight_optimizer = WeightOptimizer(
        lr=s["weight_lr"], lr_min=s["weight_lr_min"], momentum=s["weight_momentum"], weight_decay=s["weight_decay"],
        nesterov=s["weight_nesterov"], grad_clip=s["grad_clip"], lr_epoch_offset=s["weight_lr_epoch_offset"],
        clip_includes_arch=s["grad_clip_includes_arch"],
    )
    arch_optimizer = ArchOptimizer(
        name=s["arch_optimizer"], lr=s["arch_lr"], betas=tuple(s["arch_betas"]), weight_decay=s["arch_weight_decay"],
        grad_clip=s["arch_grad_clip"],
    )
    remedies: list[Remedy] = []
    if s["arch_warmup_epochs"]:
        remedies.append(ArchWarmup(epochs=s["arch_warmup_epochs"]))
    if s["auxiliary_skip"]:
        remedies.append(AuxiliarySkip())
    if s["beta_decay_max"]:
        remedies.append(BetaDecay(max_weight=s["beta_decay_max"]))
    if s["joint_step"] and s["weight_step_first"]:
        raise ValueError(
            "joint_step (SNAS's single step) and weight_step_first (GDAS's order) exclude each other: choose one"
        )
    step_order = "joint" if s["joint_step"] else "weight_first" if s["weight_step_first"] else "arch_first"
    model = {
        "space": space, "relaxation": relaxation, "estimator": estimator, "weight_optimizer": weight_optimizer,
        "arch_optimizer": arch_optimizer, "remedies": remedies, "step_order": step_order,
        "in_channels": s["in_channels"], "num_classes": s["num_classes"], "image_size": s["image_size"],
        "sample_seed": s["sample_seed"], "channels_last": s["channels_last"],
    }
    callbacks: list[Any] = []
    if s["hessian_eigenvalue_every"] or s["eigenvalue_early_stop"]:
        if not s["hessian_eigenvalue_every"]:
            raise ValueError("eigenvalue_early_stop needs hessian_eigenvalue_every (R-DARTS: 2)")
        callbacks.append(HessianEigenvalue(
            every=s["hessian_eigenvalue_every"], early_stop=s["eigenvalue_early_stop"], window=s["eigenvalue_stop_window"],
            delta=s["eigenvalue_stop_delta"], factor=s["eigenvalue_stop_factor"], start_epoch=s["eigenvalue_stop_start_epoch"],
        ))
    if s["compile"]:
        callbacks.append(CompileSupernet())
    return model, callbacks


def flat_checkpoint_error(path: str | Path | None = None) -> str:
    """The advice for a checkpoint in the flat form."""
    where = f" {path}" if path is not None else ""
    return (
        f"the checkpoint{where} was written by an earlier version of DARTSSearch (flat model settings such as "
        "'channels' and 'weight_lr'); convert it with: darts-lightning convert-checkpoint OLD.ckpt NEW.ckpt"
    )


def convert_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Rewrite a DARTSSearch checkpoint in the flat form into today's form at ``target``: its hyperparameters
    become the parts' class paths and arguments (:func:`convert_flat_settings`), the state of the eigenvalue
    and early stopping moves to :class:`HessianEigenvalue`'s callback state. Weights, optimizer states and
    the loop state are unchanged."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    flat = checkpoint.get("hyper_parameters")
    if not isinstance(flat, Mapping) or not is_flat(flat):
        raise ValueError(f"{source} holds no flat DARTSSearch settings: there is nothing to convert")
    model, callbacks = convert_flat_settings(flat)
    checkpoint["hyper_parameters"] = {
        key: (value.config() if hasattr(value, "config") else [r.config() for r in value] if key == "remedies" else value)
        for key, value in model.items()
    }
    history = checkpoint.pop("eigenvalue_history", [])
    selected = checkpoint.pop("selected_epoch", None)
    if any(isinstance(c, HessianEigenvalue) for c in callbacks) or history or selected is not None:
        checkpoint.setdefault("callbacks", {})["HessianEigenvalue"] = {"history": list(history), "selected_epoch": selected}
    return atomic_torch_save(checkpoint, Path(target))
