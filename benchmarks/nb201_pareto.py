"""Accuracy against multiply-adds on NAS-Bench-201: which searcher finds the better trade-offs for the same
query budget?

    python benchmarks/nb201_pareto.py --budget 100 --seeds 100 [--dump fronts.json]
                                      [--searchers random pareto_evolution ...] [--dataset cifar10]

Every searcher (default: ``random``, ``pareto_evolution``, ``regularized_evolution``, ``local_search``,
``reinforce``, each with its default hyperparameters) searches the NAS-Bench-201 space for seeds
``0 .. seeds-1`` with the shipped 12-epoch lookup table as its evaluator: the reward is the VALID accuracy
(``cifar10_valid``, the default of :class:`~darts_lightning.DiscreteSearch`), and the one objective is the
multiply-adds of the cell's network at the benchmark's size (16 channels, 5 cells per stage, 32×32×3 input,
10 classes), counted on the package's own networks (:class:`~darts_lightning.discrete.constraints.Pricing`).
A search spends ``--budget`` distinct architectures by the rule of ``DiscreteSearch``, run here by its own
loop without a Trainer (:class:`~darts_lightning.discrete.loop.SearchLoop`: the same searchers, the same
pricing and the same de-duplication; a Trainer per search would cost far more than the lookups).

The result of a search is the Pareto front of its history (valid accuracy maximised, multiply-adds
minimised). Its quality is its hypervolume: the area it dominates up to the reference point (the worst valid
accuracy of the table, the largest multiply-adds of the space), in normalised units, accuracy divided by the
table's range and multiply-adds by the space's range, so that 1 is the whole box between the reference and
the ideal point (best accuracy, fewest multiply-adds) and the space's own Pareto front reaches
``space_front_hypervolume``. The same front is also scored with the TEST accuracies of its architectures
(``hv_test``, reference: the worst test accuracy), so that choosing by a validation number is part of it.

Output: one JSON line per searcher with the mean and sample standard deviation over seeds of the
hypervolume and of the front's size, and, for every searcher but ``random``, the difference to random search
paired by seed, ``d_s = hv(searcher, s) - hv(random, s)``, as its mean and 95 % Student-t interval
``mean ± t(0.975, n-1) · sd(d)/√n``. Last, one JSON line with every figure (``summary``). ``--dump`` writes
``{searcher: [front of seed 0, front of seed 1, ...]}``, each front a list of NAS-Bench-201 strings.

What it can show: how the searchers' fronts compare on this table at this budget. What it cannot: fronts
under full training, with measured latency instead of multiply-adds, or on other spaces.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from scipy import stats

from darts_lightning.discrete.constraints import CostObjective, Pricing
from darts_lightning.discrete.lookup import NB201_SHAPES, LookupEvaluator
from darts_lightning.discrete.loop import SearchLoop
from darts_lightning.discrete.nb201_costs import nasbench201_costs
from darts_lightning.discrete.pareto import hypervolume_2d, pareto_front
from darts_lightning.discrete.searchers import build_searcher
from darts_lightning.spaces import get_space

SEARCHERS: tuple[str, ...] = ("random", "pareto_evolution", "regularized_evolution", "local_search", "reinforce")
OBJECTIVE = "multiply_adds"


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval of the mean."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


class Scale:
    """Normalised hypervolume of (accuracy, multiply-adds) points: reference (worst accuracy, most
    multiply-adds), ideal (best accuracy, fewest multiply-adds)."""

    def __init__(self, accuracies: Sequence[float], multiply_adds: Sequence[float]) -> None:
        self.reference = (min(accuracies), max(multiply_adds))
        self.ideal = (max(accuracies), min(multiply_adds))

    def hypervolume(self, points: Sequence[tuple[float, float]]) -> float:
        area = hypervolume_2d(points, self.reference)
        return area / ((self.ideal[0] - self.reference[0]) * (self.reference[1] - self.ideal[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=100, help="distinct architectures per search")
    parser.add_argument("--seeds", type=int, default=100, help="searches per searcher (seeds 0 .. seeds-1)")
    parser.add_argument("--searchers", nargs="+", default=list(SEARCHERS), help="the searchers (random is always run)")
    parser.add_argument("--dataset", choices=sorted(NB201_SHAPES), default="cifar10", help="the table's data set")
    parser.add_argument("--dump", default=None, help="write every seed's front (NAS-Bench-201 strings) here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    names = ["random"] + [name for name in args.searchers if name != "random"]

    space = get_space("nasbench201")
    evaluator = LookupEvaluator(space, dataset=args.dataset, metric="valid")
    shape = evaluator.data_shape()
    assert shape is not None, "the shipped table knows its data"
    valid, test = f"{args.dataset}_valid", f"{args.dataset}_test"
    # The reference and ideal points from every cell: the table's accuracies, the space's multiply-adds.
    every_cell = nasbench201_costs(args.dataset)
    cell_multiply_adds = [costs[1] for costs in every_cell.values()]
    scale = Scale([row[valid] for row in evaluator.rows.values()], cell_multiply_adds)
    scale_test = Scale([row[test] for row in evaluator.rows.values()], cell_multiply_adds)
    space_front = pareto_front(
        [{"reward": evaluator.rows[arch][valid], "costs": {OBJECTIVE: costs[1]}} for arch, costs in every_cell.items()],
        [OBJECTIVE],
    )
    space_hv = scale.hypervolume([(e["reward"], e["costs"][OBJECTIVE]) for e in space_front])
    context = {
        "dataset": args.dataset, "reward": valid, "objective": OBJECTIVE, "budget": args.budget, "seeds": args.seeds,
        "reference_point": {"accuracy": scale.reference[0], OBJECTIVE: scale.reference[1]},
        "ideal_point": {"accuracy": scale.ideal[0], OBJECTIVE: scale.ideal[1]},
        "reference_point_test": {"accuracy": scale_test.reference[0], OBJECTIVE: scale_test.reference[1]},
        "space_front_size": len(space_front), "space_front_hypervolume": round(space_hv, 4),
    }
    print(json.dumps(context), flush=True)
    # One pricing for every search (its tables are built once); the same code DiscreteSearch prices with.
    pricing: Pricing = Pricing(space, [CostObjective(OBJECTIVE)], shape)

    hypervolumes: dict[str, list[float]] = {}
    summary: dict[str, Any] = {"benchmark": "nb201_pareto", **context, "searchers": {}}
    dump: dict[str, list[list[str]]] = {}
    for name in names:
        began = time.perf_counter()
        hv, hv_test, sizes, evaluated, fronts = [], [], [], [], []
        for seed in range(args.seeds):
            loop = SearchLoop(build_searcher(name, space, seed=seed), evaluator, max_samples=50 * args.budget,
                              pricing=pricing, objectives=[OBJECTIVE])
            loop.run(args.budget)
            front = pareto_front(loop.history, [OBJECTIVE])
            hv.append(scale.hypervolume([(e["reward"], e["costs"][OBJECTIVE]) for e in front]))
            hv_test.append(scale_test.hypervolume([(e["metrics"][test], e["costs"][OBJECTIVE]) for e in front]))
            sizes.append(len(front))
            evaluated.append(loop.evaluated)
            fronts.append([e["arch"] for e in front])
        hypervolumes[name] = hv
        dump[name] = fronts
        line: dict[str, Any] = {
            "searcher": name, "hv_mean": round(statistics.fmean(hv), 4),
            "hv_std": round(statistics.stdev(hv), 4) if len(hv) > 1 else None,
            "hv_test_mean": round(statistics.fmean(hv_test), 4), "front_size_mean": round(statistics.fmean(sizes), 2),
            "min_evaluated": min(evaluated),
        }
        if name != "random":
            mean, low, high = t_interval([a - b for a, b in zip(hv, hypervolumes["random"])])
            line["vs_random_mean"] = round(mean, 4)
            line["vs_random_ci95"] = [round(low, 4), round(high, 4)]
            random_test = summary["searchers"]["random"]["_hv_test"]
            test_mean, test_low, test_high = t_interval([a - b for a, b in zip(hv_test, random_test)])
            line["vs_random_test_mean"] = round(test_mean, 4)
            line["vs_random_test_ci95"] = [round(test_low, 4), round(test_high, 4)]
        line["seconds"] = round(time.perf_counter() - began, 1)
        print(json.dumps(line), flush=True)
        summary["searchers"][name] = {**{k: v for k, v in line.items() if k != "searcher"}, "_hv_test": hv_test}
    for figures in summary["searchers"].values():
        figures.pop("_hv_test")
    if args.dump:
        with open(args.dump, "w") as handle:
            json.dump(dump, handle, indent=1)
            handle.write("\n")
    summary["interval"] = "95% Student-t interval of the mean difference to random search, paired by seed"
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
