"""Convert a search checkpoint of an earlier version: ``darts-lightning convert-checkpoint OLD.ckpt NEW.ckpt``.

Earlier versions of :class:`~darts_lightning.DARTSSearch` took flat settings (``channels``, ``weight_lr``,
``relaxation: gdas``, ``hessian_eigenvalue_every``, ...) and their checkpoints recorded them so; today's search
is composed of parts and refuses such a checkpoint (resuming, exporting) with the advice to run this command.
The conversion itself is :func:`darts_lightning.differentiable.legacy.convert_checkpoint`: the settings become
the parts' class paths and arguments, the early-stopping state moves to the
:class:`~darts_lightning.HessianEigenvalue` callback's state; weights, optimizer states and the loop state are
kept. The run's ``config.yaml`` still speaks the flat settings: the command prints the model section in
today's form, and the trainer callbacks the run used, for the configuration that resumes the converted file.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from darts_lightning.utils.resume import read_checkpoint

__all__ = ["convert_main"]


#: settings the command line takes from the data module (linked), not from the model section
LINKED = ("in_channels", "num_classes", "image_size")


def _model_yaml(settings: dict[str, Any]) -> str:
    import yaml

    settings = {key: value for key, value in settings.items() if key not in LINKED}
    section = {"model": {"class_path": "darts_lightning.DARTSSearch", "init_args": settings}}
    return yaml.safe_dump(section, sort_keys=False, default_flow_style=False)


def convert_main(argv: Sequence[str] | None = None) -> int:
    from darts_lightning.differentiable.legacy import convert_checkpoint, convert_flat_settings, is_flat

    parser = argparse.ArgumentParser(
        prog="darts-lightning convert-checkpoint",
        description="Rewrite a DARTSSearch checkpoint written by an earlier version (flat model settings such as "
        "'channels' and 'weight_lr') in today's form (the search's parts), so that it can be resumed and exported.",
    )
    parser.add_argument("source", help="the checkpoint in the earlier form (OLD.ckpt)")
    parser.add_argument("target", help="where to write the converted checkpoint (NEW.ckpt; not an existing file)")
    args = parser.parse_args(argv)
    source, target = Path(args.source), Path(args.target)
    if target.exists():
        raise ValueError(f"{target} exists: choose a new path for the converted checkpoint (nothing is overwritten)")
    checkpoint = read_checkpoint(source)  # a clear error for a missing or damaged file
    flat = checkpoint.get("hyper_parameters")
    if not isinstance(flat, dict) or not is_flat(flat):
        raise ValueError(
            f"{source} holds no flat DARTSSearch settings: it is already in today's form (or not a search "
            "checkpoint), there is nothing to convert"
        )
    _, callbacks = convert_flat_settings(flat)
    written = convert_checkpoint(source, target)
    converted = read_checkpoint(written)
    print(f"converted {source} to {written}")
    print("Resume it with a configuration in today's form; its model section:")
    print(_model_yaml(dict(converted["hyper_parameters"])), end="")
    if callbacks:
        names = ", ".join(f"darts_lightning.{type(c).__name__}" for c in callbacks)
        print(f"and, as the run used them, the trainer callbacks {names} (trainer.callbacks; see "
              "configs/rdarts_es_cifar10.yaml)")
    return 0
