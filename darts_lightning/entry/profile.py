"""``darts-lightning profile``: measure the latency of every candidate op of a space on this machine into a lookup
table, and check the table's predictions against networks measured end to end (``--validate N``).

    darts-lightning profile --space nasbench201 --device cpu --threads 1 --table nb201_cpu.json
    darts-lightning profile --space nasbench201 --device cpu --threads 1 --table nb201_cpu.json --validate 30

With ``--validate N`` an existing ``--table`` is read (a missing one is profiled first, and written) and N random
networks of the space are measured end to end (the median of ``--runs``, at least 20): the last line printed is
one JSON object with ``kendall_tau`` and ``mean_relative_error``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from darts_lightning.costs.latency import MeasuredLatency, load_latency_table, profile_space, save_latency_table, validate_latency
from darts_lightning.spaces.base import get_space
from darts_lightning.spaces.mixing import SoftmaxRelaxation

__all__ = ["profile_main"]


def _bar(description: str) -> Callable[[int], Any]:
    """A factory of tqdm progress bars of ``total`` steps."""

    def make(total: int) -> Any:
        from tqdm import tqdm  # type: ignore[import-untyped]  # Lightning's progress bars depend on it

        return tqdm(total=total, desc=description, unit="op" if "ops" in description else "net", leave=False)

    return make


def profile_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="darts-lightning profile",
        description="Measure every candidate op of a search space at every site it runs (channels, stride, "
        "resolution) into a latency lookup table; --validate N compares its predictions with N random networks "
        "measured end to end.",
    )
    parser.add_argument("--space", required=True,
                        help="a registered space (darts, nasbench201, rdarts_s1, ...) or a class path (my_module.MySpace)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on the CPU (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--table", default=None,
                        help="the table file: written by profiling, read by --validate when it exists "
                        "(default: latency_<space>_<device>.json)")
    parser.add_argument("--validate", type=int, default=None, metavar="N", help="measure N random networks end to end")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per measurement (the median is kept; >= 20 "
                        "for --validate)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before each measurement")
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=None, help="network width as the space reads it "
                        "(default: the space's evaluation size)")
    parser.add_argument("--layers", type=int, default=None, help="network depth as the space reads it")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random networks of --validate")
    args = parser.parse_args(argv)
    space = get_space(args.space if "." not in args.space else {"class_path": args.space})
    if args.validate is not None and args.runs < 20:
        raise ValueError(f"--validate measures each network as the median of at least 20 runs, got --runs {args.runs}")
    model = MeasuredLatency(None, args.device, args.threads, args.batch_size, args.runs, args.warmup)
    size = {"in_channels": args.in_channels, "num_classes": args.num_classes, "image_size": args.image_size,
            "channels": args.channels, "layers": args.layers}
    path = Path(args.table or f"latency_{space.name}_{args.device}.json")
    if args.validate is not None and path.is_file():
        supernet = space.build_supernet(SoftmaxRelaxation(), in_channels=args.in_channels,
                                        num_classes=args.num_classes, image_size=args.image_size)
        table = load_latency_table(path, space, supernet, size, expected=model)
        print(f"read {path}")
    else:
        table = profile_space(space, model, **size, progress=_bar(f"profiling {space.name} ops"))
        save_latency_table(table, path, space, model, size)
        print(f"profiled the {space.name} space's ops on {args.device} ({model.describe()['threads']} threads, batch "
              f"{args.batch_size}, torch {torch.__version__}): written to {path}")
    if args.validate is not None:
        result = validate_latency(table, space, model, args.validate, **size, seed=args.seed,
                                  progress=_bar(f"measuring {args.validate} networks"))
        print(json.dumps({k: result[k] for k in ("kendall_tau", "mean_relative_error", "networks")}))
    return 0
