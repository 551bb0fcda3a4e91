"""Tests of darts_lightning.network: the DARTS supernet."""

from __future__ import annotations

import pytest
import torch

from darts_lightning.cell import SearchCell
from darts_lightning.network import SearchNetwork, check_image_size, reduction_layers
from darts_lightning.ops import DARTS_OPS, NB201_OPS, FactorizedReduce, ReLUConvBN


@pytest.mark.parametrize(
    "in_channels,size,layers,channels,batch,num_classes",
    [
        (1, 8, 3, 4, 2, 10),
        (1, 8, 5, 4, 3, 10),
        (3, 32, 8, 4, 2, 10),
        (1, 28, 5, 4, 2, 10),  # MNIST shape
    ],
)
def test_output_shape(in_channels, size, layers, channels, batch, num_classes):
    torch.manual_seed(0)
    net = SearchNetwork(in_channels, num_classes, channels=channels, layers=layers, image_size=size)
    assert len(net.cells) == layers
    out = net(torch.randn(batch, in_channels, size, size))
    assert out.shape == (batch, num_classes)
    assert torch.isfinite(out).all()


def test_output_shape_nb201_ops_and_small_cell():
    net = SearchNetwork(1, 3, channels=4, layers=3, nodes=2, multiplier=2, op_names=NB201_OPS, image_size=8)
    assert net.alpha_normal.shape == (5, len(NB201_OPS))  # 2 + 3 edges for 2 nodes
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert net.classifier.in_features == 2 * 4 * 4  # multiplier * (C doubled twice)


def test_channel_plan():
    net = SearchNetwork(3, 10, channels=4, layers=8)
    assert net.stem[0].out_channels == 3 * 4
    # C doubles at each reduction cell; the classifier sees multiplier * C_last channels
    assert [cell.preprocess[1][1].out_channels for cell in net.cells] == [4, 4, 8, 8, 8, 16, 16, 16]
    assert net.classifier.in_features == 4 * 16


# --------------------------------------------------------------------------- α


def test_alpha_shapes_and_init():
    torch.manual_seed(0)
    net = SearchNetwork(1, 10, channels=4, layers=3)
    assert len(net.arch_parameters()) == 2
    assert net.arch_parameters()[0] is net.alpha_normal and net.arch_parameters()[1] is net.alpha_reduce
    for alpha in net.arch_parameters():
        assert alpha.shape == (14, 8)
        assert alpha.requires_grad
        assert alpha.abs().max().item() < 1e-2
        assert 5e-4 < alpha.std().item() < 2e-3
    assert not torch.equal(net.alpha_normal, net.alpha_reduce)


def test_arch_and_weight_parameters_partition_parameters():
    net = SearchNetwork(1, 10, channels=4, layers=3)
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    everything = [id(p) for p in net.parameters()]
    assert len(everything) == len(set(everything))
    assert arch.isdisjoint(weights)
    assert arch | weights == set(everything)
    assert len(net.weight_parameters()) == len(everything) - 2
    names = [n for n, _ in net.named_weight_parameters()]
    assert "alpha_normal" not in names and "alpha_reduce" not in names


def test_detach_alpha_gives_no_alpha_gradient():
    torch.manual_seed(0)
    net = SearchNetwork(1, 10, channels=4, layers=3, nodes=2, multiplier=2)  # small: 5 edges per cell
    x = torch.randn(2, 1, 8, 8)
    net(x, detach_alpha=True).sum().backward()
    assert net.alpha_normal.grad is None and net.alpha_reduce.grad is None
    assert net.classifier.weight.grad is not None
    assert net.stem[0].weight.grad is not None

    net.zero_grad(set_to_none=True)
    net(x).sum().backward()
    for alpha in net.arch_parameters():
        assert alpha.grad is not None
        assert alpha.grad.abs().sum() > 0


def test_mixing_weights_are_softmax_of_alpha():
    net = SearchNetwork(1, 10, channels=4, layers=3)
    normal, reduce = net.mixing_weights()
    torch.testing.assert_close(normal, torch.softmax(net.alpha_normal, dim=-1))
    torch.testing.assert_close(reduce, torch.softmax(net.alpha_reduce, dim=-1))
    torch.testing.assert_close(normal.sum(-1), torch.ones(14))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("image_size", [2, 6])
def test_image_too_small(image_size):
    with pytest.raises(ValueError, match="reduction cells") as info:
        SearchNetwork(1, 10, channels=4, layers=8, image_size=image_size)
    assert str(image_size) in str(info.value)


