"""Tests of darts_lightning.spaces.edges and darts_lightning.spaces.cell: mixed/fixed edges, search and genotype cells."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from darts_lightning.spaces import ops
from darts_lightning.spaces.cell import Cell, GenotypeCell, SearchCell, dense_edges
from darts_lightning.spaces.darts.genotype import Genotype
from darts_lightning.spaces.darts.supernet import SearchNetwork
from darts_lightning.spaces.edges import FixedEdge, MixedEdge
from darts_lightning.spaces.mixing import SoftmaxRelaxation
from darts_lightning.spaces.ops import DARTS_OPS, FactorizedReduce, Identity, ReLUConvBN, Zero

C = 8
# a cheaper candidate list for the cell-shape tests: a pool, skip (FactorizedReduce at stride 2), a conv
CELL_OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
NON_NONE = [(k, name) for k, name in enumerate(DARTS_OPS) if name != "none"]

DARTS_V2 = Genotype.published("DARTS_V2")


def one_hot_weights(column: int, num_ops: int = len(DARTS_OPS)) -> torch.Tensor:
    """An exact one-hot row produced the way the network produces weights: softmax of logits."""
    logits = torch.full((num_ops,), float("-inf"))
    logits[column] = 0.0
    weights = torch.softmax(logits, dim=-1)
    assert weights[column].item() == 1.0 and weights.sum().item() == 1.0
    return weights


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(2, C, 8, 8)


# --------------------------------------------------------------------------- MixedEdge


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("column,name", NON_NONE, ids=[n for _, n in NON_NONE])
def test_mixed_edge_one_hot_equals_single_op(column, name, stride, x):
    torch.manual_seed(1)
    edge = MixedEdge(DARTS_OPS, C, stride, SoftmaxRelaxation())
    op = edge.ops[edge.op_indices.index(column)]
    for train in (True, False):
        edge.train(train)
        out = edge(x, one_hot_weights(column))
        expected = op(x)
        assert out.shape == (2, C, 8 // stride, 8 // stride)
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_mixed_edge_is_weighted_sum(x):
    torch.manual_seed(2)
    edge = MixedEdge(DARTS_OPS, C, 1, SoftmaxRelaxation()).eval()
    weights = torch.softmax(torch.randn(len(DARTS_OPS)), dim=-1)
    expected = sum(weights[k] * op(x) for k, op in zip(edge.op_indices, edge.ops))
    torch.testing.assert_close(edge(x, weights), expected, atol=1e-5, rtol=1e-5)


def test_mixed_edge_ops_follow_registry_flags():
    edge = MixedEdge(DARTS_OPS, C, 2, SoftmaxRelaxation())
    assert edge.op_indices == tuple(k for k, _ in NON_NONE)
    for k, op in zip(edge.op_indices, edge.ops):
        name = DARTS_OPS[k]
        if name.endswith("pool_3x3"):
            # DARTS: pools get a non-affine BN inside the mixed edge
            assert isinstance(op, nn.Sequential) and isinstance(op[1], nn.BatchNorm2d)
            assert op[1].affine is False
        else:
            for m in op.modules():
                if isinstance(m, nn.BatchNorm2d):
                    assert m.affine is False  # ops are built with affine=False in the search
    assert isinstance(edge.ops[edge.op_indices.index(DARTS_OPS.index("skip_connect"))], FactorizedReduce)


def test_mixed_edge_holds_no_module_for_none():
    edge = MixedEdge(DARTS_OPS, C, 1, SoftmaxRelaxation())
    assert len(edge.ops) == len(DARTS_OPS) - 1
    assert DARTS_OPS.index("none") not in edge.op_indices
    assert not any(isinstance(m, Zero) for m in edge.modules())


@pytest.fixture
def zero_forward_raises(monkeypatch):
    def boom(self, x):
        raise AssertionError("a Zero op was called")

    monkeypatch.setattr(ops.Zero, "forward", boom)


def _count_calls(module: nn.Module):
    calls = []
    handles = [
        m.register_forward_hook(lambda mod, inp, out: calls.append(type(mod)))
        for m in module.modules()
    ]
    return calls, handles


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_edge_never_calls_zero(zero_forward_raises, x, stride):
    # sanity check of the fixture: a Zero module does raise now
    with pytest.raises(AssertionError, match="Zero"):
        Zero(1)(x)
    edge = MixedEdge(DARTS_OPS, C, stride, SoftmaxRelaxation())
    calls, handles = _count_calls(edge)
    op_calls = []
    # An op's last layer runs exactly when the op runs (ops that start with a ReLU share the edge's ReLU,
    # so their Sequential itself is not called).
    last_layers = [op[-1] if isinstance(op, nn.Sequential) else op for op in edge.ops]
    handles += [m.register_forward_hook(lambda mod, i, o: op_calls.append(id(mod))) for m in last_layers]
    out = edge(x, torch.softmax(torch.randn(len(DARTS_OPS)), dim=-1))
    for h in handles:
        h.remove()
    assert out.shape == (2, C, 8 // stride, 8 // stride)
    assert Zero not in calls
    # every op except `none` was called exactly once
    assert sorted(op_calls) == sorted(id(m) for m in last_layers)
    assert len(op_calls) == len(DARTS_OPS) - 1


def test_search_network_never_calls_zero(zero_forward_raises):
    torch.manual_seed(0)
    net = SearchNetwork(1, 10, channels=4, layers=3, nodes=2, multiplier=2, image_size=8)
    assert not any(isinstance(m, Zero) for m in net.modules())
    calls, handles = _count_calls(net)
    out = net(torch.randn(2, 1, 8, 8))
    for h in handles:
        h.remove()
    assert out.shape == (2, 10)
    assert Zero not in calls
    assert calls.count(MixedEdge) == 3 * 5  # every mixed edge (5 per 2-node cell) did run


@pytest.mark.parametrize("stride,size,expected", [(1, 8, 8), (2, 8, 4), (2, 7, 4)])
def test_none_only_edge_returns_zeros(stride, size, expected, zero_forward_raises):
    edge = MixedEdge(("none",), C, stride, SoftmaxRelaxation())
    assert len(edge.ops) == 0
    x = torch.randn(2, C, size, size) + 3.0
    out = edge(x, torch.ones(1))
    assert out.shape == (2, C, expected, expected)
    assert torch.count_nonzero(out) == 0
    # the stride-2 zeros match the size a strided 3x3 conv gives, so they add up with other edges
    conv = nn.Conv2d(C, C, 3, stride=stride, padding=1)
    assert conv(x).shape == out.shape


# --------------------------------------------------------------------------- FixedEdge


def test_fixed_edge_runs_its_op(x):
    edge = FixedEdge("max_pool_3x3", C, 2)
    assert isinstance(edge.op, nn.MaxPool2d)
    torch.testing.assert_close(edge(x), nn.functional.max_pool2d(x, 3, 2, 1))


def test_fixed_edge_drop_path_spares_identity():
    torch.manual_seed(0)
    x = torch.randn(16, C, 4, 4)
    skip = FixedEdge("skip_connect", C, 1).train()
    skip.drop_prob = 0.9
    assert torch.equal(skip(x), x)
    pool = FixedEdge("max_pool_3x3", C, 1).train()
    pool.drop_prob = 0.5
    out = pool(x)
    reference = pool.op(x)
    dropped = [bool(torch.count_nonzero(out[i]) == 0) for i in range(out.shape[0])]
    assert 0 < sum(dropped) < len(dropped)  # whole samples are dropped, not all of them
    for i, d in enumerate(dropped):
        if not d:
            torch.testing.assert_close(out[i], reference[i] / 0.5)  # survivors are rescaled
    pool.eval()
    assert torch.equal(pool(x), reference)  # no drop-path at evaluation


# --------------------------------------------------------------------------- SearchCell


def test_dense_edges_order():
    assert dense_edges(2) == [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    assert len(dense_edges(4)) == 14


@pytest.mark.parametrize("multiplier", [4, 2])
@pytest.mark.parametrize("reduction_prev", [False, True])
@pytest.mark.parametrize("reduction", [False, True])
def test_search_cell_output_shape(reduction, reduction_prev, multiplier):
    torch.manual_seed(0)
    c_pp, c_p, c = 6, 10, 4
    h = 8
    cell = SearchCell(
        c_pp, c_p, c, reduction=reduction, reduction_prev=reduction_prev, nodes=4,
        multiplier=multiplier, op_names=CELL_OPS, relaxation=SoftmaxRelaxation(),
    )
    assert cell.reduction is reduction
    assert isinstance(cell.preprocess[0], FactorizedReduce if reduction_prev else ReLUConvBN)
    assert cell.concat == tuple(range(6 - multiplier, 6))
    s0 = torch.randn(2, c_pp, 2 * h if reduction_prev else h, 2 * h if reduction_prev else h)
    s1 = torch.randn(2, c_p, h, h)
    weights = torch.softmax(torch.randn(14, len(CELL_OPS)), dim=-1)
    out = cell((s0, s1), weights)
    h_out = h // 2 if reduction else h
    assert out.shape == (2, multiplier * c, h_out, h_out)
    strides = [edge.stride for edge in cell.edges]
    assert strides == [2 if reduction and src < 2 else 1 for src, _ in dense_edges(4)]


def test_search_cell_rejects_bad_multiplier():
    with pytest.raises(ValueError, match="multiplier"):
        SearchCell(4, 4, 4, reduction=False, reduction_prev=False, nodes=4, multiplier=5,
                   op_names=DARTS_OPS, relaxation=SoftmaxRelaxation())


def test_cell_output_is_concat_of_nodes():
    # a tiny cell with identity edges: node 2 = s0 + s1, node 3 = s0 + s1 + node2
    edges = [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    cell = Cell([nn.Identity(), nn.Identity()], edges, [FixedEdge("skip_connect", 2, 1) for _ in edges], concat=[2, 3])
    s0, s1 = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4)
    out = cell((s0, s1))
    n2 = s0 + s1
    n3 = s0 + s1 + n2
    torch.testing.assert_close(out, torch.cat([n2, n3], dim=1))


# --------------------------------------------------------------------------- GenotypeCell


@pytest.mark.parametrize("reduction_prev", [False, True])
@pytest.mark.parametrize("reduction", [False, True])
def test_genotype_cell_builds_fixed_edges(reduction, reduction_prev):
    torch.manual_seed(0)
    c_pp, c_p, c, h = 6, 10, 4, 8
    genes = DARTS_V2.reduce if reduction else DARTS_V2.normal
    concat = DARTS_V2.reduce_concat if reduction else DARTS_V2.normal_concat
    cell = GenotypeCell(c_pp, c_p, c, edges=genes, concat=concat, reduction=reduction, reduction_prev=reduction_prev)
    assert len(cell.edges) == 8
    assert all(isinstance(e, FixedEdge) for e in cell.edges)
    assert not any(isinstance(m, MixedEdge) for m in cell.modules())
    assert [e.op_name for e in cell.edges] == [op for op, _ in genes]
    assert cell.edge_list == tuple((src, 2 + k // 2) for k, (_, src) in enumerate(genes))
    for edge, (op, src) in zip(cell.edges, genes):
        stride = 2 if reduction and src < 2 else 1
        if op == "skip_connect":
            assert isinstance(edge.op, FactorizedReduce if stride == 2 else Identity)
        elif op == "max_pool_3x3":
            assert isinstance(edge.op, nn.MaxPool2d) and edge.op.stride == stride
        else:
            assert edge.op[1].stride == (stride, stride)
            assert all(m.affine for m in edge.op.modules() if isinstance(m, nn.BatchNorm2d))
    s0 = torch.randn(2, c_pp, 2 * h if reduction_prev else h, 2 * h if reduction_prev else h)
    s1 = torch.randn(2, c_p, h, h)
    out = cell((s0, s1))
    h_out = h // 2 if reduction else h
    assert out.shape == (2, len(concat) * c, h_out, h_out)


def test_genotype_cell_partial_concat_shape():
    cell = GenotypeCell(4, 4, 4, edges=DARTS_V2.normal, concat=[4, 5], reduction=False, reduction_prev=False)
    out = cell((torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)))
    assert out.shape == (1, 8, 8, 8)


@pytest.mark.parametrize("src", [2, 3])
def test_genotype_cell_rejects_input_from_later_node(src):
    edges = [("sep_conv_3x3", 0), ("sep_conv_3x3", src), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]
    with pytest.raises(ValueError, match=f"edge {src}->2"):
        GenotypeCell(4, 4, 4, edges=edges, concat=[2, 3], reduction=False, reduction_prev=False)


def test_genotype_cell_rejects_odd_edge_count():
    with pytest.raises(ValueError, match="two edges per node"):
        GenotypeCell(4, 4, 4, edges=DARTS_V2.normal[:3], concat=[2], reduction=False, reduction_prev=False)


def test_genotype_cell_rejects_missing_concat_state():
    with pytest.raises(ValueError, match="concat state 6"):
        GenotypeCell(4, 4, 4, edges=DARTS_V2.normal, concat=[2, 6], reduction=False, reduction_prev=False)


def test_ops_starting_with_relu_share_one_relu_of_the_edge_input(x):
    edge = MixedEdge(DARTS_OPS, C, 1, SoftmaxRelaxation())
    relu_calls = []
    handles = [
        m.register_forward_hook(lambda mod, i, o: relu_calls.append(mod)) for m in edge.modules() if isinstance(m, nn.ReLU)
    ]
    outputs = dict(edge.weighted_outputs(x, torch.ones(len(DARTS_OPS))))
    for h in handles:
        h.remove()
    # the leading ReLUs of sep_conv_3x3/5x5 and dil_conv_3x3/5x5 are not called; only the sep convs' inner ones
    assert len(relu_calls) == 2
    assert set(outputs) == set(range(1, len(DARTS_OPS)))
    edge.eval()
    for fold in (False, True):  # weights without and with a gradient (the batch-norm folding)
        outputs = dict(edge.weighted_outputs(x, torch.ones(len(DARTS_OPS), requires_grad=fold)))
        for index, op in zip(edge.op_indices, edge.ops):
            torch.testing.assert_close(outputs[index], op(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_edge_folds_the_weight_into_the_last_batch_norm_exactly_and_keeps_less(stride):
    """w·BN(z) computed as BN(z) with weight w: the same output, gradients and running statistics as
    scaling each op's output, with fewer bytes kept for the backward pass."""
    from torch.autograd.graph import saved_tensors_hooks

    from darts_lightning.differentiable.relaxations import build_relaxation
    from darts_lightning.spaces.ops import DARTS_OPS

    torch.manual_seed(0)
    relaxation = build_relaxation("darts")
    folded, plain = MixedEdge(DARTS_OPS, 6, stride, relaxation), MixedEdge(DARTS_OPS, 6, stride, relaxation)
    plain.load_state_dict(folded.state_dict())
    x = torch.randn(4, 6, 8, 8, requires_grad=True)
    alpha = torch.randn(len(DARTS_OPS), requires_grad=True)

    def run(edge, fold):
        saved = []
        with saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
            weights = torch.softmax(alpha, 0)
            if fold:
                out = edge(x, weights)
            else:
                out = sum(weights[i] * edge.op_output(i, x) for i in edge.op_indices)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), [alpha, x])
        return out, grads, sum(saved)

    out_f, grads_f, bytes_f = run(folded, True)
    out_p, grads_p, bytes_p = run(plain, False)
    torch.testing.assert_close(out_f, out_p, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_f, grads_p):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    plain_state = plain.state_dict()
    for key, value in folded.state_dict().items():
        assert torch.equal(value, plain_state[key]), key
    # six of the seven computing ops end in a batch norm: their outputs are not kept for the gradient of w
    assert bytes_f < bytes_p - 5 * out_p.numel() * out_p.element_size()


