"""Networks of DARTS cells: the supernet searched over (:class:`SearchNetwork`).

The macro skeleton follows DARTS (Liu et al., ICLR 2019, sec. 3.1): a 3×3 conv stem to
``stem_multiplier · C`` channels, ``layers`` cells with reduction cells (stride 2, doubled channels) at
1/3 and 2/3 of the depth, global average pooling and a linear classifier.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from darts_lightning.spaces.cell import SearchCell, dense_edges, edge_labels
from darts_lightning.spaces.darts.genotype import Genotype
from darts_lightning.spaces.mixing import Mixing, Relaxation, SoftmaxRelaxation
from darts_lightning.spaces.ops import DARTS_OPS, get_op, resolve_op_names
from darts_lightning.spaces.supernet import Supernet, named_weight_parameters

__all__ = [
    "SearchNetwork", "reduction_layers", "cell_plan", "check_image_size", "named_weight_parameters",
    "edge_normalization_weights", "snas_genes", "GENOTYPE_RULES", "check_edge_ops",
]

GENOTYPE_RULES: tuple[str, ...] = ("darts", "gdas", "snas")


def snas_genes(
    weights: Tensor, op_names: Sequence[str], nodes: int, k: int = 2, edge_ops: Sequence[Sequence[str]] | None = None,
) -> tuple[tuple[str, int], ...]:
    """The edges of one cell by SNAS's rule, ``none`` included (SNAS-Series, commit 9a43adb,
    SNAS/model_search.py, ``Network.genotype``, lines 695-724).

    Per node keep the ``k`` incoming edges whose strongest op weighs most and give each its strongest op,
    both over every op, ``none`` included: an edge whose strongest op is ``none`` stays in the cell as a
    zero edge. (The DARTS rule leaves ``none`` out of both choices.) Ties go to the lower index, as
    Python's stable sort and the strict ``>`` of the released code give. ``edge_ops``: the ops of each
    edge's columns when every edge has its own (R-DARTS's S1); otherwise every edge's columns are ``op_names``.
    """
    rows = weights.detach().float().cpu()
    expected = sum(2 + i for i in range(nodes))
    names = [tuple(op_names)] * expected if edge_ops is None else [tuple(ops) for ops in edge_ops]
    width = len(names[0]) if names else len(op_names)
    if rows.shape != (expected, width) or len(names) != expected or any(len(ops) != width for ops in names):
        raise ValueError(
            f"weights have shape {tuple(rows.shape)}; a cell of {nodes} nodes and {width} ops needs "
            f"({expected}, {width}), with {expected} edges of {width} op names"
        )
    genes: list[tuple[str, int]] = []
    start = 0
    for node in range(nodes):
        block = rows[start : start + node + 2].tolist()
        strongest = sorted(range(node + 2), key=lambda j: -max(block[j]))[:k]
        for src in strongest:
            best = max(range(width), key=lambda o: (block[src][o], -o))
            genes.append((names[start + src][best], src))
        start += node + 2
    return tuple(genes)


def check_edge_ops(edge_ops: Mapping[str, Sequence[Sequence[str]]], num_edges: int) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Per-edge candidate ops, checked: a list for the ``normal`` and the ``reduce`` cell with one entry per
    edge (α's rows), every entry a list of known, distinct ops with as many ops as every other edge (α has
    one column per candidate of an edge)."""
    if set(edge_ops) != {"normal", "reduce"}:
        raise ValueError(f"edge_ops must give the ops of the 'normal' and the 'reduce' cell's edges, got keys {sorted(edge_ops)}")
    checked = {}
    for cell in ("normal", "reduce"):
        rows = [resolve_op_names(ops) for ops in edge_ops[cell]]
        if len(rows) != num_edges:
            raise ValueError(
                f"edge_ops[{cell!r}] names the ops of {len(rows)} edges; the supernet's cells have {num_edges} edges"
            )
        checked[cell] = tuple(rows)
    widths = {len(ops) for rows in checked.values() for ops in rows}
    if len(widths) != 1:
        raise ValueError(
            f"every edge needs as many candidate ops (one column of alpha each), got edges with {sorted(widths)} ops"
        )
    if any(all(get_op(op).is_zero for op in ops) for rows in checked.values() for ops in rows):
        raise ValueError("an edge of edge_ops has only zero ops ('none'); every edge needs an op that computes something")
    return checked


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


