"""Does a searched genotype beat random genotypes of the same cell space on the digits?

    python benchmarks/digits_searched_vs_random.py --genotype runs/darts_digits/lightning_logs/version_0/genotype.json

Trains the searched genotype (``--genotype``: anything ``Genotype.resolve`` reads: a published name, a
DARTS repr or a ``genotype.json``) and ``--random N`` genotypes drawn uniformly from the DARTS cell
space (``Genotype.random(random.Random(1000 + i))``) from scratch with ``--seeds K`` training seeds each,
with the settings of ``configs/retrain_digits.yaml`` (GenotypeClassifier, 1,500 training images, batch
64, no cutout, gradient clip 5, ``--epochs`` epochs, ``--channels`` C and ``--layers`` cells), and tests
every run on the fixed 297-image test split. Prints one JSON line per genotype (its per-seed test
accuracies, their mean and the half width of their 95 % t-interval) and a final JSON line comparing the
searched genotype with the random ones.

Statistics. For one genotype, the K seeds are the units: the interval is ``mean ± t(0.975, K-1) · s/√K``
with ``s`` the sample standard deviation over seeds; it covers training noise only (initialisation and
batch order), as the architecture is fixed. For the random group, the unit is a genotype: each random
genotype is summarised by its mean over its K seeds, and the group by the mean and sample standard
deviation of those N means. Their spread holds both the differences between architectures and what is
left of the seed noise, which is the right yardstick for "a typical cell of this space". The comparison
is ``difference = mean(searched) - mean(random genotype means)`` with standard error
``√(s_searched²/K + s_means²/N)`` and a 95 % interval from Student's t with Welch–Satterthwaite
degrees of freedom (the two groups have different sizes and variances).

What it can show: whether this one searched cell, trained this way on this data, is better or worse
than a cell drawn at random from the space, beyond training noise. What it cannot show: that the search
method beats random search (that needs several searches and a random search of equal cost), that the
ranking carries over to other data, widths or depths (CIFAR-10, 20 cells), or which design choice made
a difference. The digits are ceiling-limited: most cells reach about 99 % test accuracy, and one test
image is about 0.34 %, so differences of a few tenths of a percent are within noise; with few random
genotypes (N = 5) the interval of the random group is wide too. An interval that includes 0 means "no
detectable difference", not "equal".
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from scipy import stats

from darts_lightning import ClassificationDataModule, Genotype, GenotypeClassifier
from darts_lightning.data import DIGITS_TEST_SIZE


def t_half_width(values: Sequence[float]) -> float | None:
    """Half width of the 95 % Student-t interval of the mean; ``None`` for fewer than two values."""
    if len(values) < 2:
        return None
    return float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def train_and_test(genotype: Genotype, seed: int, args: argparse.Namespace) -> float:
    """Test accuracy of ``genotype`` trained from scratch with ``seed``, as configs/retrain_digits.yaml does."""
    pl.seed_everything(seed, verbose=False)
    data = ClassificationDataModule("digits", batch_size=64, cutout_length=0, seed=seed)
    model = GenotypeClassifier(
        repr(genotype), in_channels=data.in_channels, num_classes=data.num_classes, image_size=data.image_size,
        channels=args.channels, layers=args.layers, variant="cifar", auxiliary_weight=0.4, drop_path_prob=0.2,
        lr=0.025, lr_min=0.0, momentum=0.9, weight_decay=3e-4,
    )
    # The model exports itself into the trainer's directory at the end of fit: keep that out of the tree.
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_epochs=args.epochs, gradient_clip_val=5.0, gradient_clip_algorithm="norm",
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            deterministic=True, default_root_dir=root,
        )
        trainer.fit(model, datamodule=data)
        (result,) = trainer.test(model, datamodule=data, verbose=False)
    return float(result["test/acc"])


def evaluate(name: str, genotype: Genotype, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    accuracies = [train_and_test(genotype, seed, args) for seed in range(args.seeds)]
    row = {
        "name": name,
        "repr": repr(genotype),
        "seeds": list(range(args.seeds)),
        "test_acc": accuracies,
        "mean": statistics.fmean(accuracies),
        "ci95_half_width": t_half_width(accuracies),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def compare(searched: dict[str, Any], randoms: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Searched minus the mean of the random genotypes' means, with a Welch 95 % interval (see the docstring)."""
    means = [row["mean"] for row in randoms]
    random_mean = statistics.fmean(means)
    k, n = len(searched["test_acc"]), len(means)
    result: dict[str, Any] = {
        "comparison": "searched - mean of random genotypes",
        "searched_mean": searched["mean"],
        "random_mean": random_mean,
        "random_genotype_means": means,
        "difference": searched["mean"] - random_mean,
        "ci95_half_width": None,
        "ci95": None,
        "welch_df": None,
        "searched_better_than_every_random": all(searched["mean"] > m for m in means),
        "one_test_image": 1.0 / DIGITS_TEST_SIZE,
    }
    if k < 2 or n < 2:
        result["note"] = "an interval needs at least 2 seeds and 2 random genotypes"
        return result
    var_searched = statistics.variance(searched["test_acc"]) / k
    var_random = statistics.variance(means) / n
    se = math.sqrt(var_searched + var_random)
    if se == 0.0:
        half, df = 0.0, None
    else:
        df = se**4 / (var_searched**2 / (k - 1) + var_random**2 / (n - 1))
        half = float(stats.t.ppf(0.975, df)) * se
    result.update({
        "ci95_half_width": half,
        "ci95": [result["difference"] - half, result["difference"] + half],
        "welch_df": df,
    })
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genotype", required=True, help="published name, DARTS repr or genotype.json of the searched cell")
    parser.add_argument("--random", type=int, default=5, help="number of random genotypes (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per genotype (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default: %(default)s)")
    parser.add_argument("--channels", type=int, default=16, help="initial channels C (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=8, help="number of cells (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument(
        "--allow-import-paths", action="store_true",
        help="accept ops named by import path (package.module:factory) in a genotype file; reading them imports "
        "that module, so only for files you trust (e.g. written by your own search with such ops)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.random < 1:
        parser.error("--seeds and --random must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    searched = evaluate("searched", Genotype.resolve(args.genotype, allow_import_paths=args.allow_import_paths), args)
    randoms = [evaluate(f"random_{i}", Genotype.random(random.Random(1000 + i)), args) for i in range(args.random)]
    print(json.dumps(compare(searched, randoms)), flush=True)


if __name__ == "__main__":
    main()
