"""The pieces the training modules share: the planned epochs, the Trainer attributes Lightning sets at run time,
the batch-weighted mean and the record of the first non-finite loss (neither of the last two reads anything back
from the device while a step runs)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning.data import SearchDataModule
from darts_lightning.utils.training import (
    BatchMean,
    NonFiniteLoss,
    NonFiniteLossError,
    log_every_n_steps,
    planned_epochs,
    trainer_callbacks,
    trainer_datamodule,
)


@pytest.fixture
def no_host_reads(monkeypatch):
    """Reading a tensor's value on the host (``bool``, ``float``, ``int``, ``item``, ``tolist``) fails the test:
    on an accelerator each is a wait for the device."""

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was read on the host")

    for name in ("__bool__", "__float__", "__int__", "__index__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


# --------------------------------------------------------------------------- planned_epochs


def test_planned_epochs_is_the_trainers_max_epochs():
    trainer = pl.Trainer(accelerator="cpu", max_epochs=7, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    assert planned_epochs(trainer, 600) == 7


@pytest.mark.parametrize("max_epochs", [None, -1, 0])
def test_planned_epochs_falls_back_to_the_default_without_a_max_epochs(max_epochs):
    assert planned_epochs(SimpleNamespace(max_epochs=max_epochs), 600) == 600


def test_a_run_limited_by_steps_plans_the_default_epochs():
    """Lightning sets ``max_epochs`` to -1 when only ``max_steps`` bounds the run."""
    trainer = pl.Trainer(accelerator="cpu", max_steps=10, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    assert planned_epochs(trainer, 50) == 50


# --------------------------------------------------------------------------- Trainer attributes set at run time


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kwargs)


def test_log_every_n_steps_is_the_trainers_setting():
    assert log_every_n_steps(_trainer(log_every_n_steps=7)) == 7
    assert log_every_n_steps(_trainer()) == 50  # Lightning's default


def test_trainer_callbacks_is_the_trainers_own_list():
    trainer = _trainer()
    callback = pl.Callback()
    trainer_callbacks(trainer).append(callback)
    assert trainer.callbacks[-1] is callback


def test_trainer_datamodule_is_the_runs_data_module():
    trainer = _trainer(max_steps=1, limit_val_batches=0)
    assert trainer_datamodule(None) is None
    assert trainer_datamodule(trainer) is None  # nothing fitted yet
    data = SearchDataModule("digits", batch_size=64)
    trainer.fit(_OneStep(), datamodule=data)
    assert trainer_datamodule(trainer) is data


class _OneStep(pl.LightningModule):
    """The smallest module that fits: one parameter, one step."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return self.weight.square()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


# --------------------------------------------------------------------------- BatchMean


def test_batch_mean_weights_every_batch_by_its_size():
    mean = BatchMean()
    for value, size in ((1.0, 2), (4.0, 1), (-2.0, 3)):
        mean.update(torch.tensor(value), size)
    assert float(mean.compute()) == pytest.approx((1.0 * 2 + 4.0 * 1 - 2.0 * 3) / 6)
    mean.reset()
    mean.update(torch.tensor(3.0), 5)
    assert float(mean.compute()) == pytest.approx(3.0)


def test_batch_mean_sums_in_float32_whatever_the_loss_dtype():
    mean = BatchMean()
    mean.update(torch.tensor(0.5, dtype=torch.float64), 2)
    mean.update(torch.tensor(1.5, dtype=torch.bfloat16), 2)
    assert mean.total.dtype == torch.float32 and mean.weight.dtype == torch.float32
    assert float(mean.compute()) == pytest.approx(1.0)


def test_batch_mean_update_reads_nothing_back(no_host_reads):
    mean = BatchMean()
    mean.update(torch.tensor(float("nan")), 4)
    mean.update(torch.tensor(2.0), 4)


# --------------------------------------------------------------------------- NonFiniteLoss

LOSSES = ("weight (search-train)", "architecture (search-val)")
FIX = "lower the learning rates or check the data"


def test_finite_losses_raise_nothing():
    record = NonFiniteLoss(LOSSES, FIX)
    record.raise_if_any()  # nothing recorded yet
    for step in range(3):
        record.record(torch.tensor(1.0 / (step + 1)), LOSSES[step % 2], step, 0, step)
    record.raise_if_any()


def test_the_error_names_the_first_non_finite_step():
    record = NonFiniteLoss(LOSSES, FIX)
    record.record(torch.tensor(0.5), LOSSES[0], 0, 0, 0)
    record.record(torch.tensor(float("inf")), LOSSES[1], 5, 1, 2)
    record.record(torch.tensor(float("nan")), LOSSES[0], 6, 1, 3)
    record.record(torch.tensor(0.25), LOSSES[0], 7, 1, 4)
    with pytest.raises(NonFiniteLossError) as error:
        record.raise_if_any()
    assert str(error.value) == (
        f"the architecture (search-val) loss is inf at global step 5 (epoch 1, batch 2); {FIX}"
    )
    assert isinstance(error.value, FloatingPointError)


def test_a_reset_record_raises_nothing():
    record = NonFiniteLoss(LOSSES, FIX)
    record.record(torch.tensor(float("nan")), LOSSES[0], 3, 0, 3)
    record.reset()
    record.record(torch.tensor(1.0), LOSSES[0], 4, 0, 4)
    record.raise_if_any()


def test_recording_reads_nothing_back(no_host_reads):
    record = NonFiniteLoss(LOSSES, FIX)
    record.record(torch.tensor(1.0), LOSSES[0], 0, 0, 0)
    record.record(torch.tensor(float("nan"), dtype=torch.float64), LOSSES[1], 1, 0, 1)


def test_a_float64_loss_is_shown_as_recorded():
    """A float64 loss recorded first keeps the record in float64; the value shown is the bad one."""
    record = NonFiniteLoss(LOSSES, FIX)
    record.record(torch.tensor(2.0, dtype=torch.float64), LOSSES[0], 0, 0, 0)
    record.record(torch.tensor(float("-inf"), dtype=torch.float64), LOSSES[0], 1, 0, 1)
    with pytest.raises(NonFiniteLossError, match=r"weight \(search-train\) loss is -inf at global step 1 \(epoch 0, batch 1\)"):
        record.raise_if_any()