def check_image_size(image_size: int, layers: int, *, stem_halvings: int = 0, variant: str | None = None) -> None:
    """Raise a clear error when input images of ``image_size`` cannot pass through the network.

    ``stem_halvings`` stride-2 stem convolutions (three in the DARTS ImageNet network, ``variant``
    'imagenet') and the reduction cells of ``layers`` cells each halve the image, so its size must be a
    positive multiple of 2 ** (all halvings); the message names the input size and that minimum.
    """
    reductions = len(reduction_layers(layers))
    factor = 2 ** (stem_halvings + reductions)
    if image_size >= factor and image_size % factor == 0:
        return
    stems = f"{stem_halvings} stride-2 stem convolutions and " if stem_halvings else ""
    problem = "are too small for" if image_size < factor else "do not halve evenly through"
    resize = max(factor, -(-image_size // factor) * factor)  # the next size that fits
    alternatives = (["variant 'cifar'"] if stem_halvings else []) + (["fewer layers"] if reductions > 1 else [])
    raise ValueError(
        f"input images of {image_size}x{image_size} {problem} {stems}{reductions} reduction cells of a "
        f"{layers}-cell network: each halves the image, so this network needs at least {factor}x{factor} "
        f"(a multiple of {factor}{f', variant {variant!r}' if variant else ''}): resize them "
        f"(--data.init_args.resize {resize})" + (f" or choose {' or '.join(alternatives)}" if alternatives else "")
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


class SearchNetwork(Supernet[Genotype]):
    """The DARTS supernet: mixed edges everywhere, weighted by α (one tensor per cell type).

    Args:
        in_channels, num_classes: from the data.
        channels: initial channels C (paper: 16). layers: number of cells L (paper: 8).
        nodes: intermediate nodes per cell (4). multiplier: nodes concatenated into the output (4).
        stem_multiplier: the stem outputs ``stem_multiplier · C`` channels (3).
        op_names: candidate ops (default: the eight DARTS primitives), the same on every edge.
        edge_ops: per cell type (``normal``, ``reduce``), the candidate ops of each edge in α's row order,
            every edge with as many (R-DARTS's S1, where each edge has its own pair); column ``j`` of α is
            then edge ``e``'s ``j``-th op, and :attr:`op_names` is the union of the edges' ops in order of
            first appearance (the ``op_names`` argument is not read).
        relaxation: how a mixed edge mixes its ops (default: DARTS's softmax-weighted sum; see
            :mod:`darts_lightning.spaces.mixing` and :mod:`darts_lightning.differentiable.relaxations`).
        edge_normalization: PC-DARTS's edge normalisation: a parameter β per edge whose softmax over each
            node's incoming edges scales the edge outputs (``beta_normal``/``beta_reduce``, architecture
            parameters beside α); edges are then ranked by softmax(α)·softmax(β).
        auxiliary_skip: DARTS-'s auxiliary skip connection on every mixed edge, scaled by
            :attr:`auxiliary_skip_weight` (set by the search's remedy).
        genotype_rule: how the genotype is derived: ``darts`` (two strongest edges per node, see
            :meth:`Genotype.from_alphas`), ``gdas`` (two strongest (op, input) pairs per node) or ``snas``
            (as ``darts`` with ``none`` competing like any op, :func:`snas_genes`).
        pool_batch_norm: a non-affine batch norm after the pooling ops of the mixed edges (DARTS, PC-DARTS,
            SNAS: yes; GDAS, DrNAS: no; see :class:`~darts_lightning.spaces.edges.MixedEdge`).
        last_activation: batch norm (affine) and ReLU between the last cell and the global pooling, as
            GDAS's supernet does (``lastact``: AutoDL-Projects, commit f46486e,
            xautodl/models/cell_searchs/search_model_gdas_nasnet.py, lines 77 and 192); DARTS has none.
        drop_path_prob: drop-path on every mixed edge's output while training, as SNAS's supernet does
            (0.3 in its README's command); the keep masks of one forward pass come from the supernet's
            seeded generator (:meth:`drop_path_masks`).
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
        relaxation: Relaxation | None = None,
        edge_normalization: bool = False,
        auxiliary_skip: bool = False,
        genotype_rule: str = "darts",
        pool_batch_norm: bool = True,
        last_activation: bool = False,
        drop_path_prob: float = 0.0,
        image_size: int | None = None,
        edge_ops: Mapping[str, Sequence[Sequence[str]]] | None = None,
    ) -> None:
        super().__init__(SoftmaxRelaxation() if relaxation is None else relaxation)
        sizes = (("in_channels", in_channels), ("num_classes", num_classes), ("channels", channels), ("layers", layers),
                 ("nodes", nodes))
        for name, value in sizes:
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if image_size is not None:
            check_image_size(image_size, layers)
        num_edges = len(dense_edges(nodes))
        self.edge_ops: dict[str, tuple[tuple[str, ...], ...]] | None = None
        if edge_ops is None:
            self.op_names = resolve_op_names(op_names)
        else:
            self.edge_ops = check_edge_ops(edge_ops, num_edges)
            union = [op for cell in ("normal", "reduce") for ops in self.edge_ops[cell] for op in ops]
            self.op_names = tuple(dict.fromkeys(union))
        self.nodes, self.multiplier = nodes, multiplier
        self.shape = {"in_channels": in_channels, "num_classes": num_classes, "channels": channels,
                      "layers": layers, "stem_multiplier": stem_multiplier}
        self.edge_normalization, self.auxiliary_skip = bool(edge_normalization), bool(auxiliary_skip)
        if genotype_rule not in GENOTYPE_RULES:
            raise ValueError(f"unknown genotype rule {genotype_rule!r}; valid rules are: {', '.join(GENOTYPE_RULES)}")
        if not 0.0 <= drop_path_prob < 1.0:
            raise ValueError(f"drop_path_prob must lie in [0, 1), got {drop_path_prob}")
        self.genotype_rule = genotype_rule
        self.pool_batch_norm, self.last_activation = bool(pool_batch_norm), bool(last_activation)
        self.drop_path_prob = float(drop_path_prob)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_multiplier * channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_multiplier * channels),
        )
        self.cells = nn.ModuleList(
            SearchCell(
                c_pp, c_p, c,
                reduction=reduction, reduction_prev=reduction_prev,
                nodes=nodes, multiplier=multiplier, op_names=self.op_names, relaxation=self.relaxation,
                auxiliary_skip=auxiliary_skip, pool_batch_norm=self.pool_batch_norm,
                edge_ops=None if self.edge_ops is None else self.edge_ops["reduce" if reduction else "normal"],
            )
            for c_pp, c_p, c, reduction, reduction_prev in cell_plan(channels, layers, stem_multiplier * channels, multiplier)
        )
        c_last = multiplier * list(cell_plan(channels, layers, stem_multiplier * channels, multiplier))[-1][2]
        self.last: nn.Module = nn.Sequential(nn.BatchNorm2d(c_last), nn.ReLU()) if self.last_activation else nn.Identity()
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_last, num_classes)
        width = len(self.op_names) if self.edge_ops is None else len(self.edge_ops["normal"][0])
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(num_edges, width))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(num_edges, width))
        if self.edge_normalization:
            self.beta_normal = nn.Parameter(1e-3 * torch.randn(num_edges))
            self.beta_reduce = nn.Parameter(1e-3 * torch.randn(num_edges))

    # ------------------------------------------------------------------ parameters

    def named_arch_parameters(self) -> dict[str, nn.Parameter]:
        """α (normal, reduce), then β (normal, reduce) with edge normalisation."""
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
        scales: dict[str, Tensor | None] = {}
        for cell, beta in (("normal", self.beta_normal), ("reduce", self.beta_reduce)):
            weights = edge_normalization_weights(beta, self.nodes)
            scales[cell] = weights.detach() if detach else weights
        return scales

    def edge_labels(self) -> list[str]:
        return edge_labels(self.nodes)

    def edge_op_names(self) -> dict[str, list[tuple[str, ...]]]:
        if self.edge_ops is None:
            return super().edge_op_names()
        return {cell: list(ops) for cell, ops in self.edge_ops.items()}

    # ------------------------------------------------------------------ forward

    def mixing(self, detach: bool = False, path: Mapping[str, Tensor] | None = None) -> dict[str, Mixing]:
        """The mixing of the normal and reduce cells for one forward pass (softmax(α) for DARTS, a sample
        for the sampling relaxations, seeded by :attr:`sample_key`; ``path``: the rows of one architecture)."""
        if path is not None:
            return {cell: Mixing(path[cell]) for cell in ("normal", "reduce")}
        samples = self.relaxation.samples
        mixing = {
            cell: self.relaxation.mixing(alpha, self.generator(cell) if samples else None)
            for cell, alpha in self.alphas().items()
        }
        if detach:
            mixing = {cell: m._replace(weights=m.weights.detach()) for cell, m in mixing.items()}
        return mixing

    def drop_path_masks(self, batch: int, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
        """Keep masks ``[cells, edges, batch]`` (1 keeps a sample's edge output) for one forward pass.

        Drawn on the CPU from the supernet's generator, seeded by the search's sample key (as the
        sampling relaxations' noise is: a resumed search draws the masks an uninterrupted one would), and
        copied to ``device`` (in ``dtype``, the activations') once, by a copy that does not wait for the device.
        """
        generator = self.generator("drop_path")
        shape = (len(self.cells), len(dense_edges(self.nodes)), batch)
        masks = torch.empty(shape).bernoulli_(1.0 - self.drop_path_prob, generator=generator)
        return masks.to(device, dtype, non_blocking=True)

    def forward(self, x: Tensor, detach_alpha: bool = False, path: Mapping[str, Tensor] | None = None) -> Tensor:
        """Logits for ``x``. ``detach_alpha=True`` treats α (and β) as constant (the weight step): no
        architecture gradient is computed and the ops' outputs need not be kept for it. ``path``: run one
        architecture (:meth:`path`) instead of the mixture; its edges are unscaled."""
        mixing = self.mixing(detach=detach_alpha, path=path)
        scales = self.edge_scales(detach=detach_alpha) if path is None else {"normal": None, "reduce": None}
        masks = self.drop_path_masks(x.shape[0], x.device, x.dtype) if self.training and self.drop_path_prob > 0 else None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(
                (s0, s1), mixing[kind].weights, scales[kind], mixing[kind].columns,
                None if masks is None else masks[i], self.drop_path_prob, self.auxiliary_skip_weight,
            )
        return self.classifier(torch.flatten(self.global_pooling(self.last(s1)), 1))

    # ------------------------------------------------------------------ derivation

    def derive(self) -> Genotype:
        """The discrete cells by the network's rule (same as :meth:`genotype`)."""
        return self.genotype()

    def path(self, arch: Genotype) -> dict[str, Tensor]:
        if not isinstance(arch, Genotype):
            raise TypeError(f"a DARTS supernet runs Genotype cells, got {type(arch).__name__}")
        return {"normal": self._path_rows(arch.normal, arch.normal_concat, "normal"),
                "reduce": self._path_rows(arch.reduce, arch.reduce_concat, "reduce")}

    def _path_rows(self, edges: Sequence[tuple[str, int]], concat: Sequence[int], cell: str) -> Tensor:
        nodes = self.nodes
        if len(edges) != 2 * nodes:
            raise ValueError(f"the {cell} cell has {len(edges)} edges; the supernet's cells have {nodes} nodes of two edges")
        expected = tuple(range(2 + nodes - self.multiplier, 2 + nodes))
        if tuple(concat) != expected:
            raise ValueError(f"the {cell} cell concatenates states {list(concat)}; the supernet concatenates {list(expected)}")
        dense = dense_edges(nodes)
        names = self.edge_op_names()[cell]
        rows = torch.zeros(len(dense), len(names[0]))
        for k, (op, src) in enumerate(edges):
            if op not in self.op_names:
                raise ValueError(f"op {op!r} of the {cell} cell is not among the supernet's ops {list(self.op_names)}")
            if not 0 <= src < 2 + k // 2:
                raise ValueError(f"edge {k} of the {cell} cell takes state {src}, which node {k // 2} cannot read")
            row = dense.index((src, 2 + k // 2))
            if op not in names[row]:
                raise ValueError(
                    f"op {op!r} of the {cell} cell's edge {src}-{2 + k // 2} is not among that edge's ops {list(names[row])}"
                )
            if rows[row].any():
                raise ValueError(
                    f"node {k // 2} of the {cell} cell takes state {src} twice; a single path needs distinct inputs per node"
                )
            rows[row, names[row].index(op)] = 1.0
        return rows

    def expected_path(self, weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Every edge's op weights times the expected number of times its node keeps it. The ``darts`` and
        ``gdas`` rules keep the two edges of each node with the highest score (the strongest non-zero op weight,
        times softmax(β) under edge normalisation) and never a zero op: the zero ops' weight is dropped and the
        others renormalised, and an edge is kept with weight 2 · score / Σ scores of its node (at most 1), so
        that edges the rule would keep count more. The ``snas`` rule keeps every edge's strongest op, zero ops
        included: the weights themselves."""
        if self.genotype_rule == "snas":
            return dict(weights)
        nodes = [dst for _, dst in dense_edges(self.nodes)]
        scales = self.edge_scales()
        expected = {}
        for cell, w in weights.items():
            zero = self._zero_columns(cell, w.device)
            nonzero = w.masked_fill(zero, 0.0)
            score = nonzero.max(dim=-1).values
            scale = scales[cell]
            if scale is not None:
                score = score * scale.to(w.dtype)
            keep = torch.cat([
                (2.0 * part / part.sum().clamp_min(1e-12)).clamp_max(1.0)
                for part in score.split([nodes.count(dst) for dst in sorted(set(nodes))])
            ])
            expected[cell] = nonzero / nonzero.sum(dim=-1, keepdim=True).clamp_min(1e-12) * keep.unsqueeze(-1)
        return expected

    def _zero_columns(self, cell: str, device: torch.device) -> Tensor:
        """``[edges, ops]``: which columns of ``cell``'s α are zero ops, on ``device`` (built once per device)."""
        cache: dict[tuple[str, torch.device], Tensor] = self.__dict__.setdefault("_zero_column_cache", {})
        if (cell, device) not in cache:
            cache[cell, device] = torch.tensor(
                [[get_op(op).is_zero for op in ops] for ops in self.edge_op_names()[cell]], device=device
            )
        return cache[cell, device]

    @staticmethod
    def derived_ops(genotype: Genotype) -> dict[str, list[str]]:
        """The ops of each derived cell type."""
        return {"normal": [op for op, _ in genotype.normal], "reduce": [op for op, _ in genotype.reduce]}

    def genotype(self) -> Genotype:
        """The discrete cells by the network's ``genotype_rule`` (:meth:`Genotype.from_alphas`; ``snas``:
        :func:`snas_genes`) on the relaxation's derivation weights (softmax(α)), edges ranked by
        softmax(α)·softmax(β) under edge normalisation (PC-DARTS)."""
        weights = {cell: self.relaxation.derivation_weights(alpha.detach()) for cell, alpha in self.alphas().items()}
        scales = self.edge_scales(detach=True)
        if self.genotype_rule == "snas":
            for cell, scale in scales.items():
                if scale is not None:
                    weights[cell] = weights[cell] * scale.reshape(-1, 1)
            concat = tuple(range(2 + self.nodes - self.multiplier, 2 + self.nodes))
            edge_ops = self.edge_ops
            genes = {cell: snas_genes(weights[cell], self.op_names, self.nodes,
                                      edge_ops=None if edge_ops is None else edge_ops[cell]) for cell in ("normal", "reduce")}
            return Genotype(genes["normal"], concat, genes["reduce"], concat)
        return Genotype.from_alphas(
            weights["normal"], weights["reduce"], self.op_names, nodes=self.nodes, multiplier=self.multiplier,
            edge_weights_normal=scales["normal"], edge_weights_reduce=scales["reduce"], already_normalized=True,
            rule=self.genotype_rule, edge_ops=self.edge_ops,
        )

    def space_signature(self) -> dict:
        """What a checkpoint must match to be loaded into this network (with per-edge candidates, those too)."""
        signature = {"op_names": list(self.op_names), "nodes": self.nodes, "multiplier": self.multiplier,
                     "relaxation": self.relaxation.name, "relaxation_args": self.relaxation.describe(),
                     "edge_normalization": self.edge_normalization, "auxiliary_skip": self.auxiliary_skip,
                     "pool_batch_norm": self.pool_batch_norm, "last_activation": self.last_activation, **self.shape}
        if self.edge_ops is not None:
            signature["edge_ops"] = {cell: [list(ops) for ops in rows] for cell, rows in self.edge_ops.items()}
        return signature
