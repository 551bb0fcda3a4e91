"""Measured latency: a lookup table of every candidate op of a space at every site it runs, on one device.

FBNet (Wu et al., CVPR 2019, sec. 3.2) and ProxylessNAS (Cai et al., ICLR 2019, sec. 3.3) predict a network's
latency as the sum of its ops' latencies, each measured once at the channels, stride and resolution where it
runs. :class:`MeasuredLatency` measures a module on a device (the CPU with a thread count, or CUDA) at a batch
size: warm-up runs, then the median of timed runs. :func:`profile_space` measures every op of a space at every
site (:meth:`darts_lightning.spaces.SearchSpace.op_sites`) into a :class:`~darts_lightning.costs.CostTable` whose
fixed part is the rest of a measured network (stem, reductions, head and the per-network overhead), and
:func:`save_latency_table` / :func:`load_latency_table` write and read it as JSON with what it was measured on:
the device, threads, batch size, torch version and the space's signature. A table made for another space, size
or device is refused. :func:`validate_latency` measures random networks end to end and compares.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from darts_lightning.costs.models import COST_MODELS, CostModel
from darts_lightning.costs.table import CostTable
from darts_lightning.spaces.base import SearchSpace
from darts_lightning.spaces.mixing import SoftmaxRelaxation
from darts_lightning.spaces.supernet import Supernet
from darts_lightning.utils.files import atomic_write_text
from darts_lightning.utils.validation import check_choice, check_range

__all__ = ["MeasuredLatency", "profile_space", "save_latency_table", "load_latency_table", "validate_latency",
           "kendall_tau", "TABLE_FORMAT"]

#: the format of a latency table file
TABLE_FORMAT = "darts_lightning latency table 1"


class MeasuredLatency(CostModel):
    """Latency in milliseconds, measured: ``warmup`` runs, then the median of ``runs``, at ``batch_size`` on
    ``device`` (``cpu`` with ``threads`` torch threads, the current count when ``None``; or ``cuda``, with
    ``torch.cuda.synchronize`` around every run). ``table``: a file written by :func:`save_latency_table` (the
    ``darts-lightning profile`` command), whose measurements price the space instead of measuring again."""

    name = "latency"
    unit = "ms"

    def __init__(self, table: str | None = None, device: str = "cpu", threads: int | None = None,
                 batch_size: int = 1, runs: int = 20, warmup: int = 5) -> None:
        check_choice("device", device, ("cpu", "cuda"))
        check_range("threads", threads, 1, integer=True, optional=True, hint="None: torch's current thread count")
        check_range("batch_size", batch_size, 1, integer=True)
        check_range("runs", runs, 1, integer=True)
        check_range("warmup", warmup, 0, integer=True)
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device here: profile with --device cpu")
        self.table, self.device, self.threads = table, device, threads
        self.batch_size, self.runs, self.warmup = batch_size, runs, warmup

    def measure(self, module: nn.Module, shape: Sequence[int]) -> float:
        device = torch.device(self.device)
        was_training = module.training
        previous_threads = torch.get_num_threads()
        try:
            if self.threads is not None:
                torch.set_num_threads(self.threads)
            module = module.to(device).eval()
            x = torch.randn(self.batch_size, *shape, device=device)
            synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            times = []
            with torch.no_grad():
                for run in range(self.warmup + self.runs):
                    synchronize()
                    start = time.perf_counter()
                    module(x)
                    synchronize()
                    if run >= self.warmup:
                        times.append(time.perf_counter() - start)
        finally:
            torch.set_num_threads(previous_threads)
            module.train(was_training)
        return 1000.0 * statistics.median(times)

    def describe(self) -> dict[str, Any]:
        """What a table records of the measurement (it must match to be used)."""
        name = torch.cuda.get_device_name() if self.device == "cuda" else _cpu_name()
        return {"device": self.device, "device_name": name, "threads": self.threads or torch.get_num_threads(),
                "batch_size": self.batch_size, "torch": torch.__version__}

    def stored_table(self, space: Any, supernet: Any, size: Mapping[str, Any]) -> CostTable | None:
        if self.table is None:
            return None
        return load_latency_table(self.table, space, supernet, size, expected=self)


COST_MODELS.register("latency", MeasuredLatency)


def _cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _size_record(space: SearchSpace[Any], size: Mapping[str, Any]) -> dict[str, Any]:
    return {"space": space.signature(), **{k: size[k] for k in ("in_channels", "num_classes", "image_size", "channels",
                                                                 "layers")}}


def profile_space(
    space: SearchSpace[Any], model: MeasuredLatency, *, in_channels: int, num_classes: int, image_size: int,
    channels: int | None = None, layers: int | None = None, progress: Callable[[int], Any] | None = None,
) -> CostTable:
    """Measure every op of ``space`` at every site of its network of ``channels``/``layers`` (each distinct op and
    site once), and the network's fixed part; ``progress(total)`` returns a bar with ``update()`` (``None``: quiet)."""
    sites = space.op_sites(in_channels=in_channels, image_size=image_size, channels=channels, layers=layers)
    supernet = space.build_supernet(SoftmaxRelaxation(), in_channels=in_channels, num_classes=num_classes,
                                    image_size=image_size)
    distinct = {(name, site) for cell, rows in supernet.edge_op_names().items() for row, names in enumerate(rows)
                for name in names for site in sites[cell][row]}
    bar = progress(len(distinct) + 1) if progress is not None else None

    class Counting(MeasuredLatency):
        def measure(self, module: nn.Module, shape: Sequence[int]) -> float:
            value = super().measure(module, shape)
            if bar is not None:
                bar.update(1)
            return value

    counting = Counting(None, model.device, model.threads, model.batch_size, model.runs, model.warmup)
    table = CostTable.build(space, counting, in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                            channels=channels, layers=layers, supernet=supernet)
    table.model = model
    return table


