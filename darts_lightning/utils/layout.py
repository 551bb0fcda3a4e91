"""Memory layout of a module's ``network``: channels-last where it pays.

On a CPU the oneDNN convolutions of these networks run about twice as fast in channels-last layout
(measured with ``benchmarks/search_step.py``), so ``channels_last=None`` picks it there and keeps the
contiguous layout elsewhere; ``True``/``False`` force a layout.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

__all__ = ["ChannelsLastMixin"]


class _LayoutModule(Protocol):
    """What :class:`ChannelsLastMixin` needs of the LightningModule it is mixed into."""

    _channels_last: bool

    @property
    def hparams(self) -> MutableMapping[Any, Any]: ...

    @property
    def trainer(self) -> pl.Trainer: ...

    @property
    def network(self) -> nn.Module: ...


class ChannelsLastMixin:
    """For LightningModules with a ``network`` attribute and a ``channels_last`` hyperparameter."""

    _channels_last: bool = False

    def setup(self: _LayoutModule, stage: str) -> None:
        choice = self.hparams["channels_last"]
        self._channels_last = self.trainer.strategy.root_device.type == "cpu" if choice is None else bool(choice)
        self.network.to(memory_format=torch.channels_last if self._channels_last else torch.contiguous_format)

    def _layout(self, x: Tensor) -> Tensor:
        """``x`` in the network's layout."""
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x
