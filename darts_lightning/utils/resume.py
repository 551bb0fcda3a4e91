"""Resuming continues the configured run.

A checkpoint records which module wrote it (``darts_lightning_module``) and with which settings:
Lightning's saved hyperparameters of the model and of the data module. ``fit --ckpt_path`` (and ``validate``,
``test``) continues the run that is configured *now*: a checkpoint written by a different module, or with
different settings of the model or the data (space, method, network shape, genotype, optimiser, data set,
split, batch, augmentation), is refused with one message that names every differing setting and both values.

What may change on resume: every setting of the trainer (``max_epochs``, the logger, callbacks, devices,
precision, ...), the model's memory layout (``channels_last``), where the data live and how they are loaded
(``root``, ``test_root``, ``download``, ``num_workers``), and what a module lists in its
``RESUME_MAY_CHANGE`` (a discrete search's budget, for instance).

Settings made of parts (``{"class_path", "init_args"}``, as a search's space or relaxation) are compared part by
part, so that the message names the argument that differs (``model.space.channels``), not the whole part.

A module whose earlier versions wrote checkpoints in another form recognises them with a class method
``outdated_checkpoint(checkpoint, path) -> str | None``, which returns the one-line refusal (how to convert
the file) or ``None``; :func:`check_checkpoint_format` asks it, before anything else is compared.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "MODULE_KEY", "ResumeMismatchError", "OutdatedCheckpointError", "check_resume", "check_checkpoint_format",
    "read_checkpoint", "record_module", "RESUMABLE_MODEL_SETTINGS", "RESUMABLE_DATA_SETTINGS",
]

MODULE_KEY = "darts_lightning_module"
RESUMABLE_MODEL_SETTINGS = frozenset({"channels_last"})
RESUMABLE_DATA_SETTINGS = frozenset({"root", "test_root", "download", "num_workers"})
_MISSING = object()


class ResumeMismatchError(ValueError):
    """A checkpoint written by a different run than the configured one."""


class OutdatedCheckpointError(ValueError):
    """A checkpoint in a form that an earlier version of its module wrote (the message says how to convert it)."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's plain containers (``weights_only``), with a clear error for a file that is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            2, "no checkpoint at this path (a run keeps its checkpoints in <run folder>/checkpoints/)", str(path)
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        reason = " ".join(str(error).split())[:200]
        raise ValueError(
            f"cannot read the checkpoint {path} ({type(error).__name__}: {reason}): the file is truncated or not a "
            "checkpoint; resume from another checkpoint of the run (its checkpoints/ folder)"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict'); give a .ckpt written by a run")
    return checkpoint


def record_module(module: Any, checkpoint: dict[str, Any]) -> None:
    """Record in ``checkpoint`` which module wrote it (called from the modules' ``on_save_checkpoint``)."""
    checkpoint[MODULE_KEY] = type(module).__qualname__


def check_checkpoint_format(module: Any, checkpoint: Mapping[str, Any], *, path: str | Path | None = None) -> None:
    """Refuse a checkpoint that an earlier version of ``module`` (an instance or its class) wrote in another form,
    with the module's own one-line advice (its ``outdated_checkpoint(checkpoint, path)``; see the module
    docstring). A checkpoint another module wrote is left to :func:`check_resume`, which names both."""
    cls = module if isinstance(module, type) else type(module)
    written_by = checkpoint.get(MODULE_KEY)
    if written_by is not None and written_by != cls.__qualname__:
        return
    recognise = getattr(cls, "outdated_checkpoint", None)
    message = recognise(checkpoint, path) if callable(recognise) else None
    if message:
        raise OutdatedCheckpointError(message)


def check_resume(
    module: Any,
    checkpoint: Mapping[str, Any],
    *,
    path: str | Path | None = None,
    datamodule: Any = None,
) -> None:
    """Refuse ``checkpoint`` unless it was written by the run configured as ``module`` (and ``datamodule``).

    A checkpoint in an outdated form is refused first, with the module's advice (:func:`check_checkpoint_format`).
    A module compares a setting by meaning rather than by the text that configured it with a method
    ``resume_compared(checkpoint) -> {name: (checkpoint's value, configured value)}`` (a retraining's
    genotype: a published name and the JSON file of the same cell are the same setting).
    """
    check_checkpoint_format(module, checkpoint, path=path)
    differences: list[tuple[str, Any, Any]] = []
    written_by, this = checkpoint.get(MODULE_KEY), type(module).__qualname__
    if written_by is not None and written_by != this:
        differences.append(("model", written_by, this))
    else:
        may_change = RESUMABLE_MODEL_SETTINGS | frozenset(getattr(module, "RESUME_MAY_CHANGE", ()))
        saved = checkpoint.get("hyper_parameters") or {}
        differences += _differences("model", saved, dict(module.hparams), may_change, type(module))
        compared = getattr(module, "resume_compared", None)
        for name, (saved_value, value) in (compared(checkpoint) if compared else {}).items():
            differences += _part_differences(f"model.{name}", saved_value, value)
    saved_data = checkpoint.get("datamodule_hyper_parameters")
    if datamodule is not None and saved_data and getattr(datamodule, "hparams", None) is not None:
        differences += _differences(
            "data", saved_data, dict(datamodule.hparams), RESUMABLE_DATA_SETTINGS, type(datamodule)
        )
    if not differences:
        return
    where = f"the checkpoint {path}" if path is not None else "the checkpoint"
    config = Path(path).resolve().parent.parent / "config.yaml" if path is not None else None
    own_config = f" (--config {config})" if config is not None and config.is_file() else ""
    raise ResumeMismatchError(
        f"{where} was written by a different run than the configured one: "
        + "; ".join(f"{name}: checkpoint {_show(a)}, configured {_show(b)}" for name, a, b in differences)
        + f". Resuming continues the configured run: configure the checkpoint's run{own_config}, "
        "or start a new run without --ckpt_path"
    )


def _differences(
    prefix: str, saved: Mapping[str, Any], current: Mapping[str, Any], may_change: frozenset[str], cls: type[Any]
) -> list[tuple[str, Any, Any]]:
    defaults = {
        name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    differences = []
    for name in sorted(set(saved) | set(current)):
        if name.startswith("_") or name in may_change:
            continue
        a = saved.get(name, defaults.get(name, _MISSING))
        b = current.get(name, defaults.get(name, _MISSING))
        differences += _part_differences(f"{prefix}.{name}", a, b)
    return differences


def _part_differences(name: str, a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """The differences between two values of the setting ``name``. Two parts of the same class are compared
    argument by argument (``model.space.channels``); parts of different classes by their class."""
    if _is_part(a) and _is_part(b):
        if a["class_path"] != b["class_path"]:
            return [(f"{name}.class_path", a["class_path"], b["class_path"])]
        args_a, args_b = dict(a.get("init_args") or {}), dict(b.get("init_args") or {})
        differences = []
        for key in sorted(set(args_a) | set(args_b)):
            differences += _part_differences(
                f"{name}.{key}", args_a.get(key, _MISSING), args_b.get(key, _MISSING)
            )
        return differences
    if (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
            and any(_is_part(v) for v in [*a, *b])):
        differences = []
        for i, (x, y) in enumerate(zip(a, b)):
            differences += _part_differences(f"{name}[{i}]", x, y)
        return differences
    return [] if _normalised(a) == _normalised(b) else [(name, a, b)]


def _is_part(value: Any) -> bool:
    return isinstance(value, Mapping) and "class_path" in value and set(value) <= {"class_path", "init_args"}


def _normalised(value: Any) -> Any:
    """Containers compared by content: a tuple read back from YAML is a list, a path may be a string."""
    if isinstance(value, Mapping):
        return {str(k): _normalised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalised(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _show(value: Any) -> str:
    return "(not set)" if value is _MISSING else repr(_normalised(value))
