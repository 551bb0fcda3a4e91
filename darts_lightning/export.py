"""Export the genotype of a search checkpoint: ``darts-lightning export-genotype CKPT``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from .genotype import Genotype

__all__ = ["genotype_from_checkpoint", "export_main"]


def genotype_from_checkpoint(path: str | Path):
    """Derive the cell from the α stored in a search checkpoint (loaded with ``weights_only=True``): a
    :class:`Genotype` for the DARTS space, an ``NB201Arch`` for NAS-Bench-201."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", {})
    if "network.alpha" in state:
        from .nasbench201 import NB201Arch

        return NB201Arch.from_alpha(state["network.alpha"])
    if "network.alpha_normal" not in state:
        raise ValueError(
            f"{str(path)!r} is not a checkpoint of a differentiable search (no 'network.alpha_normal' in its state dict)"
        )
    space = checkpoint.get("search_space") or {}
    hparams = checkpoint.get("hyper_parameters", {})
    op_names = space.get("op_names") or hparams.get("ops")
    return Genotype.from_alphas(
        state["network.alpha_normal"],
        state["network.alpha_reduce"],
        op_names,
        nodes=space.get("nodes", hparams.get("nodes", 4)),
        multiplier=space.get("multiplier", hparams.get("multiplier", 4)),
    )


def export_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="darts-lightning export-genotype",
        description="Write the genotype derived from a search checkpoint as JSON (and a drawing of its cells).",
    )
    parser.add_argument("checkpoint", help="a .ckpt written by 'darts-lightning fit'")
    parser.add_argument("--out", default="genotype.json", help="output JSON path (default: genotype.json)")
    parser.add_argument("--png", default=None, help="also draw both cells into this PNG file")
    args = parser.parse_args(argv)
    genotype = genotype_from_checkpoint(args.checkpoint)
    if not isinstance(genotype, Genotype):  # a NAS-Bench-201 cell: its string form
        Path(args.out).write_text(str(genotype) + "\n")
        print(genotype)
        print(f"written to {args.out}")
        return 0
    genotype.save(args.out)
    if args.png:
        from .visualize import draw_genotype

        draw_genotype(genotype, args.png)
    print(repr(genotype))
    print(f"written to {args.out}" + (f" and {args.png}" if args.png else ""))
    return 0
