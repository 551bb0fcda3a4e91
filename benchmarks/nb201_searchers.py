"""Discrete searchers on the NAS-Bench-201 table: which finds better cells for the same query budget?

    python benchmarks/nb201_searchers.py --budget 100 --seeds 100 [--dataset cifar10|cifar100|imagenet16]
                                         [--dump picks.json]

Runs every registered searcher that the comparison is about (``random``, ``regularized_evolution``,
``reinforce``, ``local_search``) with its default hyperparameters (taken from the searchers' papers and
reference code, see their docstrings; nothing here is tuned on this benchmark) against the shipped
12-epoch NAS-Bench-201 table (:class:`~darts_lightning.discrete.lookup.LookupEvaluator`), for seeds
``0 .. seeds-1``. ``--dataset`` picks one dataset; without it all three run.

One search spends ``--budget`` distinct architectures with the rule of
:class:`~darts_lightning.DiscreteSearch`: a proposal whose isomorphism-aware key (``space.key``) is
already known is answered from the history at no budget cost and told back to the searcher; the run
also stops when the searcher reports convergence or after ``50 × budget`` proposals. The loop below
repeats ``DiscreteSearch.training_step`` without a Trainer, because a Trainer per search would cost far
more than the table lookups. The searcher maximises the VALID accuracy (``<dataset>_valid``); the
architecture it returns is the first one with the highest valid accuracy, and what is reported is its
TEST accuracy (``<dataset>_test``), so that picking by a noisy validation number is part of the result.

Output: one JSON line per searcher and dataset, with the mean and sample standard deviation over seeds of
the best-found architecture's test accuracy, and, for every searcher but ``random``, the difference to
random search paired by seed: ``d_s = test(searcher, s) - test(random, s)``, reported as the mean of d
and its 95 % Student-t interval ``mean ± t(0.975, n-1) · sd(d)/√n``. Pairing by seed removes nothing
systematic (the searchers draw from different generators), but it is the natural unit: one seed, one
search of each kind. An interval that contains 0 means "no detectable difference at this budget", not
"equal". ``reinforce`` and ``local_search`` are also compared with ``regularized_evolution`` the same
way (``vs_regularized_evolution_*``). A first line per dataset (``table_best_valid``) gives the table's
best architecture by valid accuracy and its test accuracy, what an unlimited budget would return.
``min_evaluated`` is the fewest distinct architectures a seed evaluated (below the budget only when a
searcher converged or ran out of new proposals). ``--dump`` writes, per dataset and searcher, the
best-found architecture string of every seed.

What it can show: how the searchers rank on this table with these settings and this budget. What it
cannot: the ranking with full training instead of a lookup (no training noise beyond the table's own),
with other budgets or hyperparameters, or on other spaces.
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

from darts_lightning.discrete.lookup import LookupEvaluator
from darts_lightning.discrete.searchers import Searcher, build_searcher
from darts_lightning.spaces import get_space

SEARCHERS: tuple[str, ...] = ("random", "regularized_evolution", "reinforce", "local_search")
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16")
REFERENCES: tuple[str, ...] = ("random", "regularized_evolution")
"""Searchers that the later ones are compared with, paired by seed."""


def run_search(searcher: Searcher, evaluator: LookupEvaluator, budget: int,
               max_samples: int | None = None) -> list[dict[str, Any]]:
    """The history of one search, with the rules of ``DiscreteSearch.training_step``: stop when the budget
    is spent or the searcher has converged (checked before every evaluation), or after ``max_samples``
    proposals; a proposal with a known key is answered from the history, costs no budget, and is told."""
    space = searcher.space
    max_samples = max_samples or 50 * budget
    seen: dict[Any, float] = {}
    history: list[dict[str, Any]] = []
    samples = 0
    while len(history) < budget and not searcher.converged():
        while True:
            if samples >= max_samples:
                return history
            arch = searcher.ask()
            samples += 1
            key = space.key(arch)
            if key in seen:
                searcher.tell(arch, seen[key])
                continue
            break
        evaluation = evaluator.evaluate(arch)
        seen[key] = evaluation.reward
        history.append({"arch": space.format(arch), "reward": evaluation.reward, "metrics": evaluation.metrics})
        searcher.tell(arch, evaluation.reward)
    return history


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval of the mean."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=100, help="distinct architectures per search")
    parser.add_argument("--seeds", type=int, default=100, help="searches per searcher (seeds 0 .. seeds-1)")
    parser.add_argument("--dataset", choices=DATASETS, default=None, help="one dataset (default: all three)")
    parser.add_argument("--dump", default=None, help="write the best-found architecture of every seed here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    space = get_space("nasbench201")
    dump: dict[str, dict[str, list[str]]] = {}
    for dataset in [args.dataset] if args.dataset else list(DATASETS):
        evaluator = LookupEvaluator(space, dataset=dataset, metric="valid")
        test_column = f"{dataset}_test"
        # Context: the table's best architecture by the reward (valid), as a search with an unlimited budget finds it.
        oracle = max(evaluator.rows.items(), key=lambda item: item[1][f"{dataset}_valid"])
        print(json.dumps({"dataset": dataset, "searcher": "table_best_valid", "arch": oracle[0],
                          "valid": oracle[1][f"{dataset}_valid"], "test": oracle[1][test_column]}), flush=True)
        results: dict[str, list[float]] = {}
        dump[dataset] = {}
        for name in SEARCHERS:
            started = time.perf_counter()
            tests, picks, evaluated = [], [], []
            for seed in range(args.seeds):
                history = run_search(build_searcher(name, space, seed=seed), evaluator, args.budget)
                best = max(history, key=lambda h: h["reward"])  # first of equal rewards, as DiscreteSearch.best
                tests.append(best["metrics"][test_column])
                picks.append(best["arch"])
                evaluated.append(len(history))
            results[name] = tests
            dump[dataset][name] = picks
            line: dict[str, Any] = {
                "dataset": dataset, "searcher": name, "budget": args.budget, "seeds": args.seeds,
                "test_mean": round(statistics.fmean(tests), 3),
                "test_std": round(statistics.stdev(tests), 3) if len(tests) > 1 else None,
                "min_evaluated": min(evaluated),
            }
            for reference in REFERENCES:
                if reference in results and reference != name:
                    mean, low, high = t_interval([a - b for a, b in zip(tests, results[reference])])
                    line[f"vs_{reference}_mean"] = round(mean, 3)
                    line[f"vs_{reference}_ci95"] = [round(low, 3), round(high, 3)]
            line["seconds"] = round(time.perf_counter() - started, 1)
            print(json.dumps(line), flush=True)
    if args.dump:
        with open(args.dump, "w") as handle:
            json.dump(dump, handle, indent=1)
            handle.write("\n")


if __name__ == "__main__":
    main()
