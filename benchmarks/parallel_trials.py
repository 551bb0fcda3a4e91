"""Wall-clock time of a multi-trial search on Ray by the number of workers, and Ray's overhead per trial.

    python benchmarks/parallel_trials.py --trials 16 --workers 1 2

A random search (seed ``--seed``) over NAS-Bench-201 cells, scored by the ``scratch`` evaluator on the bundled
digits (``--epochs`` of training at ``--channels``/``--layers``, one torch thread per trial), run on one
local Ray instance with as many CPUs as the most workers asked for: first with 1 worker, then with 2 (or
whatever ``--workers`` lists), each trial a Ray task reserving one CPU. The seeded random search evaluates the
same cells whatever the number of workers (checked). Prints one JSON line per worker count (wall-clock
seconds, the summed and the shortest / median / longest trial times measured inside the trials), then, last,
one line with ``seconds_by_workers`` (worker count -> wall-clock seconds), ``speedup`` (the first count's time
over the last's) and ``overhead_per_trial_s``: the 1-worker wall-clock time minus the summed trial times,
divided by the number of trials (starting the workers, shipping the evaluator and the results, the search
loop itself).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import ray

from darts_lightning.discrete.loop import SearchLoop
from darts_lightning.discrete.ray_executor import RayExecutor
from darts_lightning.discrete.scratch import ScratchEvaluator
from darts_lightning.discrete.searchers import build_searcher


def run(args: argparse.Namespace, workers: int) -> dict:
    evaluator = ScratchEvaluator("nasbench201", epochs=args.epochs, channels=args.channels, layers=args.layers)
    loop = SearchLoop(build_searcher("random", "nasbench201", seed=args.seed), evaluator, max_samples=50 * args.trials,
                      executor=RayExecutor(workers=workers, resources_per_trial={"cpu": 1}, threads_per_trial=1))
    start = time.perf_counter()
    reason = loop.run(budget=args.trials)
    wall = time.perf_counter() - start
    loop.executor.close()
    trials = [entry["cost"] for entry in loop.evaluations()]
    if len(trials) != args.trials:
        raise RuntimeError(f"{len(trials)} trials finished, expected {args.trials} ({reason}; failed: {loop.failed})")
    return {"workers": workers, "wall_s": round(wall, 2), "summed_trial_s": round(sum(trials), 2),
            "shortest_trial_s": round(min(trials), 2), "median_trial_s": round(statistics.median(trials), 2),
            "longest_trial_s": round(max(trials), 2), "best_reward": loop.best()["reward"],
            "cells": sorted(entry["arch"] for entry in loop.evaluations())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=110, help="training epochs per trial (110: at least 15 s here)")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
    results = []
    for workers in args.workers:
        result = run(args, workers)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "cells"}), flush=True)
    ray.shutdown()
    if any(result["cells"] != results[0]["cells"] for result in results):
        raise RuntimeError("the seeded random search evaluated other cells with another number of workers")
    by_workers = {str(r["workers"]): r["wall_s"] for r in results}
    one = next((r for r in results if r["workers"] == 1), None)
    summary = {
        "trials": args.trials, "epochs": args.epochs, "seconds_by_workers": by_workers,
        "speedup": round(results[0]["wall_s"] / results[-1]["wall_s"], 3),
        "overhead_per_trial_s": round((one["wall_s"] - one["summed_trial_s"]) / args.trials, 3) if one else None,
        "shortest_trial_s": min(r["shortest_trial_s"] for r in results),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
