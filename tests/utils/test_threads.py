"""torch's threads per process: ``--threads`` / ``threads:`` and the CPU-DDP default."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning.entry.cli import run_cli
from darts_lightning.utils.threads import TorchThreads, available_cores

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_default_divides_the_cores_among_the_processes_of_cpu_ddp():
    ddp = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False)
    assert TorchThreads().threads_for(ddp) == max(1, available_cores() // 2)
    single = pl.Trainer(accelerator="cpu", devices=1, logger=False)
    assert TorchThreads().threads_for(single) is None  # torch's own default
    assert TorchThreads(3).threads_for(ddp) == 3


def test_setup_sets_the_threads_of_the_process(restore_threads):
    torch.set_num_threads(2)
    TorchThreads(1).setup(pl.Trainer(accelerator="cpu", devices=1, logger=False), pl.LightningModule(), "fit")
    assert torch.get_num_threads() == 1


def test_threads_from_the_command_line_and_the_config(tmp_path, restore_threads):
    torch.set_num_threads(2)
    args = ["validate", "--config", str(REPO / "configs" / "darts_digits.yaml"), "--model.space.channels", "4",
            "--model.space.layers", "2", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path)]
    cli = run_cli([*args, "--threads", "1"])
    assert torch.get_num_threads() == 1
    assert any(isinstance(c, TorchThreads) and c.threads == 1 for c in cli.trainer.callbacks)
    config = tmp_path / "threads.yaml"
    config.write_text("threads: 1\n")
    torch.set_num_threads(2)
    run_cli([*args, "--config", str(config)])
    assert torch.get_num_threads() == 1


def test_a_thread_count_below_one_is_refused():
    with pytest.raises(ValueError, match="threads must be a positive number of threads per process, got 0"):
        TorchThreads(0)
