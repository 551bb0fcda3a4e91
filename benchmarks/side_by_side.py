"""Several runs side by side on one machine, with and without ``--threads``.

Starts ``--runs`` copies of ``darts-lightning fit --config CONFIG`` at once (each in its own output folder,
with ``--threads N`` when given) and prints the wall time of each and of the whole, beside the wall time of
one run alone (``--alone``). torch gives every process one spinning OpenMP thread per core, so runs that
share the cores starve each other far beyond a fair share unless each is given its share of threads.

    python benchmarks/side_by_side.py --runs 2 --epochs 1 --alone
    python benchmarks/side_by_side.py --runs 2 --epochs 1 --threads 1
    python benchmarks/side_by_side.py --runs 2 --epochs 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command(config: str, epochs: int, root: Path, threads: int | None) -> list[str]:
    args = [sys.executable, "-m", "darts_lightning", "fit", "--config", str(REPO / config),
            "--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(root)]
    return args + (["--threads", str(threads)] if threads is not None else [])


def run_together(commands: list[list[str]]) -> list[float]:
    """Start every command at once; the wall time of each, in seconds."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # torch's own default unless --threads
    start = time.perf_counter()
    processes = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for c in commands]
    times = [0.0] * len(processes)
    pending = set(range(len(processes)))
    while pending:
        for i in list(pending):
            if processes[i].poll() is not None:
                times[i] = time.perf_counter() - start
                pending.discard(i)
        time.sleep(0.05)
    for process in processes:
        if process.returncode != 0:
            raise SystemExit(f"a run failed:\n{process.stderr.read()[-3000:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/darts_digits.yaml")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="--threads of every run (default: not given)")
    parser.add_argument("--alone", action="store_true", help="also time one run alone first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.alone:
            (alone,) = run_together([command(args.config, args.epochs, Path(tmp) / "alone", args.threads)])
            print(f"one run alone: {alone:.1f} s")
        times = run_together(
            [command(args.config, args.epochs, Path(tmp) / f"run{i}", args.threads) for i in range(args.runs)]
        )
    threads = "torch's default threads" if args.threads is None else f"--threads {args.threads}"
    print(f"{args.runs} runs side by side ({threads}): " + ", ".join(f"{t:.1f} s" for t in times)
          + f"; all done after {max(times):.1f} s")


if __name__ == "__main__":
    main()
