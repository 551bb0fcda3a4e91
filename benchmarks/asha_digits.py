"""Successive halving over epochs (ASHA) against training every architecture fully, on the digits.

    python benchmarks/asha_digits.py --budget 27 --seeds 0 1 2

For each seed, a seeded random search of ``--budget`` NAS-Bench-201 cells scored by the ``scratch`` evaluator
on the bundled digits (holdout split), twice: every cell trained for ``--max-epochs`` epochs, and ASHA with
rungs of ``--min-epochs`` · eta^k epochs up to ``--max-epochs`` (the same searcher, seed and evaluator). Both
answers are scored the same way, by their holdout accuracy after ``--max-epochs`` epochs (deterministic per
cell). Prints one JSON line per seed and method (the answer's reward and cell, the epochs trained in all, the
wall-clock seconds), then one summary line with the means.

The NAS-Bench-201 table holds one fidelity (12 epochs), so this comparison needs real trainings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from darts_lightning.discrete.fidelity import SuccessiveHalving
from darts_lightning.discrete.loop import SearchLoop
from darts_lightning.discrete.scratch import ScratchEvaluator
from darts_lightning.discrete.searchers import build_searcher


def search(args: argparse.Namespace, seed: int, asha: bool) -> dict:
    evaluator = ScratchEvaluator("nasbench201", epochs=args.max_epochs, channels=args.channels, layers=args.layers)
    fidelity = SuccessiveHalving(args.min_epochs, args.max_epochs, args.eta) if asha else None
    loop = SearchLoop(build_searcher(args.searcher, "nasbench201", seed=seed), evaluator,
                      max_samples=50 * args.budget, fidelity=fidelity)
    start = time.perf_counter()
    loop.run(budget=args.budget)
    wall = time.perf_counter() - start
    best = loop.best()
    rungs = [r for e in loop.evaluations() for r in e.get("rungs", [{"epochs": args.max_epochs}])]
    return {"seed": seed, "method": "asha" if asha else "full", "reward": best["reward"],
            "epochs_of_answer": best.get("epochs", args.max_epochs), "arch": best["arch"],
            "trials": len(rungs), "epochs_trained": sum(r["epochs"] for r in rungs), "wall_s": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=27)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--searcher", default="random")
    parser.add_argument("--min-epochs", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--layers", type=int, default=1)
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        for asha in (False, True):
            result = search(args, seed, asha)
            results.append(result)
            print(json.dumps(result), flush=True)
    summary = {}
    for method in ("full", "asha"):
        rows = [r for r in results if r["method"] == method]
        summary[method] = {key: round(statistics.fmean(r[key] for r in rows), 4)
                           for key in ("reward", "epochs_trained", "wall_s", "trials")}
    summary["asha_epochs_fraction"] = round(summary["asha"]["epochs_trained"] / summary["full"]["epochs_trained"], 3)
    summary["asha_time_fraction"] = round(summary["asha"]["wall_s"] / summary["full"]["wall_s"], 3)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
