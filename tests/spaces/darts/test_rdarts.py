"""R-DARTS's spaces S1-S4 and its ``noise`` op, against the released definitions (automl/RobustDARTS, commit
3dec3fe: src/spaces.py, lines 6-78; src/operations.py, lines 7 and 26-39)."""

from __future__ import annotations

import random

import pytest
import torch

from darts_lightning import RDartsSpace, get_space
from darts_lightning.spaces.base import SearchSpace
from darts_lightning.spaces.cell import edge_labels
from darts_lightning.spaces.darts.genotype import Genotype
from darts_lightning.spaces.darts.rdarts import RDARTS_OPS, RDARTS_S1_EDGE_OPS
from darts_lightning.spaces.edges import MixedEdge
from darts_lightning.spaces.mixing import SoftmaxRelaxation
from darts_lightning.spaces.ops import NoiseOp, build_op, get_op
from darts_lightning.utils.components import build_component

RELEASED = {
    "s2": ("skip_connect", "sep_conv_3x3"),
    "s3": ("none", "skip_connect", "sep_conv_3x3"),
    "s4": ("noise", "sep_conv_3x3"),
}

# S1, src/spaces.py lines 6-33 (normal) and 34-61 (reduce): one pair per edge, edges in alpha's row order.
S1_NORMAL = [
    ("skip_connect", "dil_conv_3x3"), ("skip_connect", "dil_conv_5x5"), ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"), ("max_pool_3x3", "skip_connect"),
    ("skip_connect", "sep_conv_3x3"), ("skip_connect", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "sep_conv_3x3"), ("max_pool_3x3", "skip_connect"), ("skip_connect", "dil_conv_3x3"),
    ("dil_conv_3x3", "dil_conv_5x5"), ("dil_conv_3x3", "dil_conv_5x5"),
]
S1_REDUCE = [
    ("max_pool_3x3", "avg_pool_3x3"), ("max_pool_3x3", "dil_conv_3x3"), ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"), ("skip_connect", "dil_conv_5x5"), ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"), ("skip_connect", "dil_conv_5x5"),
    ("max_pool_3x3", "avg_pool_3x3"), ("max_pool_3x3", "avg_pool_3x3"), ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"), ("skip_connect", "dil_conv_5x5"),
]
S1 = {"normal": S1_NORMAL, "reduce": S1_REDUCE}
LABELS = edge_labels(4)  # 0-2, 1-2, 0-3, 1-3, 2-3, 0-4, ...


def _s1_allowed(arch: Genotype) -> None:
    """Every edge of ``arch`` holds one of the two ops S1 gives that edge."""
    for cell, edges in (("normal", arch.normal), ("reduce", arch.reduce)):
        for k, (op, src) in enumerate(edges):
            assert op in S1[cell][LABELS.index(f"{src}-{2 + k // 2}")], (cell, k, op, src)


# --------------------------------------------------------------------------- the noise op


@pytest.mark.parametrize("stride", [1, 2])
def test_noise_has_the_strided_input_shape(stride):
    x = torch.randn(2, 4, 8, 7)
    out = build_op("noise", 4, stride, False)(x)
    assert out.shape == x[:, :, ::stride, ::stride].shape
    assert out.dtype == x.dtype and out.device == x.device


@pytest.mark.parametrize("train", [True, False])
def test_noise_is_standard_normal_whatever_the_input(train):
    op = build_op("noise", 4, 1, True)
    op.train(train)
    x = 100.0 + 50.0 * torch.randn(8, 4, 32, 32)  # mean 100, std 50: the noise ignores both
    out = op(x)
    assert abs(float(out.mean())) < 0.02
    assert abs(float(out.std()) - 1.0) < 0.02


def test_noise_is_fresh_per_call_and_follows_torch_seed():
    op = NoiseOp(1)
    x = torch.zeros(2, 3, 4, 4)
    torch.manual_seed(5)
    first, second = op(x), op(x)
    assert not torch.equal(first, second)
    torch.manual_seed(5)
    assert torch.equal(op(x), first)


def test_noise_has_no_parameters_and_no_input_gradient():
    op = build_op("noise", 4, 2, False)
    assert list(op.parameters()) == [] and not get_op("noise").is_zero and not get_op("noise").bn_in_search
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    assert not op(x).requires_grad


# --------------------------------------------------------------------------- the spaces


@pytest.mark.parametrize("subspace", sorted(RELEASED))
def test_candidates_are_the_released_ones(subspace):
    assert RDARTS_OPS[subspace] == RELEASED[subspace]
    space = get_space(f"rdarts_{subspace}")
    assert isinstance(space, RDartsSpace) and space.ops == RELEASED[subspace]
    assert space.op_names == tuple(op for op in RELEASED[subspace] if op != "none")


