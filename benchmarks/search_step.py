"""Time one search step of darts_lightning on random CIFAR-shaped data.

    python benchmarks/search_step.py --channels 16 --layers 8 --batch-size 64 --image-size 32 --order 1
    python benchmarks/search_step.py --method pcdarts   # also gdas, snas, drnas
    python benchmarks/search_step.py --compile          # the compiled supernet (the CompileSupernet callback)

``--method`` picks the member of the DARTS family and reads its parts from ``configs/<method>_cifar10.yaml``
(the model's ``init_args``: the space with its options, the relaxation, the estimator, the two optimizers'
settings, the remedies, the step order): ``darts``, ``pcdarts`` (partial channels, K = ``--partial-channels``
if given, and edge normalisation), ``gdas``, ``snas``, ``drnas``, ``darts_minus``, ``beta_darts``. The
supernet's shape (the space's ``channels`` and ``layers``), batch and image size come from the command line
and are the same for every method, so the figures compare the methods' cost at one configuration; the α
warm-up (the ``ArchWarmup`` remedy) is left out so that every timed step includes the architecture step.

Prints one JSON line: the configuration, ``seconds_per_step`` (median over ``--steps`` steps after
``--warmup`` steps; a step is the architecture step plus the weight step, as the Trainer runs them),
``peak_memory_mb`` (peak resident memory of this process on CPU, which includes about 0.8 GB for the
torch import itself; peak allocated memory on GPU) and ``baseline_memory_mb`` (resident memory just
before training starts, CPU only). Run each configuration in a fresh process, as this script does when
invoked once per configuration.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

from darts_lightning import (
    ArchWarmup,
    CompileSupernet,
    DARTSSearch,
    DartsSpace,
    FirstOrderGradient,
    NB201Space,
    Relaxation,
    Remedy,
    SearchSpace,
    SecondOrderGradient,
)
from darts_lightning.differentiable.estimators import ESTIMATORS, ArchitectureGradient
from darts_lightning.differentiable.relaxations import RELAXATIONS
from darts_lightning.differentiable.remedies import REMEDIES
from darts_lightning.spaces.base import SPACES
from darts_lightning.utils.components import Component, build_component

REPO = Path(__file__).resolve().parents[1]
METHODS = ("darts", "pcdarts", "gdas", "snas", "drnas", "darts_minus", "beta_darts")
#: the data's shape: set by the command line, not by the config
NOT_FROM_CONFIG = {"in_channels", "num_classes", "image_size"}


def replaced(part: Component, **changes: Any) -> Any:
    """A new part of the same class with some constructor arguments changed (the others as ``part`` has them)."""
    config = part.config()
    return build_component({"class_path": config["class_path"], "init_args": {**config["init_args"], **changes}},
                           type(part), type(part).__name__)


def method_arguments(method: str, partial_channels: int | None = None) -> dict[str, Any]:
    """The ``DARTSSearch`` arguments of ``configs/<method>_cifar10.yaml``, its parts built, except the data's shape
    and without the α warm-up; ``partial_channels`` replaces the relaxation's K."""
    config = yaml.safe_load((REPO / "configs" / f"{method}_cifar10.yaml").read_text())
    init_args = config["model"].get("init_args") or {}
    kwargs = {k: v for k, v in init_args.items() if k not in NOT_FROM_CONFIG}
    what = f"configs/{method}_cifar10.yaml: model"
    kwargs["space"] = build_component(kwargs.get("space") or DartsSpace(), SearchSpace, f"{what}.space", SPACES.get)
    if kwargs.get("relaxation") is not None:
        kwargs["relaxation"] = build_component(kwargs["relaxation"], Relaxation, f"{what}.relaxation", RELAXATIONS.get)
    if kwargs.get("estimator") is not None:
        kwargs["estimator"] = build_component(kwargs["estimator"], ArchitectureGradient, f"{what}.estimator", ESTIMATORS.get)
    remedies = [build_component(r, Remedy, f"{what}.remedies[{i}]", REMEDIES.get)
                for i, r in enumerate(kwargs.get("remedies") or ())]
    kwargs["remedies"] = [r for r in remedies if not isinstance(r, ArchWarmup)]
    if partial_channels is not None:
        relaxation = kwargs.get("relaxation") or RELAXATIONS.get("darts")()
        kwargs["relaxation"] = replaced(relaxation, partial_channels=partial_channels)
    return kwargs


