"""Export the answer of a search checkpoint: ``darts-lightning export-genotype CKPT``.

The answer is not re-derived here: the search module is rebuilt from the checkpoint (its saved
hyperparameters, weights, α, β and answer history) and asked for its answer,
:meth:`darts_lightning.DARTSSearch.selected_answer`, the one place where a search's answer is derived.
So the export honours everything the run itself honoured: PC-DARTS's edge normalisation, the space's
``genotype_rule``, and the epoch that R-DARTS early stopping went back to (the state of the run's
:class:`~darts_lightning.HessianEigenvalue` callback). The answer is written and drawn by the search's space
(:meth:`~darts_lightning.SearchSpace.write`, :meth:`~darts_lightning.SearchSpace.draw`): a DARTS genotype as
``genotype.json``, a NAS-Bench-201 cell as ``arch.txt``, a user's space as it defines.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from darts_lightning.utils.resume import MODULE_KEY, check_checkpoint_format, read_checkpoint

__all__ = ["search_from_checkpoint", "genotype_from_checkpoint", "selected_epoch", "export_main"]

#: the package whose classes a checkpoint may name without consent (any other class path imports a module)
OWN_PACKAGE = "darts_lightning."


def selected_epoch(checkpoint: Mapping[str, Any]) -> int | None:
    """The epoch whose answer the run returns, as its early stopping chose it (``None``: the last one): the state
    of the run's :class:`~darts_lightning.HessianEigenvalue` callback."""
    from darts_lightning.differentiable.callbacks import HessianEigenvalue

    state = (checkpoint.get("callbacks") or {}).get(HessianEigenvalue().state_key) or {}
    epoch = state.get("selected_epoch")
    return None if epoch is None else int(epoch)


def _strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every ``(key, string)`` in a checkpoint's nested settings."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, str):
                yield str(key), item
            else:
                yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, str):
                yield "", item
            else:
                yield from _strings(item)


def _imports(settings: Mapping[str, Any]) -> list[str]:
    """What rebuilding ``settings`` would import beyond the package: class paths of other packages and ops
    named by import path."""
    from darts_lightning.spaces.ops import import_path_ops

    classes = {value for key, value in _strings(settings) if key == "class_path" and not value.startswith(OWN_PACKAGE)}
    ops = import_path_ops(value for key, value in _strings(settings) if key != "class_path")
    return sorted(classes | set(ops))


def search_from_checkpoint(path: str | Path, *, allow_import_paths: bool = False) -> Any:
    """The :class:`~darts_lightning.DARTSSearch` that wrote the checkpoint at ``path``, rebuilt from its saved
    hyperparameters and loaded with its weights, answer history and early-stopping choice.

    Rebuilding the search imports the classes its parts name and builds its candidate ops; a checkpoint
    that names classes outside the package or ops by import path is refused unless ``allow_import_paths``
    (for files you trust). A checkpoint an earlier version wrote with flat settings is refused with the
    command that converts it.
    """
    from darts_lightning.differentiable.module import DARTSSearch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    checkpoint = read_checkpoint(path)
    written_by = checkpoint.get(MODULE_KEY)
    settings = checkpoint.get("hyper_parameters")
    if (written_by is not None and written_by != DARTSSearch.__qualname__) or not isinstance(settings, Mapping) or not settings:
        what = f"it was written by {written_by}" if written_by else "it holds no saved settings of a search"
        raise ValueError(
            f"{str(path)!r} is not a checkpoint of a differentiable search ({what}); give a .ckpt written by "
            "'darts-lightning fit' with a DARTSSearch model"
        )
    check_checkpoint_format(DARTSSearch, checkpoint, path=path)
    imported = _imports(settings)
    if imported and not allow_import_paths:
        raise ValueError(
            f"the checkpoint {str(path)!r} names ops or classes by import path ({', '.join(imported)}); rebuilding "
            "it would import their modules: pass --allow-import-paths (allow_import_paths=True) only if you trust "
            "the file"
        )
    try:
        model: DARTSSearch[Any] = DARTSSearch(**dict(settings))
    except TypeError as error:  # settings of another version or program; their own errors are ValueErrors
        raise ValueError(
            f"the saved settings in {str(path)!r} are not those of today's DARTSSearch ({error}); give a checkpoint "
            "written by 'darts-lightning fit' with a DARTSSearch model"
        ) from error
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        reason = " ".join(str(error).split())[:300]
        raise ValueError(
            f"the weights in {str(path)!r} do not fit the search its saved settings describe ({reason}); the file "
            "was altered or written by another program"
        ) from error
    model.on_load_checkpoint(checkpoint)  # the answer history and the sampling seed
    model.selected_epoch = selected_epoch(checkpoint)
    return model


def genotype_from_checkpoint(path: str | Path, *, allow_import_paths: bool = False) -> Any:
    """The answer of the search that wrote the checkpoint at ``path`` (what the run wrote as its answer file:
    a :class:`~darts_lightning.Genotype` in the DARTS space, an ``NB201Arch`` in NAS-Bench-201's)."""
    return search_from_checkpoint(path, allow_import_paths=allow_import_paths).selected_answer()


def _write(space: Any, answer: Any, out: Path) -> Path:
    """Write ``answer`` with the space's own writer: into ``out`` when it is a folder, else as the file ``out``
    (written in a temporary folder beside it and moved into place, so that a failed write keeps the old file)."""
    if out.is_dir():
        return space.write(answer, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as folder:
        written = space.write(answer, Path(folder))
        os.replace(written, out)
    return out


def export_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="darts-lightning export-genotype",
        description="Write the answer of a search checkpoint as the run wrote it (its space's answer file: "
        "genotype.json for the DARTS space, arch.txt for NAS-Bench-201), and optionally a drawing of it.",
    )
    parser.add_argument("checkpoint", help="a .ckpt written by 'darts-lightning fit' with a DARTSSearch model")
    parser.add_argument(
        "--out", default=None,
        help="output file, or a folder to write the space's answer file into (default: the answer file, e.g. "
        "genotype.json, in the current folder)",
    )
    parser.add_argument("--png", default=None, help="also draw the answer into this PNG file")
    parser.add_argument(
        "--allow-import-paths", action="store_true",
        help="rebuild a search whose ops or parts are named by import path (this imports their modules: trusted "
        "files only)",
    )
    args = parser.parse_args(argv)
    model = search_from_checkpoint(args.checkpoint, allow_import_paths=args.allow_import_paths)
    space, answer = model.space, model.selected_answer()
    out = _write(space, answer, Path(args.out) if args.out is not None else Path.cwd())
    if args.png:
        from darts_lightning.spaces.drawing import save_png

        save_png(space.draw(answer), args.png)
    print(space.format(answer))
    if model.selected_epoch is not None:
        print(f"the answer of epoch {model.selected_epoch}, where early stopping went back to")
    print(f"written to {out}" + (f" and {args.png}" if args.png else ""))
    return 0
