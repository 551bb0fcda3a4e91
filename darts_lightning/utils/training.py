"""Small pieces every training module of the package shares: the planned number of epochs, the Trainer
attributes Lightning sets at run time, a batch-size weighted mean without host synchronisation, and the record
of the first non-finite loss."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "planned_epochs", "log_every_n_steps", "trainer_datamodule", "trainer_callbacks", "BatchMean", "NonFiniteLossError",
    "NonFiniteLoss",
]


def planned_epochs(trainer: pl.Trainer, default: int) -> int:
    """The trainer's ``max_epochs``, or ``default`` when it sets none (``None`` or ``-1``): the length the
    schedules (cosine learning rate, temperature, drop-path, remedies) are planned over."""
    return trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else default


# Lightning's connectors set the next three attributes on the Trainer when it is built or fitted; the Trainer
# class does not declare them, so a type checker cannot see them. They are read here, in one place.


def log_every_n_steps(trainer: pl.Trainer) -> int:
    """How often the trainer logs (0: never), set by Lightning's logger connector: the steps at which Lightning
    reads the logged values from the device anyway."""
    return int(trainer.log_every_n_steps)  # type: ignore[attr-defined]


def trainer_datamodule(trainer: pl.Trainer | None) -> pl.LightningDataModule | None:
    """The data module of the trainer's current run, set by Lightning's data connector (``None`` without a
    trainer, or when the run was given loaders instead)."""
    return getattr(trainer, "datamodule", None) if trainer is not None else None


def trainer_callbacks(trainer: pl.Trainer) -> list[Callback]:
    """The trainer's callbacks (the list itself: appending adds one), set by Lightning's callback connector."""
    return trainer.callbacks  # type: ignore[attr-defined]


class BatchMean(Metric):
    """The mean of a per-batch value weighted by the batch size, reduced across ranks when computed.

    What ``torchmetrics.MeanMetric`` computes, without reading anything back from the device in ``update``:
    MeanMetric tests its input for NaN in a Python ``if`` and turns a Python weight into a device tensor,
    two waits for an accelerator per step. A non-finite loss stops the run instead (:class:`NonFiniteLoss`).
    The sums are kept in float32, as MeanMetric keeps them.
    """

    full_state_update = False
    total: Tensor
    weight: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("weight", default=torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: int) -> None:
        """Add a batch's ``value`` (a 0-dim tensor) with its batch size ``weight`` (a host integer)."""
        self.total += value.detach().to(self.total.dtype) * weight
        self.weight += weight

    def compute(self) -> Tensor:
        return self.total / self.weight


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: raised at the next logging step, epoch end, checkpoint or end of
    training, naming the first bad step (:class:`NonFiniteLoss`)."""


class NonFiniteLoss:
    """Remember the first non-finite loss of a run without reading anything back from the device.

    ``if not torch.isfinite(loss)`` at every step would make the host wait for the accelerator at every
    loss. Instead :meth:`record` writes the step, epoch, batch and loss number of the first non-finite value
    into a small tensor on the loss's device (masked fills, queued like every other kernel), and
    :meth:`raise_if_any` reads it where the host reads the device anyway (the steps Lightning logs, the end
    of every epoch, before a checkpoint is saved and at the end of training): the error names the first bad
    step even when it is found later.

    Args:
        losses: the names of the losses, numbered in the record (``"weight (search-train)"``).
        fix: what the error says, after the step (``"the search diverged: lower the learning rates ..."``).
    """

    def __init__(self, losses: tuple[str, ...], fix: str) -> None:
        self.losses, self.fix = losses, fix
        #: ([global step, epoch, batch, loss number], loss value); step -1: none yet
        self._record: tuple[Tensor, Tensor] | None = None

    def reset(self) -> None:
        self._record = None

    def record(self, loss: Tensor, what: str, step: int, epoch: int, batch_idx: int) -> None:
        """Note ``loss`` (named ``what``) of ``step``; only the first non-finite one is kept."""
        loss = loss.detach()
        if self._record is None:
            self._record = (torch.full((4,), -1, dtype=torch.long, device=loss.device),
                            torch.zeros((), dtype=loss.dtype, device=loss.device))
        record, value = self._record
        first = torch.logical_not(torch.isfinite(loss)) & (record[0] < 0)
        for slot, number in enumerate((step, epoch, batch_idx, self.losses.index(what))):
            record[slot].masked_fill_(first, number)
        value.copy_(torch.where(first, loss.to(value.dtype), value))

    def raise_if_any(self) -> None:
        """Raise :class:`NonFiniteLossError` for the first non-finite loss recorded (one read from the device)."""
        if self._record is None:
            return
        record, value = self._record
        step, epoch, batch, what = record.tolist()
        if step < 0:
            return
        raise NonFiniteLossError(
            f"the {self.losses[what]} loss is {float(value)} at global step {step} (epoch {epoch}, batch {batch}); "
            f"{self.fix}"
        )
