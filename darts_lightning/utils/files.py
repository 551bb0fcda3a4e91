"""Atomic writes: a file under its final name is either its previous version or the complete new one.

A write that fails midway (a full disk, a quota, a killed process) must not leave a truncated file under
the final name: a truncated ``epoch=1-step=24.ckpt`` beside a good ``last.ckpt`` looks like the newer
checkpoint and does not load. Every writer here writes into a temporary file in the same folder
(``.<name>.tmp-<random>``), flushes it to the disk (``os.fsync``) and renames it onto the final name with
``os.replace``, which is atomic within one file system. On any failure the temporary file is removed and
the error re-raised; a full disk (``ENOSPC``, or ``EDQUOT`` for a quota) is re-raised as
``OSError(ENOSPC, "no space left on device", <final path>)`` so that the message names the file the run
was writing, not its temporary name.

Lightning's own ``TorchCheckpointIO`` is not enough: it writes the checkpoint into a temporary file of the
system's temp folder and moves it to the final name, and when the run's folder lies on another file system
that move is a copy into the final name, which a full disk truncates. :class:`AtomicCheckpointIO` replaces
it (see :func:`use_atomic_checkpoints`).
"""

from __future__ import annotations

import errno
import io
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

__all__ = [
    "AtomicCheckpointIO",
    "atomic_open",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "use_atomic_checkpoints",
]

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def _temporary_path(path: Path) -> Path:
    """A fresh hidden name beside ``path`` for its temporary file: same folder, hence same file system,
    so that ``os.replace`` renames it instead of copying it."""
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; when the block ends without an error, flush it to
    the disk and rename it onto ``path``. On any error the temporary file is removed, ``path`` keeps its
    previous content (or stays absent), and the error is re-raised (a full disk as ENOSPC naming ``path``).
    The parent folders are created. ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 unless ``encoding``)."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open writes a whole new file: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    temporary = _temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # "x": never write into an existing file; the permissions follow the umask, as for a plain open.
        with open(temporary, mode.replace("w", "x"), encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            raise OSError(errno.ENOSPC, "no space left on device", str(path)) from error
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`). Returns ``path``."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`). Returns ``path``."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)``, atomically. The object is serialised in memory first (as Lightning's own
    checkpoint writer does): streamed into a file, a failed write surfaces as torch's zip-writer
    ``RuntimeError`` ("unexpected pos") instead of the ``OSError`` that names the full disk. Returns ``path``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getbuffer())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` whose checkpoints on the local file system are written atomically
    (:func:`atomic_torch_save`): ModelCheckpoint's ``epoch=…ckpt`` and ``last.ckpt``, and every other
    ``trainer.save_checkpoint``. Loading, removing and remote (fsspec URL) saves are the parent's."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        fs, local_path = url_to_fs(str(path))
        if storage_options is not None or not isinstance(fs, LocalFileSystem):
            # The parent rejects storage_options with its own message, and owns remote file systems.
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        atomic_torch_save(checkpoint, local_path)


def use_atomic_checkpoints(trainer: Any) -> None:
    """Make ``trainer`` write its checkpoints atomically: its strategy's checkpoint plugin, when it is
    exactly Lightning's default ``TorchCheckpointIO``, becomes an :class:`AtomicCheckpointIO`. A plugin the
    user chose (a subclass, an async or a sharded one) is left alone. Called from the modules' ``setup``
    hook, which runs in every process (also under ``ddp_spawn``) before the first checkpoint."""
    strategy = getattr(trainer, "strategy", None)
    if strategy is not None and type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
