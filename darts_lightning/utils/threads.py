"""torch's intra-op threads per process, for runs that share a machine.

torch starts one intra-op thread per core in every process, and its OpenMP threads spin while they wait
for work. Two runs on the same cores (two searches side by side, or the processes of CPU DDP) then starve
each other far beyond a fair share. :class:`TorchThreads` sets the threads of every process of a run:
``--threads N`` on the command line (or ``threads: N`` at the top of a config), or
``Trainer(callbacks=[TorchThreads(N)])`` in Python. Without a number it leaves torch's default, except under
CPU DDP, where it divides the cores among the processes of a node.
"""

from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator

__all__ = ["TorchThreads", "available_cores"]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class TorchThreads(pl.Callback):
    """Set ``torch.set_num_threads`` in every process of the run, as soon as the trainer sets it up.

    Args:
        threads: intra-op threads per process; ``None``: torch's default, or under DDP on CPUs the available
            cores divided by the processes per node (at least one).
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be a positive number of threads per process, got {threads}")
        self.threads = threads

    def threads_for(self, trainer: pl.Trainer) -> int | None:
        if self.threads is not None:
            return self.threads
        if isinstance(trainer.accelerator, CPUAccelerator) and trainer.num_devices > 1:
            return max(1, available_cores() // trainer.num_devices)
        return None

    @staticmethod
    def apply(threads: int) -> None:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        threads = self.threads_for(trainer)
        if threads is not None:
            self.apply(threads)
