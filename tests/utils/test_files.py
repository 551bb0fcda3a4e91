"""Atomic writes: a write that fails midway (a full disk) leaves the previous file, or none, never a
truncated one under the final name; the checkpoints of a fit and of the console script included."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from darts_lightning import DiscreteSearch, Genotype, GenotypeClassifier, SearchDataModule
from darts_lightning.utils.files import (
    AtomicCheckpointIO,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    use_atomic_checkpoints,
)
from tests.searches import tiny_search

REPOSITORY = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- a disk that fills up


class _Disk:
    """What is left on the simulated disk: ``room`` bytes once it started filling (``None``: not yet)."""

    def __init__(self, root: Path, room: int, after_checkpoints: int | None) -> None:
        self.root = root
        self.room_when_full = room
        self.room: int | None = room if after_checkpoints is None else None
        self.checkpoints_left = after_checkpoints

    def holds(self, path: Any) -> bool:
        return os.path.abspath(os.fsdecode(path)).startswith(str(self.root) + os.sep)

    def opened(self, path: Any) -> None:
        """A checkpoint file (temporary or final name) opened for writing after the last complete one
        starts the filling."""
        if self.room is None and ".ckpt" in os.path.basename(os.fsdecode(path)):
            if self.checkpoints_left == 0:
                self.room = self.room_when_full
            else:
                self.checkpoints_left -= 1


class _FillingFile:
    """A file on the simulated disk: a write that does not fit writes what fits, then fails with ENOSPC
    (the kernel's short write, then the error)."""

    def __init__(self, handle: Any, disk: _Disk) -> None:
        self._handle = handle
        self._disk = disk

    def write(self, data: Any) -> int:
        if self._disk.room is None:
            return self._handle.write(data)
        size = len(data)
        fits = min(size, self._disk.room)
        if fits:
            self._handle.write(data[:fits])
            self._disk.room -= fits
        if fits < size:
            self._handle.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return size

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.close()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._handle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


@contextmanager
def disk_filling_up(root: str | os.PathLike[str], room: int = 4096, after_checkpoints: int | None = None) -> Iterator[None]:
    """Make the folder ``root`` behave as its own file system that becomes full: after
    ``after_checkpoints`` complete checkpoint files (any file whose name contains ``.ckpt``; ``None``:
    from the start) only ``room`` more bytes fit, then every write into ``root`` fails with ENOSPC after
    writing what fits. A rename between ``root`` and another folder fails with EXDEV, as between two file
    systems, so a file moved in is copied in (shutil's sendfile copy is turned off, so that the copy's
    writes pass through here too). Usable outside pytest (the console-script test installs it in a
    subprocess)."""
    disk = _Disk(Path(os.path.abspath(root)), room, after_checkpoints)
    real_open, real_rename, real_replace = builtins.open, os.rename, os.replace
    real_io_open, real_sendfile_flag = io.open, shutil._USE_CP_SENDFILE

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        if not isinstance(file, (str, bytes, os.PathLike)) or not set(mode) & set("wax+") or not disk.holds(file):
            return handle
        disk.opened(file)
        return _FillingFile(handle, disk)

    def renamer(real: Callable[..., None]) -> Callable[..., None]:
        def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if disk.holds(src) != disk.holds(dst):
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, None, dst)
            real(src, dst, *args, **kwargs)

        return rename

    builtins.open = io.open = open_
    os.rename, os.replace = renamer(real_rename), renamer(real_replace)
    shutil._USE_CP_SENDFILE = False
    try:
        yield
    finally:
        builtins.open, io.open = real_open, real_io_open
        os.rename, os.replace = real_rename, real_replace
        shutil._USE_CP_SENDFILE = real_sendfile_flag


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _assert_every_result_file_is_whole(root: Path) -> None:
    """Every checkpoint loads and every genotype file parses; no temporary file is left behind."""
    assert not [p for p in root.rglob(".*.tmp-*")], "a temporary file was left behind"
    checkpoints = sorted(root.rglob("*.ckpt"))
    assert checkpoints, "the first checkpoints were written before the disk filled up"
    for path in checkpoints:
        torch.load(path, weights_only=True)
    for path in [*root.rglob("genotype.json"), *root.rglob("genotype_history.json")]:
        json.loads(path.read_text())


# ----------------------------------------------------------------------------- the writers


_GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1)] * 4, normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("dil_conv_5x5", 1)] * 4, reduce_concat=[2, 3, 4, 5],
)


def _save_png(path: Path) -> None:
    from darts_lightning.spaces.drawing import _new_figure, save_png

    save_png(_new_figure(4.0, 4.0, dpi=100), path)


WRITERS: dict[str, Callable[[Path], Any]] = {
    "text": lambda path: atomic_write_text(path, "x" * 10_000),
    "bytes": lambda path: atomic_write_bytes(path, b"x" * 10_000),
    "torch": lambda path: atomic_torch_save({"w": torch.zeros(5_000)}, path),
    "genotype": lambda path: _GENOTYPE.save(path),
    "png": _save_png,
}