@pytest.mark.parametrize("subspace", sorted(RELEASED))
def test_every_mixed_edge_has_the_space_candidates(subspace):
    space = RDartsSpace(subspace, channels=4, layers=2, nodes=2, multiplier=2)
    net = space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=3, image_size=8)
    assert net.alpha_normal.shape == net.alpha_reduce.shape == (5, len(RELEASED[subspace]))
    edges = [m for m in net.modules() if isinstance(m, MixedEdge)]
    assert len(edges) == 2 * 5
    for edge in edges:
        assert edge.op_names == RELEASED[subspace]
        # 'none' takes a column of alpha but has no module
        assert len(edge.ops) == len([op for op in RELEASED[subspace] if op != "none"])
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("subspace", sorted(RELEASED))
def test_derived_genotype_uses_only_the_candidates(subspace):
    space = RDartsSpace(subspace, channels=4, layers=2, nodes=3, multiplier=3)
    net = space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=3)
    with torch.no_grad():
        net.alpha_normal.normal_(0, 3)
        net.alpha_reduce.normal_(0, 3)
        if "none" in RELEASED[subspace]:
            net.alpha_normal[:, RELEASED[subspace].index("none")] = 100.0  # 'none' strongest everywhere
    genotype = net.genotype()
    used = {op for op, _ in genotype.normal + genotype.reduce}
    assert used <= set(RELEASED[subspace]) - {"none"}
    # the network the genotype describes builds and runs (the noise op included)
    eval_net = space.build_network(genotype, num_classes=3, in_channels=1, image_size=8, channels=4, layers=2)
    assert eval_net(torch.randn(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("subspace", sorted(RELEASED))
def test_discrete_side_draws_from_the_candidates(subspace):
    space = get_space(f"rdarts_{subspace}")
    generator = random.Random(0)
    arch = space.sample(generator)
    for drawn in (arch, space.mutate(arch, generator)):
        assert {op for op, _ in drawn.normal + drawn.reduce} <= set(RELEASED[subspace]) - {"none"}
    assert space.decisions()[1] == len(space.op_names)


def test_config_round_trip_keeps_the_subspace():
    space = RDartsSpace("s3", channels=8, layers=5)
    config = space.config()
    assert config["class_path"].endswith("RDartsSpace") and config["init_args"]["subspace"] == "s3"
    rebuilt = build_component(config, SearchSpace, "search space")  # type: ignore[type-abstract]
    assert isinstance(rebuilt, RDartsSpace) and rebuilt.ops == RELEASED["s3"] and rebuilt.channels == 8


def test_unknown_subspaces_are_refused():
    with pytest.raises(ValueError, match="subspace must be one of s1, s2, s3, s4, got 's5'"):
        RDartsSpace("s5")


# --------------------------------------------------------------------------- S1: per-edge candidates


def _s1_supernet(**kwargs):
    space = RDartsSpace("s1", channels=4, layers=2)
    return space, space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=3, image_size=8, **kwargs)


def test_s1_candidates_are_the_released_ones():
    assert {cell: list(ops) for cell, ops in RDARTS_S1_EDGE_OPS.items()} == S1
    space = get_space("rdarts_s1")
    assert isinstance(space, RDartsSpace) and space.nodes == 4
    assert space.edge_op_names() == {cell: [tuple(ops) for ops in S1[cell]] for cell in S1}
    assert set(space.ops) == {op for rows in S1.values() for ops in rows for op in ops} and "none" not in space.ops


def test_s1_needs_four_nodes():
    with pytest.raises(ValueError, match="14 edges of a 4-node cell, got nodes=3: set the space's nodes to 4"):
        RDartsSpace("s1", nodes=3)


def test_s1_supernet_edges_have_exactly_their_released_candidates():
    _, net = _s1_supernet()
    assert net.alpha_normal.shape == net.alpha_reduce.shape == (14, 2)
    assert net.edge_op_names() == {cell: [tuple(ops) for ops in S1[cell]] for cell in S1}
    for cell in net.cells:
        expected = S1["reduce" if cell.reduction else "normal"]
        assert [edge.op_names for edge in cell.edges] == [tuple(ops) for ops in expected]
        for edge, ops in zip(cell.edges, expected):
            assert isinstance(edge, MixedEdge) and len(edge.ops) == 2 and edge.op_indices == (0, 1)
            assert [type(op).__name__ for op in edge.ops] == [type(build_op(name, 4, edge.stride, False)).__name__
                                                              for name in ops] or any("pool" in o for o in ops)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert net.space_signature()["edge_ops"] == {cell: [list(ops) for ops in S1[cell]] for cell in S1}


@pytest.mark.parametrize("column", [0, 1])
def test_s1_derivation_maps_each_column_to_its_edges_op(column):
    """With column ``column`` strongest on every edge, every derived edge holds its own ``column``-th op."""
    space, net = _s1_supernet()
    with torch.no_grad():
        net.alpha_normal.normal_(0, 1)
        net.alpha_reduce.normal_(0, 1)
        net.alpha_normal[:, column] = 10.0
        net.alpha_reduce[:, column] = 10.0
    genotype = net.genotype()
    _s1_allowed(genotype)
    for cell, edges in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        for k, (op, src) in enumerate(edges):
            assert op == S1[cell][LABELS.index(f"{src}-{2 + k // 2}")][column]
    # the single path of the derived cells is one-hot on those columns, and the evaluation network builds
    path = net.path(genotype)
    assert path["normal"].sum() == 8 and set(path["normal"].nonzero()[:, 1].tolist()) == {column}
    eval_net = space.build_network(genotype, num_classes=3, in_channels=1, image_size=8, channels=4, layers=2)
    assert eval_net(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_s1_path_refuses_an_op_the_edge_does_not_have():
    _, net = _s1_supernet()
    genotype = net.genotype()
    # edge 0-2 of the normal cell offers skip_connect and dil_conv_3x3 only
    bad = Genotype((("sep_conv_3x3", 0), ("skip_connect", 1)) + genotype.normal[2:], genotype.normal_concat,
                   genotype.reduce, genotype.reduce_concat)
    with pytest.raises(ValueError, match="edge 0-2 is not among that edge's ops"):
        net.path(bad)


@pytest.mark.parametrize("rule", ["gdas", "snas"])
def test_s1_other_genotype_rules_use_the_edges_candidates(rule):
    space = RDartsSpace("s1", channels=4, layers=2, genotype_rule=rule)
    net = space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=3)
    with torch.no_grad():
        net.alpha_normal.normal_(0, 3)
        net.alpha_reduce.normal_(0, 3)
    _s1_allowed(net.genotype())


def test_s1_discrete_side_draws_each_edge_from_its_candidates():
    space = get_space("rdarts_s1")
    generator = random.Random(0)
    assert space.decisions() == [n for i in range(4) for n in (len(space._pairs[i]), 2, 2)] * 2
    for _ in range(20):
        arch = space.sample(generator)
        _s1_allowed(arch)
        _s1_allowed(space.mutate(arch, generator))
        _s1_allowed(space.crossover(arch, space.sample(generator), generator))
        assert space.from_decisions(space.to_decisions(arch)) == arch
    neighbours = space.neighbours(arch)
    assert neighbours and all(space.key(n) != space.key(arch) for n in neighbours)
    for n in neighbours:
        _s1_allowed(n)
    # every edge's both ops are reachable: over many draws each edge of each cell shows both of its ops
    seen: dict[tuple[str, str], set[str]] = {}
    for _ in range(300):
        arch = space.sample(generator)
        for cell, edges in (("normal", arch.normal), ("reduce", arch.reduce)):
            for k, (op, src) in enumerate(edges):
                seen.setdefault((cell, f"{src}-{2 + k // 2}"), set()).add(op)
    assert seen == {(cell, label): set(S1[cell][e]) for cell in S1 for e, label in enumerate(LABELS)}


def test_s1_to_decisions_refuses_an_op_the_edge_does_not_have():
    space = get_space("rdarts_s1")
    arch = space.sample(random.Random(0))
    bad = Genotype((("avg_pool_3x3", 0), ("avg_pool_3x3", 1)) + arch.normal[2:], arch.normal_concat,
                   arch.reduce, arch.reduce_concat)
    with pytest.raises(ValueError, match="not among that edge's ops"):
        space.to_decisions(bad)


@pytest.mark.real_figures
def test_s1_diagnostics_and_layout_name_each_edges_ops():
    from darts_lightning import DARTSSearch
    from darts_lightning.differentiable.callbacks import ArchitectureFigures

    model = DARTSSearch(space=RDartsSpace("s1", channels=4, layers=2), in_channels=1, num_classes=3, image_size=8)
    diagnostics = model.architecture_diagnostics()
    alpha_tags = {tag for tag in diagnostics if tag.startswith("alpha/")}
    assert alpha_tags == {f"alpha/{cell}/{label}/{op}" for cell in S1 for label, ops in zip(LABELS, S1[cell])
                          for op in ops}
    weights = model.network.cell_weights()
    for cell in S1:
        for e, (label, ops) in enumerate(zip(LABELS, S1[cell])):
            assert [diagnostics[f"alpha/{cell}/{label}/{op}"] for op in ops] == pytest.approx(weights[cell][e].tolist())
    layout = ArchitectureFigures.alpha_layout(model.network)
    for cell in S1:
        for label, ops in zip(LABELS, S1[cell]):
            _, series = layout[f"alpha/{cell}"][label]
            assert [s.replace("\\", "") for s in series] == [f"alpha/{cell}/{label}/{op}$" for op in ops]
    figure = ArchitectureFigures._edge_ops_heatmaps({k: v.float() for k, v in weights.items()}, LABELS,
                                                    model.network.edge_op_names())
    (first,) = [ax for ax in figure.axes if ax.get_title() == "normal"]
    assert [t.get_text() for t in first.get_xticklabels()] == ["op 0", "op 1"]
    assert first.get_yticklabels()[0].get_text() == "0-2: skip_connect | dil_conv_3x3"

