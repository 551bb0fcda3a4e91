"""Tests of darts_lightning.spaces.darts.supernet: the DARTS supernet."""

from __future__ import annotations

import pytest
import torch

from darts_lightning.spaces.cell import SearchCell
from darts_lightning.spaces.darts.supernet import SearchNetwork, check_image_size, reduction_layers
from darts_lightning.spaces.ops import DARTS_OPS, NB201_OPS, FactorizedReduce, ReLUConvBN


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
    mixing = net.mixing()
    normal, reduce = mixing["normal"].weights, mixing["reduce"].weights
    assert mixing["normal"].columns is None and mixing["reduce"].columns is None  # every op is computed
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
    from darts_lightning.spaces.darts.supernet import edge_normalization_weights

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


# --------------------------------------------------------------------------- options of the released methods


def _pool_ops(network):
    from darts_lightning.spaces.edges import MixedEdge

    edges = [m for m in network.modules() if isinstance(m, MixedEdge)]
    return [edge.ops[edge.op_indices.index(edge.op_names.index("avg_pool_3x3"))] for edge in edges]


def test_pool_batch_norm_follows_each_method_and_space():
    from darts_lightning import DARTSSearch
    from darts_lightning.spaces import DartsSpace, NB201Space
    from darts_lightning.spaces.nasbench201 import NB201Supernet

    def has_bn(network):
        ops = _pool_ops(network)
        assert ops and len({isinstance(op, torch.nn.Sequential) for op in ops}) == 1
        return isinstance(ops[0], torch.nn.Sequential)

    assert has_bn(SearchNetwork(1, 10, channels=4, layers=2))  # DARTS, PC-DARTS, SNAS
    assert not has_bn(SearchNetwork(1, 10, channels=4, layers=2, pool_batch_norm=False))  # GDAS, DrNAS
    assert not has_bn(NB201Supernet(channels=(4, 8, 16), cells_per_stage=1))  # AutoDL's NAS-Bench-201 cells
    assert has_bn(NB201Supernet(channels=(4, 8, 16), cells_per_stage=1, pool_batch_norm=True))

    def search(space):
        return DARTSSearch(space=space, in_channels=1, num_classes=10, image_size=8).network

    assert has_bn(search(DartsSpace(channels=4, layers=2)))
    assert not has_bn(search(DartsSpace(channels=4, layers=2, pool_batch_norm=False)))
    assert not has_bn(search(NB201Space(channels=4, cells_per_stage=1)))
    assert has_bn(search(NB201Space(channels=4, cells_per_stage=1, pool_batch_norm=True)))


def test_last_activation_is_batch_norm_and_relu_before_the_pooling():
    torch.manual_seed(0)
    net = SearchNetwork(1, 10, channels=4, layers=2, last_activation=True)
    assert isinstance(net.last[0], torch.nn.BatchNorm2d) and net.last[0].affine and isinstance(net.last[1], torch.nn.ReLU)
    last_cell = []
    net.cells[-1].register_forward_hook(lambda m, i, out: last_cell.append(out))
    out = net(torch.randn(3, 1, 8, 8))
    bn = torch.nn.functional.batch_norm(last_cell[0], None, None, net.last[0].weight, net.last[0].bias, training=True)
    torch.testing.assert_close(out, net.classifier(torch.relu(bn).mean(dim=(2, 3))))
    assert isinstance(SearchNetwork(1, 10, channels=4, layers=2).last, torch.nn.Identity)


def test_search_drop_path_masks_come_from_the_sample_key_and_only_in_training():
    torch.manual_seed(0)
    net = SearchNetwork(1, 10, channels=4, layers=2, drop_path_prob=0.3)
    plain = SearchNetwork(1, 10, channels=4, layers=2)
    plain.load_state_dict(net.state_dict())
    x = torch.randn(4, 1, 8, 8)

    def run(network, key):
        network.set_sample_key(*key)
        return network(x)

    net.eval(), plain.eval()
    torch.testing.assert_close(run(net, (0, 1, 0)), run(plain, (0, 1, 0)))
    net.train(), plain.train()
    assert torch.equal(run(net, (0, 1, 0)), run(net, (0, 1, 0)))
    assert not torch.allclose(run(net, (0, 1, 0)), run(plain, (0, 1, 0)))
    assert not torch.equal(run(net, (0, 1, 0)), run(net, (0, 2, 0)))
    masks = net.drop_path_masks(4, x.device)
    assert masks.shape == (2, 14, 4) and set(masks.unique().tolist()) == {0.0, 1.0}


def test_snas_rule_keeps_none_as_the_released_code_does():
    """SNAS's ``Network.genotype`` (SNAS-Series 9a43adb, SNAS/model_search.py, lines 695-724) ranks the
    edges and picks their op over every op, ``none`` included. Golden: the answer of that method's source run
    on these log-alphas (torch.randn from a generator seeded 3, +1 on the ``none`` column of the normal cell)."""
    from darts_lightning.spaces.darts.supernet import snas_genes

    generator = torch.Generator().manual_seed(3)
    normal, reduce = torch.randn(14, 8, generator=generator), torch.randn(14, 8, generator=generator)
    normal[:, 0] += 1.0
    golden_normal = [("dil_conv_3x3", 0), ("none", 1), ("dil_conv_3x3", 1), ("none", 0), ("max_pool_3x3", 1),
                     ("none", 2), ("none", 0), ("sep_conv_3x3", 1)]
    golden_reduce = [("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("avg_pool_3x3", 0), ("avg_pool_3x3", 2),
                     ("dil_conv_5x5", 0), ("dil_conv_3x3", 3), ("sep_conv_3x3", 4), ("dil_conv_5x5", 0)]
    assert list(snas_genes(torch.softmax(normal, -1), DARTS_OPS, 4)) == golden_normal
    net = SearchNetwork(1, 10, channels=4, layers=2, genotype_rule="snas")
    with torch.no_grad():
        net.alpha_normal.copy_(normal)
        net.alpha_reduce.copy_(reduce)
    genotype = net.genotype()
    assert list(genotype.normal) == golden_normal and list(genotype.reduce) == golden_reduce
    assert "none" not in [op for op, _ in SearchNetwork(1, 10, channels=4, layers=2).genotype().normal]