def save_latency_table(table: CostTable, path: str | Path, space: SearchSpace[Any], model: MeasuredLatency,
                       size: Mapping[str, Any]) -> Path:
    """Write ``table`` as JSON with what it was measured on and for (read back by :func:`load_latency_table`)."""
    record = {"format": TABLE_FORMAT, "measured_on": model.describe(), "runs": model.runs, "warmup": model.warmup,
              "network": _size_record(space, size), "ops": [[list(names) for names in rows]
                                                             for rows in table.supernet.edge_op_names().values()],
              **table.to_record()}
    return atomic_write_text(Path(path), json.dumps(record, indent=1) + "\n")


def load_latency_table(path: str | Path, space: SearchSpace[Any], supernet: Supernet[Any], size: Mapping[str, Any],
                       expected: MeasuredLatency | None = None) -> CostTable:
    """The table in ``path`` for ``space`` at ``size``; refused with the difference named when it was made for
    another space or network size, or (``expected``) another device, thread count or batch size."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no latency table at {str(path)!r}: write one with 'darts-lightning profile --space "
                                f"{space.name} --table {path}'")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not a latency table ({error})") from error
    if not isinstance(record, dict) or record.get("format") != TABLE_FORMAT:
        raise ValueError(f"{str(path)!r} is not a latency table written by 'darts-lightning profile'")
    wanted = json.loads(json.dumps(_size_record(space, size)))  # as JSON reads it back
    differences = [f"{key}: table {record['network'].get(key)!r}, wanted {value!r}"
                   for key, value in wanted.items() if record["network"].get(key) != value]
    if expected is not None:
        measured_on, wanted_on = record["measured_on"], expected.describe()
        differences += [f"{key}: table {measured_on.get(key)!r}, wanted {wanted_on[key]!r}"
                        for key in ("device", "device_name", "threads", "batch_size") if measured_on.get(key) != wanted_on[key]]
    if differences:
        raise ValueError(f"the latency table {str(path)!r} was made for another setting ({'; '.join(differences)}): "
                         "profile this space, size and device ('darts-lightning profile')")
    return CostTable.from_record(record, expected or MeasuredLatency(), supernet)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b of two paired samples (ties counted as neither concordant nor discordant)."""
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = ((concordant + discordant + ties_a) * (concordant + discordant + ties_b)) ** 0.5
    return (concordant - discordant) / denominator if denominator else 0.0


def validate_latency(
    table: CostTable, space: SearchSpace[Any], model: MeasuredLatency, count: int, *, in_channels: int,
    num_classes: int, image_size: int, channels: int | None = None, layers: int | None = None, seed: int = 0,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Measure ``count`` random networks of ``space`` end to end and compare with the table's predictions:
    Kendall's τ and the mean relative error |predicted − measured| / measured."""
    check_range("count", count, 2, integer=True, hint="networks to measure end to end")
    generator = random.Random(seed)
    bar = progress(count) if progress is not None else None
    predicted, measured = [], []
    for _ in range(count):
        arch = space.sample(generator)
        network = space.build_network(arch, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                                      channels=channels, layers=layers)
        measured.append(model.measure(network, (in_channels, image_size, image_size)))
        predicted.append(table.arch_cost(arch))
        if bar is not None:
            bar.update(1)
    errors = [abs(p - m) / m for p, m in zip(predicted, measured)]
    return {"kendall_tau": kendall_tau(predicted, measured), "mean_relative_error": sum(errors) / len(errors),
            "networks": count, "predicted_ms": predicted, "measured_ms": measured}
