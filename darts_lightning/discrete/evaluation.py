"""What an evaluator is: the base of every way a discrete searcher scores an architecture.

An :class:`Evaluator` turns an architecture of its space into an :class:`Evaluation` (the reward the
searcher maximises, its cost, other metrics). A searcher never knows which evaluator it is told by, and an
evaluator never knows which space it scores: it asks the space (:class:`~darts_lightning.spaces.SearchSpace`)
for whatever it needs (the text form, the supernet's path, the network).

:func:`classification_scores` is the one accuracy loop of the evaluators that run networks (the
weight-sharing and the scratch evaluator): accuracy and mean cross-entropy over fixed batches, read back
from the device once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from darts_lightning.spaces import SearchSpace, get_space
from darts_lightning.spaces.base import Arch

__all__ = ["DataShape", "Evaluation", "Evaluator", "Scores", "classification_scores"]


@dataclass
class Evaluation:
    """What an evaluation returns: the reward the searcher maximises, its cost, and other metrics."""

    reward: float
    cost: float = 1.0
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DataShape:
    """The data a network is built for: image channels, classes and (square) image size. A search prices its
    architectures' networks at this shape (:mod:`darts_lightning.discrete.constraints`)."""

    in_channels: int
    num_classes: int
    image_size: int


class Evaluator(Generic[Arch]):
    """Base class: :meth:`evaluate` scores architectures of ``space`` (an instance, a registered name or
    ``{"class_path", "init_args"}``)."""

    def __init__(self, space: SearchSpace[Arch] | str | Mapping[str, Any]) -> None:
        self.space: SearchSpace[Arch] = get_space(space)

    def evaluate(self, arch: Arch) -> Evaluation:
        raise NotImplementedError

    def with_epochs(self, epochs: int) -> Evaluator[Arch]:
        """This evaluator training for ``epochs`` epochs: the fidelity that successive halving varies
        (:mod:`darts_lightning.discrete.fidelity`). An evaluator that trains overrides it; the others have no
        epochs to vary."""
        raise ValueError(
            f"the {type(self).__name__} does not train, so it has no epochs to vary: successive halving (fidelity) "
            "needs an evaluator that trains, such as scratch"
        )

    def data_shape(self) -> DataShape | None:
        """The shape of the data the scored networks see, so that a search prices the networks it scores;
        ``None`` when the evaluator does not know it. By default read from the evaluator's data module
        (``self.data`` with ``in_channels``, ``num_classes`` and ``image_size``, as the weight-sharing and the
        scratch evaluators hold one)."""
        data = getattr(self, "data", None)
        shape: dict[str, int] = {}
        for name in ("in_channels", "num_classes", "image_size"):
            value = getattr(data, name, None)
            if not isinstance(value, int):
                return None
            shape[name] = value
        return DataShape(**shape)


@dataclass(frozen=True)
class Scores:
    """Accuracy and mean cross-entropy of a classifier over some batches."""

    accuracy: float
    loss: float
    images: int


@torch.no_grad()
def classification_scores(
    forward: Callable[[Tensor], Tensor],
    batches: Iterable[tuple[Tensor, Tensor]],
    like: Tensor,
    metric: Metric | None = None,
) -> Scores:
    """Score ``forward`` (images to logits) on ``batches`` of ``(images, labels)``.

    The images are moved to ``like``'s device and dtype (a parameter of the network: the batches follow the
    network), the labels to its device. The counts are summed on the device and read back once, after the
    last batch. ``metric`` (a torchmetrics metric, reset first) is updated with every batch's logits and
    labels on the CPU.
    """
    device, dtype = like.device, like.dtype
    correct = torch.zeros((), dtype=torch.long, device=device)
    # Summed in the network's dtype, at least float32 (a device may have no float64).
    loss = torch.zeros((), dtype=torch.promote_types(dtype, torch.float32), device=device)
    images = 0
    if metric is not None:
        metric.reset()
    for x, y in batches:
        x, y = x.to(device, dtype), y.to(device)
        logits = forward(x)
        correct += (logits.argmax(-1) == y).sum()
        loss += F.cross_entropy(logits, y, reduction="sum").to(loss.dtype)
        images += len(y)
        if metric is not None:
            metric.update(logits.cpu(), y.cpu())
    if images == 0:
        raise ValueError("no batches to score: the split is empty or no batch was requested")
    return Scores(accuracy=int(correct) / images, loss=float(loss) / images, images=images)