def with_shape(kwargs: Mapping[str, Any], channels: int, layers: int, nodes: int | None = None) -> dict[str, Any]:
    """``kwargs`` with the space resized: ``channels`` and ``layers`` (cells; NAS-Bench-201: cells per stage),
    and for the DARTS cell ``nodes`` intermediate nodes, all concatenated into its output."""
    space = kwargs.get("space") or DartsSpace()
    if isinstance(space, NB201Space):
        space = replaced(space, channels=channels, cells_per_stage=layers)
    elif isinstance(space, DartsSpace):
        cell = {} if nodes is None else {"nodes": nodes, "multiplier": nodes}
        space = replaced(space, channels=channels, layers=layers, **cell)
    else:
        raise ValueError(f"no shape to set for the space {space!r}")
    return {**kwargs, "space": space}


def with_order(kwargs: Mapping[str, Any], order: int) -> dict[str, Any]:
    """``kwargs`` with a first- (1) or second-order (2) estimator; the method's own if it has that order
    already, otherwise the default one measured on the same batch."""
    estimator = kwargs.get("estimator") or FirstOrderGradient()
    if estimator.order != order:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        estimator = (FirstOrderGradient if order == 1 else SecondOrderGradient)(arch_batch=estimator.arch_batch)
    return {**kwargs, "estimator": estimator}


class RandomImages(pl.LightningDataModule):
    def __init__(self, batch_size: int, image_size: int, steps: int) -> None:
        super().__init__()
        n = batch_size * steps
        g = torch.Generator().manual_seed(0)
        self.train = TensorDataset(torch.randn(n, 3, image_size, image_size, generator=g), torch.randint(10, (n,), generator=g))
        self.val = TensorDataset(torch.randn(n, 3, image_size, image_size, generator=g), torch.randint(10, (n,), generator=g))
        self.batch_size = batch_size

    def train_dataloader(self):
        return CombinedLoader(
            {"train": DataLoader(self.train, self.batch_size), "val": DataLoader(self.val, self.batch_size)},
            mode="max_size_cycle",
        )


class StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync()
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync()
        self.times.append(time.perf_counter() - self.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--order", type=int, default=None, help="1 or 2 (default: the method's config)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. 32-true or bf16-mixed")
    parser.add_argument("--memory-format", choices=["auto", "channels_last", "contiguous"], default="auto",
                        help="auto: channels-last on CPU (the module's default)")
    parser.add_argument("--method", default="darts", choices=METHODS)
    parser.add_argument("--partial-channels", type=int, default=None, help="K of PC-DARTS (default: the config's, 4)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the supernet (the CompileSupernet callback); the warm-up steps' time beyond "
                        "as many steady steps is reported as compile_seconds")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)
    kwargs = with_shape(method_arguments(args.method, args.partial_channels), args.channels, args.layers)
    if args.order is not None:
        kwargs = with_order(kwargs, args.order)
    kwargs["channels_last"] = {"auto": None, "channels_last": True, "contiguous": False}[args.memory_format]
    model = DARTSSearch(in_channels=3, num_classes=10, image_size=args.image_size, **kwargs)
    timer = StepTimer()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(prefix="search_step_") as root:  # the search's answer files
        trainer = pl.Trainer(
            accelerator=args.device, devices=1, precision=args.precision, max_steps=args.warmup + args.steps,
            limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[timer, *([CompileSupernet()] if args.compile else [])],
            default_root_dir=root,
        )
        trainer.fit(model, RandomImages(args.batch_size, args.image_size, args.warmup + args.steps))
    timed = timer.times[args.warmup :]
    if args.device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        device_name = torch.cuda.get_device_name()
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        device_name = "cpu"
    print(json.dumps({
        "impl": "darts_lightning", "method": args.method, "order": model.estimator.order, "channels": args.channels,
        "layers": args.layers, "batch_size": args.batch_size, "image_size": args.image_size,
        "device": device_name, "threads": torch.get_num_threads(), "precision": args.precision,
        "channels_last": model._channels_last, "compile": args.compile, "seconds_per_step": statistics.median(timed),
        **({"compile_seconds": round(sum(timer.times[: args.warmup]) - args.warmup * statistics.median(timed), 1)}
           if args.compile else {}),
        "step_times": [round(t, 4) for t in timed], "peak_memory_mb": round(peak_mb, 1),
        **({"baseline_memory_mb": round(baseline_mb, 1)} if args.device == "cpu" else {}),
        **({"partial_channels": model.relaxation.partial_channels} if model.relaxation.partial_channels > 1 else {}),
    }))


if __name__ == "__main__":
    main()
