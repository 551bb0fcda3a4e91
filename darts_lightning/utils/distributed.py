"""Explicit synchronisation for multi-process search.

DDP averages the weight gradients of ``loss.backward()``, but not gradients taken with
``torch.autograd.grad`` (the architecture step), and it keeps batch-norm running statistics per rank.
These helpers do both explicitly, with one all-reduce over a flat buffer each.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["is_distributed", "all_reduce_mean_", "broadcast_", "sync_batchnorm_statistics_", "require_find_unused_parameters"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def all_reduce_mean_(tensors: Sequence[Tensor]) -> None:
    """Average ``tensors`` in place across ranks with a single all-reduce (no-op in one process).

    The buffer has the widest dtype of ``tensors``, at least float32: bf16 values are summed in float32,
    float64 ones (a float64 search) keep their precision.
    """
    if not tensors or not is_distributed():
        return
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def sync_batchnorm_statistics_(module: nn.Module) -> None:
    """Average every batch norm's running mean and variance across ranks."""
    buffers: list[Tensor] = []
    for m in module.modules():
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or not m.track_running_stats:
            continue
        if m.running_mean is not None and m.running_var is not None:
            buffers += [m.running_mean, m.running_var]
    all_reduce_mean_(buffers)


@torch.no_grad()
def broadcast_(tensors: Sequence[Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values (no-op in one process)."""
    if not is_distributed():
        return
    for t in tensors:
        dist.broadcast(t.data, src=src)


def require_find_unused_parameters(trainer: pl.Trainer, why: str) -> None:
    """Refuse a multi-process DDP run without ``find_unused_parameters``, saying ``why`` it is needed and
    how to turn it on: a method that leaves parameters without gradients in a step would otherwise
    fail at the next step inside DDP."""
    from pytorch_lightning.strategies import DDPStrategy

    strategy = trainer.strategy
    if (
        isinstance(strategy, DDPStrategy)
        and trainer.world_size > 1
        and not strategy._ddp_kwargs.get("find_unused_parameters", False)
    ):
        raise ValueError(
            f"{why}, which DDP accepts only with find_unused_parameters=True: use "
            "strategy='ddp_find_unused_parameters_true' (--trainer.strategy ddp_find_unused_parameters_true) "
            "or DDPStrategy(find_unused_parameters=True)"
        )
