"""The DARTS evaluation protocol as one command: ``darts-lightning protocol``.

Liu et al. (ICLR 2019, sec. 3.2) do not report the cell of a single search. They run the search with
several seeds, pick the best of the derived cells by a short training from scratch, and report the
chosen cell trained from scratch with several seeds (mean ± standard deviation). This module runs the
three stages with the LightningCLI configs of the package:

1. **Search**, once per search seed (``seed_everything`` and the data split's seed both set to it).
2. **Selection**: every derived genotype is trained briefly (``selection_epochs``) with the
   ``holdout`` split of :class:`~darts_lightning.data.ClassificationDataModule`: training on
   search-train, scoring by the final ``val/acc`` on search-val. The test split is never looked at
   while choosing. All candidates share one split and one seed (0), so their scores differ only by
   their cells. The highest score wins; ties go to the lowest search seed.
3. **Final evaluation**: the chosen genotype is trained with the retrain config's own schedule on the
   full training set, once per final seed (which seeds both the initialisation and the batch order),
   and the weights at the end of training are tested on the test split.

``{output}/protocol.json`` records every search, every selection score, the choice, the per-seed test
accuracies and their mean and sample standard deviation (n - 1). For fixed seeds the result is
deterministic, as the configs train with ``deterministic: true``.

Only the test split is kept away from the selection. The search pool itself has been seen by every
search (search-train by the weights, search-val by α), so the selection scores compare cells, not
generalisation to unseen data; the test accuracies of stage 3 are the numbers to report.

The runs of a stage are independent: ``--executor ray`` runs them at once as Ray tasks (a local Ray instance,
or the cluster at ``--ray-address``), each reserving ``--cpus-per-run`` CPUs and ``--gpus-per-run`` GPUs, with
the same record as one after the other (each run is seeded by its own seed). On a cluster of several machines,
the configs, the data and ``--output`` must be on a file system every machine sees at the same path.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from darts_lightning.entry.runner import run_cli
from darts_lightning.spaces.darts.genotype import Genotype
from darts_lightning.utils.files import atomic_write_text

__all__ = ["choose", "run_protocol", "protocol_main", "RUN_EXECUTORS"]

#: How the runs of a stage are executed.
RUN_EXECUTORS = ("sequential", "ray")

SELECTION_SEED = 0
"""Training seed and data-split seed of every selection run: one shared split makes scores comparable."""


def _metric(cli: Any, name: str) -> float:
    """A logged metric of the CLI's trainer, with a clear error when the run did not log it."""
    metrics = cli.trainer.callback_metrics
    if name not in metrics:
        raise RuntimeError(
            f"the run logged no {name!r} (logged: {', '.join(sorted(metrics)) or 'nothing'}); "
            "check that validation is not disabled (e.g. --trainer.limit_val_batches 0)"
        )
    return float(metrics[name])


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); the deviation is ``None`` for a single value."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def _search_run(argv: list[str], cwd: str) -> dict[str, Any]:
    """One search (stage 1) from its command line; its genotype, copied to ``genotype.json`` in its root."""
    os.chdir(cwd)
    cli = run_cli(argv)
    genotype = cli.model.selected_answer()
    if not isinstance(genotype, Genotype):
        config = argv[argv.index("--config") + 1]
        raise ValueError(
            f"the protocol retrains DARTS genotypes (GenotypeClassifier), but the search config {config} "
            f"searches the {cli.model.space.name} space; give a search config of the DARTS space"
        )
    # A copy at a fixed place: the search's own genotype.json lies in its versioned log directory.
    root = Path(argv[argv.index("--trainer.default_root_dir") + 1])
    genotype_file = genotype.save(root / "genotype.json")
    return {"genotype": repr(genotype), "genotype_file": str(genotype_file), "log_dir": cli.trainer.log_dir,
            "import_paths": bool(genotype.import_path_ops())}


