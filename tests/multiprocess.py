"""A multi-process harness: every distributed scenario runs in one spawned 2-process gloo group.

Spawning processes and importing torch and Lightning costs seconds, so the suite does it once: each rank
(one CPU thread) runs every registered scenario in turn, inside the same process group, and saves what
the scenario returns. Tests then compare the ranks' results.

A scenario is a function ``fn(workdir: Path) -> dict[str, Tensor | float | list]`` registered with
``@scenario("name")``. It typically runs ``Trainer(strategy="ddp", devices=2, accelerator="cpu")``:
with ``LOCAL_RANK`` set, Lightning joins the existing processes instead of launching new ones.
"""

from __future__ import annotations

import datetime
import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE = 2
TIMEOUT_S = 300

SCENARIOS: dict[str, Callable[[Path], dict]] = {}


def scenario(name: str):
    def register(fn: Callable[[Path], dict]) -> Callable[[Path], dict]:
        SCENARIOS[name] = fn
        return fn

    return register


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, names: list[str], workdir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
        RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0",
    )
    torch.set_num_threads(1)
    import tests.scenarios  # noqa: F401 - registers the scenarios in this process

    # A scenario that fails on one rank must not leave the other waiting forever in a collective.
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=120))
    for name in names:
        out = Path(workdir) / name
        out.mkdir(parents=True, exist_ok=True)
        try:
            result = {"ok": True, "value": SCENARIOS[name](out)}
        except Exception:  # noqa: BLE001 - reported to the test, which fails with the traceback
            result = {"ok": False, "error": traceback.format_exc()}
        torch.save(result, out / f"rank{rank}.pt")
        dist.barrier()
    dist.destroy_process_group()


def run_scenarios(workdir: Path, names: list[str] | None = None, world_size: int = WORLD_SIZE) -> dict[str, list[dict]]:
    """Run the scenarios in ``world_size`` spawned processes; returns ``{name: [result of rank 0, rank 1, ...]}``."""
    import tests.scenarios  # noqa: F401 - registers the scenarios

    names = list(SCENARIOS) if names is None else names
    context = mp.start_processes(
        _worker, args=(world_size, _free_port(), names, str(workdir)), nprocs=world_size, join=False, start_method="spawn"
    )
    deadline = TIMEOUT_S
    while not context.join(timeout=0.5):  # polled often: the scenarios' end is not waited for
        deadline -= 0.5
        if deadline <= 0:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f"distributed scenarios did not finish within {TIMEOUT_S} s")
    results: dict[str, list[dict]] = {}
    for name in names:
        results[name] = [torch.load(workdir / name / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
    return results
