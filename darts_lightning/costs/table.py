"""The cost of every choice of a space at one network size, as a table the searches price architectures with.

A network's parameters and multiply-adds are sums over its modules. Its cost is therefore

    cost(answer) = fixed + Σ_cells Σ_edges Σ_ops path[cell][edge, op] · C[cell][edge, op],

where ``path`` is the answer's one-hot rows (:meth:`darts_lightning.spaces.supernet.Supernet.path`: 1 on the op of
every edge the answer keeps), ``C[cell][edge, op]`` is that op's cost summed over every site where the edge runs
in the network (:meth:`darts_lightning.spaces.SearchSpace.op_sites`: once per cell of the type, at its
channels, stride and resolution), and ``fixed`` is the rest (stem, reductions, preprocessing, head): the cost
of one answer's whole network minus its ops'. The same sum over the *expected* path of the relaxation's
mixing weights (:meth:`~darts_lightning.spaces.supernet.Supernet.expected_path`) is the expected cost, which is
differentiable in the architecture parameters (FBNet, Wu et al., CVPR 2019, eq. 7; ProxylessNAS, Cai et al.,
ICLR 2019, eq. 4).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from darts_lightning.costs.models import CostModel, get_cost_model
from darts_lightning.spaces.base import OpSite, SearchSpace
from darts_lightning.spaces.mixing import SoftmaxRelaxation
from darts_lightning.spaces.ops import build_op
from darts_lightning.spaces.supernet import Supernet

__all__ = ["CostTable"]


class CostTable:
    """Per cell type, the cost ``[edges, ops]`` of each op of each edge at its sites, and the fixed cost.

    Build it with :meth:`build`; price rows with :meth:`cost` and answers with :meth:`arch_cost`.
    """

    def __init__(self, matrices: Mapping[str, Tensor], fixed: float, model: CostModel, supernet: Supernet[Any]) -> None:
        self.matrices = {cell: matrix.double() for cell, matrix in matrices.items()}
        self.fixed = float(fixed)
        self.model = model
        self.supernet = supernet
        self._placed: dict[tuple[torch.device, torch.dtype], dict[str, Tensor]] = {}  # matrices by device and dtype

    @classmethod
    def build(
        cls, space: SearchSpace[Any], model: str | CostModel, *, in_channels: int, num_classes: int, image_size: int,
        channels: int | None = None, layers: int | None = None, supernet: Supernet[Any] | None = None,
    ) -> CostTable:
        """The table of ``space``'s network at ``channels``/``layers`` (the space's evaluation size when
        ``None``) for the cost ``model`` (``parameters``, ``multiply_adds`` or a :class:`CostModel`).
        ``supernet``: the space's supernet, whose edges name the ops of each column (built when not given)."""
        model = get_cost_model(model)
        if supernet is None:
            supernet = space.build_supernet(SoftmaxRelaxation(), in_channels=in_channels, num_classes=num_classes,
                                            image_size=image_size)
        size = {"in_channels": in_channels, "num_classes": num_classes, "image_size": image_size, "channels": channels,
                "layers": layers}
        stored = model.stored_table(space, supernet, size)
        if stored is not None:
            return stored
        sites = space.op_sites(in_channels=in_channels, image_size=image_size, channels=channels, layers=layers)
        edge_ops = supernet.edge_op_names()
        if set(sites) != set(edge_ops):
            raise ValueError(f"the {space.name} space's op_sites name the cell types {sorted(sites)}, its supernet "
                             f"{sorted(edge_ops)}: they must agree")
        measured: dict[tuple[str, OpSite], float] = {}

        def op_cost(name: str, site: OpSite) -> float:
            if (name, site) not in measured:
                try:
                    op = build_op(name, site.channels, site.stride, affine=True)
                    measured[name, site] = model.measure(op, (site.channels, site.resolution, site.resolution))
                except Exception as error:  # any op's failure, named with where it runs
                    raise ValueError(
                        f"the {model.name} cost model cannot measure the op {name!r} at {site.channels} channels, stride "
                        f"{site.stride}, {site.resolution}x{site.resolution} input ({type(error).__name__}: {error}); "
                        "fix the op or leave it out of the space"
                    ) from error
            return measured[name, site]

        matrices = {}
        for cell, rows in edge_ops.items():
            if len(sites[cell]) != len(rows):
                raise ValueError(f"the {space.name} space's op_sites give {len(sites[cell])} rows for the {cell} cells, "
                                 f"its supernet has {len(rows)} edges")
            matrices[cell] = torch.tensor(
                [[sum(op_cost(name, site) for site in sites[cell][row]) for name in names] for row, names in enumerate(rows)],
                dtype=torch.float64,
            )
        table = cls(matrices, 0.0, model, supernet)
        reference = space.sample(random.Random(0))
        network = space.build_network(reference, num_classes=num_classes, in_channels=in_channels,
                                      image_size=image_size, channels=channels, layers=layers)
        table.fixed = model.measure(network, (in_channels, image_size, image_size)) - float(
            table.cost(supernet.path(reference))
        )
        return table

    def to_record(self) -> dict[str, Any]:
        """The table as plain data: the cost of every op of every edge (``matrices``, in the supernet's column
        order) and the fixed cost."""
        return {"fixed": self.fixed, "matrices": {cell: matrix.tolist() for cell, matrix in self.matrices.items()}}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], model: CostModel, supernet: Supernet[Any]) -> CostTable:
        """The table of :meth:`to_record`'s ``record`` for ``supernet`` (its shape must fit the supernet's edges)."""
        matrices = {cell: torch.tensor(rows, dtype=torch.float64) for cell, rows in record["matrices"].items()}
        for cell, ops in supernet.edge_op_names().items():
            if cell not in matrices or tuple(matrices[cell].shape) != (len(ops), len(ops[0])):
                raise ValueError(f"the cost table does not fit the supernet's {cell} cells ({len(ops)} edges of "
                                 f"{len(ops[0])} ops)")
        return cls(matrices, float(record["fixed"]), model, supernet)

    def cost(self, rows: Mapping[str, Tensor]) -> Tensor:
        """``fixed + Σ rows · C``: the cost of the path ``rows`` (one-hot rows: an answer's cost; expected rows: the
        expected cost, differentiable in them), in the rows' dtype and on their device."""
        total: Tensor | None = None
        for cell in self.matrices:
            weights = rows[cell]
            term = (weights * self._matrix(cell, weights)).sum()
            total = term if total is None else total + term
        assert total is not None, "a table has at least one cell type"
        return total + self.fixed

    def _matrix(self, cell: str, like: Tensor) -> Tensor:
        """The cost matrix of ``cell`` on ``like``'s device and in its dtype, copied there once (the search step
        prices the expected path at every architecture step)."""
        placed = self._placed.setdefault((like.device, like.dtype), {})
        if cell not in placed:
            placed[cell] = self.matrices[cell].to(like.device, like.dtype)
        return placed[cell]

    def arch_cost(self, arch: Any) -> float:
        """The cost of the network of ``arch``."""
        return float(self.cost({cell: rows.double() for cell, rows in self.supernet.path(arch).items()}))

    def cheapest(self) -> float:
        """A lower bound of every answer's cost: the fixed cost plus, for each edge every answer keeps, its
        cheapest op among those an answer may choose there. What every answer keeps and may choose is read from
        the supernet's expected path of uniform weights (an edge kept with weight 1, an op with weight > 0), so
        the bound is exact for spaces whose answers keep every edge and for the DARTS space's cells."""
        uniform = {cell: torch.full_like(matrix, 1.0 / matrix.shape[1]) for cell, matrix in self.matrices.items()}
        expected = self.supernet.expected_path(uniform)
        bound = self.fixed
        for cell, matrix in self.matrices.items():
            rows = expected[cell].to(matrix.dtype)
            for row, weights in zip(matrix, rows):
                if float(weights.sum()) >= 1.0 - 1e-9:
                    bound += float(row[weights > 0].min())
        return bound