def _retrain_run(argv: list[str], cwd: str, final: bool) -> dict[str, Any]:
    """One retraining from its command line: a selection run (stage 2, scored by ``val/acc`` on the holdout
    split) or a final run (stage 3, tested on the test split with the weights at the end of training)."""
    os.chdir(cwd)
    cli = run_cli(argv)
    if cli.datamodule.holdout == final:
        misuse = "a final run used the holdout split" if final else "a selection run did not use the holdout split"
        raise RuntimeError(f"{misuse}; do not override data.holdout in retrain_args")
    if not final:
        return {"score": _metric(cli, "val/acc"), "log_dir": cli.trainer.log_dir,
                "eval_size": len(cli.datamodule.test_set)}
    # The weights at the end of training are tested: no checkpoint is picked by its test accuracy.
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    return {"test_acc": _metric(cli, "test/acc"), "log_dir": cli.trainer.log_dir, "eval_size": len(cli.datamodule.test_set)}


def _run_all(run: Callable[..., dict[str, Any]], calls: Sequence[tuple[Any, ...]], executor: str,
             ray_options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``run(*call)`` for every call, in order: one after the other, or at once as Ray tasks."""
    if executor == "sequential":
        return [run(*call) for call in calls]
    try:
        ray = importlib.import_module("ray")
    except ImportError as error:
        raise ImportError('the protocol\'s ray executor needs Ray, which is not installed: '
                          'pip install "darts-lightning[ray]"') from error
    if not ray.is_initialized():
        ray.init(address=ray_options.get("address"), include_dashboard=False)
    cpus, gpus = float(ray_options.get("cpus", 1)), float(ray_options.get("gpus", 0))
    have = ray.cluster_resources()
    for name, need in (("CPU", cpus), ("GPU", gpus)):
        if need > have.get(name, 0.0):
            raise ValueError(f"each run asks for {need:g} {name}, but the Ray cluster has {have.get(name, 0.0):g}: no "
                             f"run could ever start; lower --{name.lower()}s-per-run or join a cluster that has them")
    task = ray.remote(run).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
    return list(ray.get([task.remote(*call) for call in calls]))


def choose(searches: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The search with the highest ``selection_score``; among equal scores the lowest ``seed``, so the
    choice never depends on the order the seeds were given in."""
    return max(searches, key=lambda search: (search["selection_score"], -search["seed"]))


def run_protocol(
    search_config: str | Path = "configs/darts_digits.yaml",
    retrain_config: str | Path = "configs/retrain_digits.yaml",
    search_seeds: Sequence[int] = (0, 1, 2, 3),
    selection_epochs: int = 10,
    final_seeds: Sequence[int] = (0, 1, 2),
    output: str | Path = "runs/protocol",
    search_args: Sequence[str] = (),
    retrain_args: Sequence[str] = (),
    executor: str = "sequential",
    ray_address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
) -> dict[str, Any]:
    """Search with every search seed, select the best genotype on the holdout split, evaluate it with
    every final seed on the test split; write and return the record (see the module docstring).

    ``search_args`` and ``retrain_args`` are LightningCLI overrides appended to every search and every
    retraining (selection and final) command; coming last, they override the protocol's own settings. A search's
    settings live in its parts (``--model.init_args.space.init_args.channels 4``,
    ``--model.init_args.arch_optimizer.init_args.lr 3e-2``), a retraining's are flat (``--model.init_args.layers 5``).

    A retraining reads its genotype from the ``genotype.json`` the protocol's search wrote, and
    :class:`~darts_lightning.GenotypeClassifier` refuses import-path ops (``package.module:factory``) from
    a file unless told to trust it. When the search config names ops by import path, the genotype the search
    derived from them is the user's own, so the protocol passes ``--model.allow_import_paths true`` to the
    retrainings of exactly those genotypes that hold import paths (and to no other).

    ``executor``: ``sequential`` (one run after the other, in this process) or ``ray`` (the runs of each stage
    at once as Ray tasks on the cluster at ``ray_address``, or a local instance, each reserving
    ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs).
    """
    if executor not in RUN_EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid executors are: {', '.join(RUN_EXECUTORS)}")
    for name, amount in (("cpus_per_run", cpus_per_run), ("gpus_per_run", gpus_per_run)):
        if amount < 0:
            raise ValueError(f"{name} must be at least 0, got {amount}")
    ray_options = {"address": ray_address, "cpus": cpus_per_run, "gpus": gpus_per_run}
    cwd = os.getcwd()
    search_seeds = [int(s) for s in search_seeds]
    final_seeds = [int(s) for s in final_seeds]
    if not search_seeds or not final_seeds:
        raise ValueError("the protocol needs at least one search seed and at least one final seed")
    for name, seeds in (("search", search_seeds), ("final", final_seeds)):
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"the {name} seeds {seeds} repeat a seed; each seed has its own run directory")
    if selection_epochs < 1:
        raise ValueError(f"selection_epochs must be positive, got {selection_epochs}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    quiet = ["--trainer.enable_progress_bar", "false"]

    # Stage 1: one search per seed.
    runs = _run_all(_search_run, [([
        "fit", "--config", str(search_config), "--seed_everything", str(seed), "--data.init_args.seed", str(seed),
        "--trainer.default_root_dir", str(output / f"search_seed{seed}"), *quiet, *search_args,
    ], cwd) for seed in search_seeds], executor, ray_options)
    searches: list[dict[str, Any]] = []
    trusted: dict[str, list[str]] = {}  # genotype file -> the retraining's consent to its import paths
    for seed, run in zip(search_seeds, runs):
        # The search's own ops list may name ops by import path; its genotype file is then trusted.
        trusted[run["genotype_file"]] = ["--model.allow_import_paths", "true"] if run["import_paths"] else []
        searches.append({"seed": seed, "genotype": run["genotype"], "genotype_file": run["genotype_file"],
                         "log_dir": run["log_dir"]})

    # Stage 2: a short training of every genotype on the holdout split; the test split stays unseen.
    runs = _run_all(_retrain_run, [([
        "fit", "--config", str(retrain_config), "--model.genotype", search["genotype_file"],
        *trusted[search["genotype_file"]],
        "--data.init_args.holdout", "true", "--trainer.max_epochs", str(selection_epochs),
        "--seed_everything", str(SELECTION_SEED), "--data.init_args.seed", str(SELECTION_SEED),
        "--trainer.default_root_dir", str(output / f"selection_seed{search['seed']}"), *quiet, *retrain_args,
    ], cwd, False) for search in searches], executor, ray_options)
    for search, run in zip(searches, runs):
        search["selection_score"] = run["score"]
        search["selection_log_dir"] = run["log_dir"]
    selection_eval_size: int | None = runs[-1]["eval_size"]
    chosen = choose(searches)

    # Stage 3: the chosen genotype, trained with the retrain config's schedule, tested on the test split.
    runs = _run_all(_retrain_run, [([
        "fit", "--config", str(retrain_config), "--model.genotype", chosen["genotype_file"],
        *trusted[chosen["genotype_file"]],
        "--data.init_args.holdout", "false", "--seed_everything", str(seed), "--data.init_args.seed", str(seed),
        "--trainer.default_root_dir", str(output / f"final_seed{seed}"), *quiet, *retrain_args,
    ], cwd, True) for seed in final_seeds], executor, ray_options)
    finals = [{"seed": seed, "test_acc": run["test_acc"], "log_dir": run["log_dir"]} for seed, run in zip(final_seeds, runs)]
    final_eval_size: int | None = runs[-1]["eval_size"]

    accuracies = [f["test_acc"] for f in finals]
    mean, std = _mean_std(accuracies)
    record: dict[str, Any] = {
        "search_config": str(search_config),
        "retrain_config": str(retrain_config),
        "search_args": list(search_args),
        "retrain_args": list(retrain_args),
        "selection_epochs": selection_epochs,
        "selection_seed": SELECTION_SEED,
        "selection_eval_size": selection_eval_size,
        "searches": searches,
        "chosen_seed": chosen["seed"],
        "chosen_genotype": chosen["genotype"],
        "final": finals,
        "final_eval_size": final_eval_size,
        "test_acc_mean": mean,
        "test_acc_std": std,
    }
    path = output / "protocol.json"
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    record["path"] = str(path)
    return record


def _summary(record: dict[str, Any]) -> str:
    std = record["test_acc_std"]
    lines = ["DARTS evaluation protocol"]
    for search in record["searches"]:
        mark = "  <- chosen" if search["seed"] == record["chosen_seed"] else ""
        lines.append(f"  search seed {search['seed']}: selection val/acc {search['selection_score']:.4f}{mark}")
    lines.append(f"  chosen genotype (search seed {record['chosen_seed']}): {record['chosen_genotype']}")
    per_seed = ", ".join(f"seed {f['seed']}: {f['test_acc']:.4f}" for f in record["final"])
    lines.append(f"  test accuracy per seed ({record['final_eval_size']} test images): {per_seed}")
    lines.append(f"  test accuracy: {record['test_acc_mean']:.4f}" + (f" ± {std:.4f} (sample std)" if std is not None else ""))
    lines.append(f"  written to {record['path']}")
    return "\n".join(lines)


def protocol_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="darts-lightning protocol",
        description=(
            "The DARTS evaluation protocol: search with several seeds, select the best genotype by a short "
            "training on the holdout split (never the test split), then train it with several seeds and test it."
        ),
        epilog="An override string without spaces that starts with '-' needs the '=' form: --search-args=--x.",
    )
    parser.add_argument("--search-config", default="configs/darts_digits.yaml",
                        help="search config (default: %(default)s)")
    parser.add_argument("--retrain-config", default="configs/retrain_digits.yaml",
                        help="retraining config (default: %(default)s)")
    parser.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1, 2, 3],
                        help="one search per seed (default: 0 1 2 3)")
    parser.add_argument("--selection-epochs", type=int, default=10,
                        help="epochs of each selection training (default: %(default)s)")
    parser.add_argument("--final-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="final trainings of the chosen genotype (default: 0 1 2)")
    parser.add_argument("--output", default="runs/protocol",
                        help="directory of all runs and protocol.json (default: %(default)s)")
    parser.add_argument("--search-args", default="",
                        help='overrides appended to every search command, one string split like a shell line, e.g. '
                        '"--model.init_args.space.init_args.channels 4 --trainer.max_epochs 2" (short: --model.space.channels 4)')
    parser.add_argument("--retrain-args", default="",
                        help='overrides appended to every retraining command (selection and final), e.g. '
                        '"--model.init_args.layers 5"')
    parser.add_argument("--executor", choices=RUN_EXECUTORS, default="sequential",
                        help="sequential: one run after the other; ray: the runs of each stage at once as Ray tasks "
                        "(default: %(default)s)")
    parser.add_argument("--ray-address", default=None,
                        help="the Ray cluster to join (default: a local Ray instance)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs each Ray run reserves (default: 1)")
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="GPUs each Ray run reserves (default: 0)")
    args = parser.parse_args(argv)
    record = run_protocol(
        search_config=args.search_config,
        retrain_config=args.retrain_config,
        search_seeds=args.search_seeds,
        selection_epochs=args.selection_epochs,
        final_seeds=args.final_seeds,
        output=args.output,
        search_args=shlex.split(args.search_args),
        retrain_args=shlex.split(args.retrain_args),
        executor=args.executor,
        ray_address=args.ray_address,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
    )
    print(_summary(record))
    summary = {key: record[key] for key in ("chosen_seed", "chosen_genotype", "test_acc_mean", "test_acc_std", "path")}
    summary["selection_scores"] = {str(s["seed"]): s["selection_score"] for s in record["searches"]}
    summary["test_acc"] = {str(f["seed"]): f["test_acc"] for f in record["final"]}
    print(json.dumps(summary))
    return 0
