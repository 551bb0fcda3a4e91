"""Time one search step of darts_lightning on random CIFAR-shaped data.

    python benchmarks/search_step.py --channels 16 --layers 8 --batch-size 64 --image-size 32 --order 1
    python benchmarks/search_step.py --method pcdarts   # also gdas, snas, drnas
    python benchmarks/search_step.py --compile          # the compiled supernet (compile: true)

``--method`` picks the member of the DARTS family and reads its settings from
``configs/<method>_cifar10.yaml`` (the model's ``init_args``: relaxation, its arguments, edge
normalisation, the released code's options): ``darts``, ``pcdarts`` (partial channels, K =
``--partial-channels`` if given, and edge normalisation), ``gdas``, ``snas``, ``drnas``, ``darts_minus``,
``beta_darts``. The supernet's shape, batch and image size come from the command line and are the same
for every method, so the figures compare the methods' cost at one configuration; α warm-up is switched
off so that every timed step includes the architecture step.

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
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

from darts_lightning import DARTSSearch


REPO = Path(__file__).resolve().parents[1]
METHODS = ("darts", "pcdarts", "gdas", "snas", "drnas", "darts_minus", "beta_darts")
#: set by the command line (the shape) or by the benchmark itself (no α warm-up), not by the config
NOT_FROM_CONFIG = {"in_channels", "num_classes", "image_size", "channels", "layers", "arch_warmup_epochs"}


def method_arguments(method: str, partial_channels: int | None = None) -> dict:
    """The model arguments of ``configs/<method>_cifar10.yaml`` except the shape and the α warm-up."""
    config = yaml.safe_load((REPO / "configs" / f"{method}_cifar10.yaml").read_text())
    kwargs = {k: v for k, v in config["model"]["init_args"].items() if k not in NOT_FROM_CONFIG}
    if partial_channels is not None:
        kwargs["relaxation_args"] = {**kwargs.get("relaxation_args", {}), "partial_channels": partial_channels}
    return kwargs


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
                        help="compile the supernet (compile: true); the warm-up steps' time is reported as compile_seconds")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)
    kwargs = method_arguments(args.method, args.partial_channels)
    if args.order is not None:
        kwargs["order"] = args.order
    kwargs["channels_last"] = {"auto": None, "channels_last": True, "contiguous": False}[args.memory_format]
    kwargs["compile"] = args.compile
    model = DARTSSearch(3, 10, args.image_size, channels=args.channels, layers=args.layers, **kwargs)
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator=args.device, devices=1, precision=args.precision, max_steps=args.warmup + args.steps,
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer], default_root_dir=tempfile.mkdtemp(prefix="search_step_"),
    )
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainer.fit(model, RandomImages(args.batch_size, args.image_size, args.warmup + args.steps))
    timed = timer.times[args.warmup :]
    if args.device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        device_name = torch.cuda.get_device_name()
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        device_name = "cpu"
    print(json.dumps({
        "impl": "darts_lightning", "method": args.method, "order": model.hparams.order, "channels": args.channels,
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