# --------------------------------------------------------------------------- options of the released methods


@pytest.mark.parametrize("pool_batch_norm", [True, False])
def test_mixed_edge_pool_batch_norm_option(pool_batch_norm, x):
    edge = MixedEdge(DARTS_OPS, C, 1, SoftmaxRelaxation(), pool_batch_norm=pool_batch_norm)
    for name in ("max_pool_3x3", "avg_pool_3x3"):
        op = edge.ops[edge.op_indices.index(DARTS_OPS.index(name))]
        assert isinstance(op, nn.Sequential) == pool_batch_norm
        pool = op[0] if pool_batch_norm else op
        assert isinstance(pool, (nn.MaxPool2d, nn.AvgPool2d))
        if pool_batch_norm:
            assert isinstance(op[1], nn.BatchNorm2d) and not op[1].affine
    column = DARTS_OPS.index("avg_pool_3x3")
    expected = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    if pool_batch_norm:
        expected = torch.nn.functional.batch_norm(expected, None, None, training=True)
    torch.testing.assert_close(edge(x, one_hot_weights(column)), expected)


def test_cell_drop_path_masks_every_mixed_edge_per_sample():
    torch.manual_seed(0)
    cell = SearchCell(6, 6, 4, reduction=False, reduction_prev=False, nodes=2, multiplier=2, op_names=CELL_OPS,
                      relaxation=SoftmaxRelaxation()).eval()  # eval: each sample's output is its own
    s = (torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8))
    weights = torch.softmax(torch.randn(5, len(CELL_OPS)), dim=-1)
    plain = cell(s, weights)
    kept = cell(s, weights, drop_masks=torch.ones(5, 2), drop_prob=0.5)
    half = cell(s, weights, drop_masks=torch.tensor([[0.0, 1.0]] * 5), drop_prob=0.5)
    assert torch.equal(half[0], torch.zeros_like(half[0]))  # every edge of sample 0 dropped: its nodes are 0
    torch.testing.assert_close(half[1], kept[1])
    # the kept edges are scaled by 1 / (1 - p): node 2 (a sum of input edges) doubles
    torch.testing.assert_close(kept[:, :4], 2 * plain[:, :4])
