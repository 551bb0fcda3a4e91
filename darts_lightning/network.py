"""Networks of DARTS cells: the supernet searched over (:class:`SearchNetwork`).

The macro skeleton follows DARTS (Liu et al., ICLR 2019, sec. 3.1): a 3×3 conv stem to
``stem_multiplier · C`` channels, ``layers`` cells with reduction cells (stride 2, doubled channels) at
1/3 and 2/3 of the depth, global average pooling and a linear classifier.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from .cell import SearchCell, dense_edges, edge_labels
from .genotype import Genotype
from .ops import DARTS_OPS, resolve_op_names
from .relaxations import Relaxation, build_relaxation

__all__ = [
    "SearchNetwork", "reduction_layers", "cell_plan", "check_image_size", "named_weight_parameters",
    "edge_normalization_weights",
]


def edge_normalization_weights(beta: Tensor, nodes: int, num_inputs: int = 2) -> Tensor:
    """PC-DARTS's edge normalisation (Xu et al., ICLR 2020, eq. 4): softmax of the edge parameters β over
    the edges entering each node, so that the weights of every node's incoming edges sum to 1."""
    parts, start = [], 0
    for node in range(nodes):
        width = num_inputs + node
        parts.append(torch.softmax(beta[start : start + width], dim=-1))
        start += width
    if start != beta.shape[0]:
        raise ValueError(f"beta has {beta.shape[0]} entries; a cell of {nodes} nodes has {start} edges")
    return torch.cat(parts)


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Indices of the reduction cells: ``layers // 3`` and ``2 * layers // 3`` (one cell if they coincide)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


def check_image_size(image_size: int, layers: int) -> None:
    """Raise a clear error when ``image_size`` cannot pass through the reduction cells of ``layers`` cells."""
    reductions = len(reduction_layers(layers))
    factor = 2**reductions
    if image_size < factor or image_size % factor:
        raise ValueError(
            f"image size {image_size} is too small for {reductions} reduction cells of a {layers}-cell network: "
            f"each halves the image, so the size must be a positive multiple of {factor}; "
            "use larger images (resize in the data module) or fewer layers"
        )


def cell_plan(
    channels: int,
    layers: int,
    stem_channels: int,
    multiplier: int,
    reduce_multiplier: int | None = None,
    stem_reduces: bool = False,
) -> Iterator[tuple[int, int, int, bool, bool]]:
    """Yield ``(c_prev_prev, c_prev, c, reduction, reduction_prev)`` for each cell, as in the DARTS code.

    A cell outputs ``multiplier · c`` channels (``reduce_multiplier · c`` for a reduction cell);
    ``stem_reduces`` says the stem halved the image last (the ImageNet stems), so the first cell
    reduces its older input.
    """
    reduce_multiplier = multiplier if reduce_multiplier is None else reduce_multiplier
    c_pp, c_p, c = stem_channels, stem_channels, channels
    reductions = reduction_layers(layers)
    reduction_prev = stem_reduces
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c *= 2
        yield c_pp, c_p, c, reduction, reduction_prev
        reduction_prev = reduction
        c_pp, c_p = c_p, (reduce_multiplier if reduction else multiplier) * c


