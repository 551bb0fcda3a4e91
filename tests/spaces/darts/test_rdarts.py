"""R-DARTS's spaces S2-S4 and its ``noise`` op, against the released definitions (automl/RobustDARTS, commit
3dec3fe: src/spaces.py, lines 63-78; src/operations.py, lines 7 and 26-39)."""

from __future__ import annotations

import random

import pytest
import torch

from darts_lightning import RDartsSpace, get_space
from darts_lightning.spaces.base import SearchSpace
from darts_lightning.spaces.darts.rdarts import RDARTS_OPS
from darts_lightning.spaces.edges import MixedEdge
from darts_lightning.spaces.mixing import SoftmaxRelaxation
from darts_lightning.spaces.ops import NoiseOp, build_op, get_op
from darts_lightning.utils.components import build_component

RELEASED = {
    "s2": ("skip_connect", "sep_conv_3x3"),
    "s3": ("none", "skip_connect", "sep_conv_3x3"),
    "s4": ("noise", "sep_conv_3x3"),
}


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


def test_s1_and_unknown_subspaces_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="subspace must be one of s2, s3, s4, got 's1'; S1 gives each edge"):
        RDartsSpace("s1")