def test_image_size_checks_allow_valid_sizes():
    for size, layers in ((8, 8), (4, 8), (28, 5), (32, 8), (2, 1)):
        check_image_size(size, layers)  # no error
    with pytest.raises(ValueError, match="reduction cells"):
        check_image_size(1, 1)


def test_unknown_op_lists_valid_ops():
    with pytest.raises(ValueError, match="unknown op 'conv_9x9'") as info:
        SearchNetwork(1, 10, channels=4, layers=3, op_names=["none", "conv_9x9"])
    for name in DARTS_OPS:
        assert name in str(info.value)


@pytest.mark.parametrize("arg", ["in_channels", "num_classes", "channels", "layers", "nodes"])
def test_non_positive_sizes_rejected(arg):
    kwargs = dict(in_channels=1, num_classes=10, channels=4, layers=3, nodes=4)
    kwargs[arg] = 0
    with pytest.raises(ValueError, match=arg):
        SearchNetwork(kwargs.pop("in_channels"), kwargs.pop("num_classes"), **kwargs)


# --------------------------------------------------------------------------- reduction cells


def test_reduction_cells_at_one_and_two_thirds():
    net = SearchNetwork(1, 10, channels=4, layers=8)
    assert [i for i, cell in enumerate(net.cells) if cell.reduction] == [2, 5]
    assert all(isinstance(cell, SearchCell) for cell in net.cells)
    # the cell after a reduction cell reduces its older input with a FactorizedReduce
    for i, cell in enumerate(net.cells):
        expected = FactorizedReduce if i in (3, 6) else ReLUConvBN
        assert isinstance(cell.preprocess[0], expected)


@pytest.mark.parametrize("layers,expected", [(8, (2, 5)), (5, (1, 3)), (3, (1, 2)), (20, (6, 13)), (1, (0,))])
def test_reduction_layers(layers, expected):
    assert reduction_layers(layers) == expected
    net_flags = [c.reduction for c in SearchNetwork(1, 2, channels=2, layers=layers, nodes=1, multiplier=1).cells]
    assert [i for i, f in enumerate(net_flags) if f] == list(expected)


def test_edge_normalization_weights_sum_to_one_per_node_and_scale_edges():
    from darts_lightning.network import edge_normalization_weights

    torch.manual_seed(0)
    beta = torch.randn(14)
    weights = edge_normalization_weights(beta, nodes=4)
    for start, width in ((0, 2), (2, 3), (5, 4), (9, 5)):
        assert torch.allclose(weights[start : start + width].sum(), torch.tensor(1.0))
        assert torch.allclose(weights[start : start + width], torch.softmax(beta[start : start + width], 0))
    with pytest.raises(ValueError, match="14 edges"):
        edge_normalization_weights(torch.zeros(13), nodes=4)

    net = SearchNetwork(1, 10, channels=4, layers=3, image_size=8, edge_normalization=True)
    names = list(net.named_arch_parameters())
    assert names == ["alpha_normal", "alpha_reduce", "beta_normal", "beta_reduce"]
    assert all(id(b) not in {id(p) for p in net.weight_parameters()} for b in (net.beta_normal, net.beta_reduce))
    loss = net(torch.randn(2, 1, 8, 8)).pow(2).sum()
    grads = torch.autograd.grad(loss, net.arch_parameters())
    assert all((g != 0).any() for g in grads)


def test_edge_normalization_ranks_edges_by_alpha_times_beta():
    net = SearchNetwork(1, 10, channels=4, layers=3, image_size=8, nodes=2, multiplier=2, edge_normalization=True)
    ops = list(net.op_names)
    with torch.no_grad():
        net.alpha_normal.zero_()
        net.beta_normal.zero_()
        # node 0 (edges 0, 1) and node 1 (edges 2, 3, 4): every edge prefers sep_conv_3x3 equally ...
        net.alpha_normal[:, ops.index("sep_conv_3x3")] = 2.0
        # ... except that edge 3 is much stronger in alpha; beta then demotes it below edges 2 and 4
        net.alpha_normal[3, ops.index("sep_conv_3x3")] = 3.0
    assert {src for _, src in net.genotype().normal[2:]} == {0, 1}  # alpha alone: edges 2 (0->3) and 3 (1->3)
    with torch.no_grad():
        net.beta_normal[3] = -5.0
    assert {src for _, src in net.genotype().normal[2:]} == {0, 2}  # edges 2 and 4 (2->3)
