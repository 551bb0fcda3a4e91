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

import torch

from .genotype import Genotype

__all__ = ["genotype_from_checkpoint", "export_main"]


def genotype_from_checkpoint(path: str | Path) -> Any:
    """The answer of the search that wrote the checkpoint at ``path``: a :class:`Genotype` for the DARTS
    space, an ``NB201Arch`` for NAS-Bench-201 (what the run wrote as ``genotype.json`` / ``arch.txt``)."""
    from .search import DARTSSearch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
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
    args = parser.parse_args(argv)
    genotype = genotype_from_checkpoint(args.checkpoint)
    if not isinstance(genotype, Genotype):  # a NAS-Bench-201 cell: its string form
        from .visualize import draw_nb201_cell

        Path(args.out).write_text(str(genotype) + "\n")
        if args.png:
            draw_nb201_cell(genotype.ops, args.png)
        print(genotype)
    else:
        genotype.save(args.out)
        if args.png:
            from .visualize import draw_genotype

            draw_genotype(genotype, args.png)
        print(repr(genotype))
    print(f"written to {args.out}" + (f" and {args.png}" if args.png else ""))
    return 0
