"""Export the answer of a search checkpoint: ``darts-lightning export-genotype CKPT``.

The answer is not re-derived here: the search module is rebuilt from the checkpoint (its saved
hyperparameters, weights, α, β and genotype history) and asked for its answer,
:meth:`darts_lightning.DARTSSearch.selected_genotype`, the one place where a search's answer is derived.
So the export honours everything the run itself honoured: PC-DARTS's edge normalisation, the
``genotype_rule``, and the epoch that R-DARTS early stopping went back to.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from darts_lightning.spaces.darts.genotype import Genotype
from darts_lightning.spaces.ops import import_path_ops
from darts_lightning.utils.files import atomic_write_text
from darts_lightning.utils.resume import read_checkpoint

__all__ = ["genotype_from_checkpoint", "export_main"]


def genotype_from_checkpoint(path: str | Path, *, allow_import_paths: bool = False) -> Any:
    """The answer of the search that wrote the checkpoint at ``path``: a :class:`Genotype` for the DARTS
    space, an ``NB201Arch`` for NAS-Bench-201 (what the run wrote as ``genotype.json`` / ``arch.txt``).

    Rebuilding the search builds its candidate ops; ops named by import path would import their modules,
    so a checkpoint that names any is refused unless ``allow_import_paths`` (for files you trust).
    """
    from darts_lightning.differentiable.module import DARTSSearch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    checkpoint = read_checkpoint(path)
    imported = import_path_ops((checkpoint.get("hyper_parameters") or {}).get("ops") or ())
    if imported and not allow_import_paths:
        raise ValueError(
            f"the checkpoint {str(path)!r} names ops by import path ({', '.join(imported)}); rebuilding it would "
            "import their modules: pass --allow-import-paths (allow_import_paths=True) only if you trust the file"
        )
    state = checkpoint.get("state_dict", {})
    if not any(key in state for key in ("network.alpha", "network.alpha_normal")):
        raise ValueError(
            f"{str(path)!r} is not a checkpoint of a differentiable search (no architecture parameters "
            "'network.alpha_normal' or 'network.alpha' in its state dict)"
        )
    # Lightning rebuilds the module from the saved hyperparameters and calls its on_load_checkpoint,
    # which restores the genotype history and the early-stopping choice.
    model = DARTSSearch.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return model.selected_genotype()


def export_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="darts-lightning export-genotype",
        description="Write the answer of a search checkpoint (the genotype the run wrote) as JSON, or as the "
        "NAS-Bench-201 string for that space, and optionally a drawing of its cells.",
    )
    parser.add_argument("checkpoint", help="a .ckpt written by 'darts-lightning fit' with a DARTSSearch model")
    parser.add_argument("--out", default="genotype.json", help="output path (default: genotype.json)")
    parser.add_argument("--png", default=None, help="also draw the cells into this PNG file")
    parser.add_argument(
        "--allow-import-paths", action="store_true",
        help="rebuild a search whose ops are named by import path (this imports their modules: trusted files only)",
    )
    args = parser.parse_args(argv)
    genotype = genotype_from_checkpoint(args.checkpoint, allow_import_paths=args.allow_import_paths)
    if not isinstance(genotype, Genotype):  # a NAS-Bench-201 cell: its string form
        from darts_lightning.spaces.drawing import draw_nb201_cell

        atomic_write_text(args.out, str(genotype) + "\n")
        if args.png:
            draw_nb201_cell(genotype.ops, args.png)
        print(genotype)
    else:
        genotype.save(args.out)
        if args.png:
            from darts_lightning.spaces.drawing import draw_genotype

            draw_genotype(genotype, args.png)
        print(repr(genotype))
    print(f"written to {args.out}" + (f" and {args.png}" if args.png else ""))
    return 0
