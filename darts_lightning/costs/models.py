"""Cost models: what one module costs at one input shape.

A :class:`CostModel` measures a module (a candidate op, a fixed part, or a whole network) for an input of a
given shape at batch 1. Two are exact and need no hardware:

* :class:`Parameters` (``parameters``): the number of parameters;
* :class:`MultiplyAdds` (``multiply_adds``): ``torch.utils.flop_counter.FlopCounterMode`` flops / 2 in one
  forward pass in evaluation mode (convolutions and linear layers; a multiply-add is two flops).

Both are additive over a network's modules, so a network's cost is the sum of its ops' and its fixed parts'
(:mod:`darts_lightning.costs.table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from darts_lightning.utils.components import Component, build_component
from darts_lightning.utils.registry import Registry

__all__ = ["CostModel", "Parameters", "MultiplyAdds", "COST_MODELS", "get_cost_model", "list_cost_models"]


class CostModel(Component):
    """Base class: the cost of a module for one input of shape ``[1, *shape]``."""

    #: the registered name, used in logged keys (``arch/cost/<name>``)
    name: str = "base"
    #: the unit of :meth:`measure`
    unit: str = ""

    def measure(self, module: nn.Module, shape: Sequence[int]) -> float:
        """The cost of ``module`` on one input of shape ``shape`` (channels, height, width)."""
        raise NotImplementedError

    def stored_table(self, space: Any, supernet: Any, size: Mapping[str, Any]) -> Any:
        """A :class:`~darts_lightning.costs.CostTable` this model keeps (a measured latency table read from a
        file) for ``space`` at ``size`` (``in_channels``, ``num_classes``, ``image_size``, ``channels``,
        ``layers``), or ``None``: the table is built by measuring each op (the default)."""
        return None


class Parameters(CostModel):
    """The number of parameters of the module (its input does not matter)."""

    name = "parameters"
    unit = "parameters"

    def measure(self, module: nn.Module, shape: Sequence[int]) -> float:
        return float(sum(p.numel() for p in module.parameters()))


class MultiplyAdds(CostModel):
    """Multiply-adds of one forward pass at batch 1: ``FlopCounterMode`` flops / 2, in evaluation mode (batch
    norm and activations are not counted; convolutions and linear layers are)."""

    name = "multiply_adds"
    unit = "multiply-adds"

    def measure(self, module: nn.Module, shape: Sequence[int]) -> float:
        was_training = module.training
        parameter = next(module.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        dtype = parameter.dtype if parameter is not None else torch.float32
        try:
            module.eval()
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                module(torch.zeros(1, *shape, device=device, dtype=dtype))
        finally:
            module.train(was_training)
        return counter.get_total_flops() / 2


COST_MODELS: Registry[CostModel] = Registry("cost model")
COST_MODELS.register("parameters", Parameters)
COST_MODELS.register("multiply_adds", MultiplyAdds)


def list_cost_models() -> list[str]:
    return COST_MODELS.names()


def get_cost_model(value: str | CostModel | dict) -> CostModel:
    """A cost model by registered name, ``{"class_path", "init_args"}`` or the instance itself."""
    return build_component(value, CostModel, "cost model", registry=COST_MODELS.get)
