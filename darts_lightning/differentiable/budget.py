"""Differentiable search under a hardware budget: the expected cost of the architecture in the architecture loss.

:class:`CostBudget` prices the space's network with a :class:`~darts_lightning.costs.CostTable` (parameters or
multiply-adds at a chosen network size) and adds a term on the *expected* cost to the architecture loss. The
expected cost is the table's sum over the expected path of the relaxation's expected mixing weights
(:meth:`~darts_lightning.spaces.mixing.Relaxation.expected_weights`: softmax(α) for DARTS, the Dirichlet mean
for DrNAS, and for GDAS and SNAS the probabilities of their Gumbel samples, whose expectation this is; the DARTS
space weights each edge by the chance that its node keeps it, by β under edge normalisation:
:meth:`~darts_lightning.spaces.supernet.Supernet.expected_path`). It is differentiable in α and β, so every
relaxation and both gradient orders search under it unchanged.

Two forms of the term, with B the budget and E[c] the expected cost:

* ``hinge`` (a target): λ · max(0, E[c] / B − 1). No pressure below the budget; above it, a pull proportional
  to the relative excess.
* ``target``: λ · |E[c] / B − 1|, a pull towards the budget from both sides, for a search that should spend
  its budget (in the spirit of MnasNet's soft latency constraint, Tan et al., CVPR 2019, sec. 3, which keeps
  the searched models near the target rather than only under it);
* ``linear`` (ProxylessNAS, Cai et al., ICLR 2019, eq. 4: the loss plus λ₂ · E[latency]): λ · E[c] / B, a
  constant pressure towards cheaper ops, B only scaling it.

FBNet's multiplicative form, CE · α · log(E[c])^β (Wu et al., CVPR 2019, eq. 2), multiplies the validation loss
and is not offered: the architecture loss of this package is the validation loss plus additive terms, which
both estimators differentiate as such.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from darts_lightning.costs import CostModel, CostTable, get_cost_model
from darts_lightning.differentiable.remedies import Remedy, register_remedy
from darts_lightning.spaces.base import SearchSpace
from darts_lightning.spaces.supernet import Supernet
from darts_lightning.utils.validation import check_choice, check_range

__all__ = ["CostBudget", "BUDGET_FORMS"]

BUDGET_FORMS = ("hinge", "target", "linear")


@register_remedy("cost_budget")
class CostBudget(Remedy):
    """Search under a budget of ``cost`` (``multiply_adds`` or ``parameters``).

    Args:
        budget: B, in the cost's unit, for the network of ``channels`` and ``layers``.
        cost: the cost model (a registered name or a :class:`~darts_lightning.costs.CostModel`).
        form: ``hinge``, ``target`` or ``linear`` (see the module docstring).
        weight: λ.
        sharpness: s ≥ 1: the expected cost is taken under every edge's mixing weights raised to the power s and
            renormalised (w_o^s / Σ w^s), which moves it from the mean cost of the ops towards the cost of the
            strongest op, the one the derived answer keeps (1: the plain expectation).
        channels, layers: the size of the network the cost is counted on, as the space reads them (``None``:
            the space's evaluation size); the search's own size prices the cells the search trains.

    Logged at every epoch's end: ``arch/cost/<cost>/expected`` (E[c]), ``arch/cost/<cost>/derived`` (the cost of
    the derived answer's network) and ``arch/cost/<cost>/budget``.
    """

    def __init__(self, budget: float, cost: str | CostModel = "multiply_adds", form: str = "hinge",
                 weight: float = 1.0, sharpness: float = 1.0, channels: int | None = None,
                 layers: int | None = None) -> None:
        check_range("budget", budget, 0, low_open=True, hint="in the cost's unit, for the network of channels and layers")
        check_choice("form", form, BUDGET_FORMS)
        check_range("weight", weight, 0)
        check_range("sharpness", sharpness, 1, hint="1: the expectation under the mixing weights themselves")
        check_range("channels", channels, 1, integer=True, optional=True, hint="None: the space's evaluation size")
        check_range("layers", layers, 1, integer=True, optional=True, hint="None: the space's evaluation size")
        self.cost_model = get_cost_model(cost)
        self.budget, self.form, self.weight, self.sharpness = float(budget), form, float(weight), float(sharpness)
        self.channels, self.layers = channels, layers
        self.table: CostTable | None = None

    def attach(self, space: SearchSpace[Any], supernet: Supernet, *, in_channels: int, num_classes: int,
               image_size: int) -> None:
        self.table = CostTable.build(space, self.cost_model, in_channels=in_channels, num_classes=num_classes,
                                     image_size=image_size, channels=self.channels, layers=self.layers,
                                     supernet=supernet)
        if self.table.cheapest() > self.budget:
            raise ValueError(
                f"the budget {self.budget:g} {self.cost_model.unit} is below the cheapest network of the {space.name} "
                f"space at this size ({self.table.cheapest():g}): raise the budget or price a smaller network "
                "(channels, layers)"
            )

    def _table(self) -> CostTable:
        if self.table is None:
            raise RuntimeError("CostBudget prices the search's space once the search attaches it (DARTSSearch does)")
        return self.table

    def expected_cost(self, supernet: Supernet) -> Tensor:
        """E[c]: the table's cost of the expected path of the relaxation's expected mixing weights (raised to the
        power ``sharpness`` and renormalised per edge)."""
        weights = supernet.cell_weights(detach=False)
        if self.sharpness != 1.0:
            # w^s / Σ w^s as a softmax of s·log w: no underflow for large s
            weights = {cell: torch.softmax(self.sharpness * w.clamp_min(torch.finfo(w.dtype).tiny).log(), dim=-1)
                       for cell, w in weights.items()}
        return self._table().cost(supernet.expected_path(weights))

    def arch_loss(self, supernet: Supernet, epoch: int, epochs: int) -> Tensor:
        ratio = self.expected_cost(supernet) / self.budget
        if self.form == "hinge":
            return self.weight * (ratio - 1).clamp_min(0)
        if self.form == "target":
            return self.weight * (ratio - 1).abs()
        return self.weight * ratio

    def diagnostics(self, supernet: Supernet, answer: Any) -> dict[str, float]:
        name = self.cost_model.name
        return {f"cost/{name}/expected": float(self.expected_cost(supernet).detach()),
                f"cost/{name}/derived": self._table().arch_cost(answer), f"cost/{name}/budget": self.budget}