@pytest.mark.parametrize("previous", [b"the previous version\n", None], ids=["overwrite", "new"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_write_that_fails_midway_keeps_the_previous_file_and_names_the_final_one(tmp_path, writer, previous):
    final = tmp_path / "disk" / "result.out"
    final.parent.mkdir()
    if previous is not None:
        final.write_bytes(previous)
    with disk_filling_up(final.parent, room=100), pytest.raises(OSError) as raised:
        WRITERS[writer](final)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.strerror == "no space left on device"
    assert raised.value.filename == str(final)
    assert _files(final.parent) == ({"result.out"} if previous is not None else set())
    if previous is not None:
        assert final.read_bytes() == previous


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_write_with_room_replaces_the_file(tmp_path, writer):
    final = tmp_path / "result.out"
    final.write_bytes(b"old")
    WRITERS[writer](final)
    assert final.read_bytes() != b"old" and _files(tmp_path) == {"result.out"}


def test_an_error_other_than_a_full_disk_is_raised_unchanged(tmp_path):
    final = tmp_path / "state.pt"
    final.write_bytes(b"old")
    with pytest.raises(AttributeError, match="local object"):
        atomic_torch_save({"f": lambda: 0}, final)  # a lambda does not pickle
    assert final.read_bytes() == b"old" and _files(tmp_path) == {"state.pt"}


# ----------------------------------------------------------------------------- checkpoints


class _UserCheckpointIO(TorchCheckpointIO):
    pass


def _attached(module: pl.LightningModule, **trainer_kwargs: Any) -> pl.Trainer:
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, **trainer_kwargs)
    module.trainer = trainer
    return trainer


MODULES: dict[str, Callable[[], pl.LightningModule]] = {
    "DARTSSearch": lambda: tiny_search(layers=2),
    "GenotypeClassifier": lambda: GenotypeClassifier(genotype=_GENOTYPE, in_channels=1, image_size=8, channels=4, layers=2),
    "DiscreteSearch": lambda: DiscreteSearch(budget=2),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_setup_makes_the_default_checkpoint_plugin_atomic_and_leaves_a_user_plugin_alone(name):
    module = MODULES[name]()
    trainer = _attached(module)
    module.setup("fit")
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO

    chosen = _UserCheckpointIO()
    trainer = _attached(module, plugins=[chosen])
    use_atomic_checkpoints(trainer)
    module.setup("fit")
    assert trainer.strategy.checkpoint_io is chosen


def test_a_search_whose_disk_fills_up_while_checkpointing_leaves_only_loadable_files(tmp_path):
    """Epoch 0 writes ``epoch=0-…ckpt`` and ``last.ckpt``; the disk fills up while epoch 1's checkpoint is
    written (4 KB of it fit)."""
    root = tmp_path / "run"
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, limit_train_batches=2, limit_val_batches=1, default_root_dir=str(root),
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
        callbacks=[ModelCheckpoint(save_last=True, every_n_epochs=1)],
    )
    with disk_filling_up(root, after_checkpoints=2), pytest.raises(OSError) as raised:
        trainer.fit(tiny_search(layers=2), SearchDataModule("digits", batch_size=16))
    assert raised.value.errno == errno.ENOSPC
    assert list(root.rglob("genotype_history.json"))
    _assert_every_result_file_is_whole(root)
    assert {p.name for p in root.rglob("*.ckpt")} == {"epoch=0-step=2.ckpt", "last.ckpt"}
    assert raised.value.filename == str(Path(trainer.log_dir) / "checkpoints" / "epoch=1-step=4.ckpt")


def test_a_discrete_search_whose_disk_fills_up_keeps_its_last_whole_search_state(tmp_path):
    root = tmp_path / "run"
    trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, default_root_dir=str(root), logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with disk_filling_up(root, after_checkpoints=2), pytest.raises(OSError) as raised:
        trainer.fit(DiscreteSearch(budget=5, seed=0, checkpoint_every=1))
    assert raised.value.errno == errno.ENOSPC
    _assert_every_result_file_is_whole(root)
    state = torch.load(root / "checkpoints" / "search_state.ckpt", weights_only=True)
    assert len(state["discrete_search"]["history"]) == 2
    assert raised.value.filename == str(root / "checkpoints" / "search_state.ckpt")


_CONSOLE = """
import sys
from tests.utils.test_files import disk_filling_up
with disk_filling_up(sys.argv[1], after_checkpoints=2):
    from darts_lightning.entry.cli import main
    sys.exit(main(sys.argv[2:]))
"""


def test_the_console_script_on_a_disk_that_fills_up_reports_it_and_leaves_loadable_files(tmp_path):
    root = tmp_path / "run"
    args = [
        "fit", "--config", "configs/darts_digits.yaml", "--model.init_args.space.init_args.channels", "4",
        "--model.init_args.space.init_args.layers", "2", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
    ]
    done = subprocess.run(
        [sys.executable, "-c", _CONSOLE, str(root), *args], cwd=REPOSITORY, capture_output=True, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("darts-lightning: error: no space left on device: "), done.stderr
    assert errors[0].endswith("epoch=1-step=4.ckpt; free some space or write elsewhere (--trainer.default_root_dir) "
                              "(--verbose shows the traceback)"), errors[0]
    _assert_every_result_file_is_whole(root)
    assert {p.name for p in root.rglob("*.ckpt")} == {"epoch=0-step=2.ckpt", "last.ckpt"}