def named_weight_parameters(network: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every parameter of ``network`` except its ``arch_parameters()``."""
    arch = {id(p) for p in network.arch_parameters()}
    return ((n, p) for n, p in network.named_parameters() if id(p) not in arch)


class SearchNetwork(nn.Module):
    """The DARTS supernet: mixed edges everywhere, weighted by α (one tensor per cell type).

    Args:
        in_channels, num_classes: from the data.
        channels: initial channels C (paper: 16). layers: number of cells L (paper: 8).
        nodes: intermediate nodes per cell (4). multiplier: nodes concatenated into the output (4).
        stem_multiplier: the stem outputs ``stem_multiplier · C`` channels (3).
        op_names: candidate ops (default: the eight DARTS primitives).
        relaxation: how a mixed edge mixes its ops (``"darts"``: softmax-weighted sum; see
            :mod:`darts_lightning.relaxations`), with keyword arguments ``relaxation_args``.
        edge_normalization: PC-DARTS's edge normalisation: a parameter β per edge whose softmax over each
            node's incoming edges scales the edge outputs (``beta_normal``/``beta_reduce``, architecture
            parameters beside α); edges are then ranked by softmax(α)·softmax(β).
        auxiliary_skip: DARTS-'s auxiliary skip connection on every mixed edge, scaled by
            ``relaxation.auxiliary_skip_weight`` (set by the search's schedule).
        genotype_rule: how the genotype is derived: ``darts`` (two strongest edges per node, see
            :meth:`Genotype.from_alphas`) or ``gdas`` (two strongest (op, input) pairs per node).
        image_size: when given, checked against the number of reduction cells.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 16,
        layers: int = 8,
        nodes: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        op_names: Sequence[str] = DARTS_OPS,
        relaxation: str | Relaxation = "darts",
        relaxation_args: dict | None = None,
        edge_normalization: bool = False,
        auxiliary_skip: bool = False,
        genotype_rule: str = "darts",
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("channels", channels), ("layers", layers), ("nodes", nodes)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if image_size is not None:
            check_image_size(image_size, layers)
        self.op_names = resolve_op_names(op_names)
        self.nodes, self.multiplier = nodes, multiplier
        self.shape = {"in_channels": in_channels, "num_classes": num_classes, "channels": channels,
                      "layers": layers, "stem_multiplier": stem_multiplier}
        self.relaxation = build_relaxation(relaxation, **(relaxation_args or {}))
        self.edge_normalization, self.auxiliary_skip = bool(edge_normalization), bool(auxiliary_skip)
        if genotype_rule not in ("darts", "gdas"):
            raise ValueError(f"unknown genotype rule {genotype_rule!r}; valid rules are: darts, gdas")
        self.genotype_rule = genotype_rule
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_multiplier * channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_multiplier * channels),
        )
        self.cells = nn.ModuleList(
            SearchCell(
                c_pp, c_p, c,
                reduction=reduction, reduction_prev=reduction_prev,
                nodes=nodes, multiplier=multiplier, op_names=self.op_names, relaxation=self.relaxation,
                auxiliary_skip=auxiliary_skip,
            )
            for c_pp, c_p, c, reduction, reduction_prev in cell_plan(channels, layers, stem_multiplier * channels, multiplier)
        )
        c_last = multiplier * list(cell_plan(channels, layers, stem_multiplier * channels, multiplier))[-1][2]
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_last, num_classes)
        num_edges = len(dense_edges(nodes))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(num_edges, len(self.op_names)))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(num_edges, len(self.op_names)))
        if self.edge_normalization:
            self.beta_normal = nn.Parameter(1e-3 * torch.randn(num_edges))
            self.beta_reduce = nn.Parameter(1e-3 * torch.randn(num_edges))

    # ------------------------------------------------------------------ parameters

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters: α (normal, reduce), then β (normal, reduce) with edge normalisation."""
        return list(self.named_arch_parameters().values())

    def named_arch_parameters(self) -> dict[str, nn.Parameter]:
        named = {"alpha_normal": self.alpha_normal, "alpha_reduce": self.alpha_reduce}
        if self.edge_normalization:
            named.update(beta_normal=self.beta_normal, beta_reduce=self.beta_reduce)
        return named

    def alphas(self) -> dict[str, Tensor]:
        """α per cell type (the op logits, without the edge parameters β)."""
        return {"normal": self.alpha_normal, "reduce": self.alpha_reduce}

    def edge_scales(self, detach: bool = False) -> dict[str, Tensor | None]:
        """Edge-normalisation weights per cell type (``None`` without edge normalisation)."""
        if not self.edge_normalization:
            return {"normal": None, "reduce": None}
        scales = {cell: edge_normalization_weights(beta, self.nodes) for cell, beta in
                  (("normal", self.beta_normal), ("reduce", self.beta_reduce))}
        return {k: v.detach() for k, v in scales.items()} if detach else scales

    def cell_weights(self, detach: bool = True) -> dict[str, Tensor]:
        """Expected mixing weights ``[edges, ops]`` per cell type (softmax(α) for DARTS), for logging."""
        weights = {cell: self.relaxation.expected_weights(alpha) for cell, alpha in self.alphas().items()}
        return {k: v.detach() for k, v in weights.items()} if detach else weights

    def edge_labels(self) -> list[str]:
        return edge_labels(self.nodes)

    def named_weight_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return named_weight_parameters(self)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except α: the weights w of the ops, stem, preprocessing and classifier."""
        return [p for _, p in self.named_weight_parameters()]

    # ------------------------------------------------------------------ forward

    def mixing_weights(self, detach: bool = False) -> tuple[Tensor, Tensor]:
        """Mixing weights of the normal and reduce cells for one forward pass (softmax(α) for DARTS, a
        sample for the sampling relaxations)."""
        normal = self.relaxation.edge_weights(self.alpha_normal, "normal")
        reduce = self.relaxation.edge_weights(self.alpha_reduce, "reduce")
        if detach:
            normal, reduce = normal.detach(), reduce.detach()
        return normal, reduce

    def forward(self, x: Tensor, detach_alpha: bool = False) -> Tensor:
        """Logits for ``x``. ``detach_alpha=True`` treats α (and β) as constant (the weight step): no
        architecture gradient is computed and the ops' outputs need not be kept for it."""
        normal, reduce = self.mixing_weights(detach=detach_alpha)
        scales = self.edge_scales(detach=detach_alpha)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell((s0, s1), reduce if cell.reduction else normal, scales[kind])
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))

    # ------------------------------------------------------------------ derivation

    def derive(self) -> Genotype:
        """The discrete cells by the DARTS rule (same as :meth:`genotype`)."""
        return self.genotype()

    @staticmethod
    def derived_ops(genotype: Genotype) -> dict[str, list[str]]:
        """The ops of each derived cell type."""
        return {"normal": [op for op, _ in genotype.normal], "reduce": [op for op, _ in genotype.reduce]}

    def genotype(self) -> Genotype:
        """The discrete cells by the DARTS rule (:meth:`Genotype.from_alphas`) on the relaxation's
        derivation weights (softmax(α)), edges ranked by softmax(α)·softmax(β) under edge normalisation (PC-DARTS)."""
        weights = {cell: self.relaxation.derivation_weights(alpha.detach()) for cell, alpha in self.alphas().items()}
        scales = self.edge_scales(detach=True)
        return Genotype.from_alphas(
            weights["normal"], weights["reduce"], self.op_names, nodes=self.nodes, multiplier=self.multiplier,
            edge_weights_normal=scales["normal"], edge_weights_reduce=scales["reduce"], already_normalized=True,
            rule=self.genotype_rule,
        )

    def space_signature(self) -> dict:
        """What a checkpoint must match to be loaded into this network."""
        return {"op_names": list(self.op_names), "nodes": self.nodes, "multiplier": self.multiplier,
                "relaxation": self.relaxation.name, "relaxation_args": self.relaxation.describe(),
                "edge_normalization": self.edge_normalization, "auxiliary_skip": self.auxiliary_skip, **self.shape}
