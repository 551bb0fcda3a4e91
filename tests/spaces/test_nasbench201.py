"""The NAS-Bench-201 space: string format, isomorphism key, the network from the shared cell code."""

from __future__ import annotations

import csv
import random

import pytest
import torch

from darts_lightning.discrete.evaluators import NB201_TABLE
from darts_lightning.spaces.cell import Cell
from darts_lightning.spaces.edges import FixedEdge, MixedEdge
from darts_lightning.spaces.nasbench201 import NB201Arch, NB201Network, NB201Supernet

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_string_round_trip_over_the_whole_table():
    with NB201_TABLE.open() as handle:
        archs = [row["arch"] for row in csv.DictReader(handle)]
    assert len(archs) == 15625
    assert all(str(NB201Arch.parse(a)) == a for a in archs)
    assert len({NB201Arch.parse(a) for a in archs}) == 15625


@pytest.mark.parametrize(
    "text, message",
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "3 nodes"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "node 2 .* 2 edges"),
        (EXAMPLE.replace("avg_pool_3x3~1", "avg_pool_3x3~0"), "must read '<op>~1'"),
        (EXAMPLE.replace("nor_conv_3x3~1", "conv_9x9~1"), "not in the NAS-Bench-201 space; valid ops are"),
        ("nor_conv_3x3~0+x+y", "must be written"),
    ],
)
def test_malformed_strings_are_clear_errors(text, message):
    with pytest.raises(ValueError, match=message):
        NB201Arch.parse(text)


def test_canonical_key_merges_isomorphic_cells_only():
    a = NB201Arch.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    # node 2 is zero, so its edge into node 3 changes nothing; the edge op from a zero state does not matter
    b = NB201Arch.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    assert a.canonical_key() == b.canonical_key()
    # summands commute
    c = NB201Arch.parse("|skip_connect~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|")
    d = NB201Arch.parse("|skip_connect~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|")
    assert c.canonical_key() == d.canonical_key()
    # different functions keep different keys
    assert a.canonical_key() != NB201Arch.parse(EXAMPLE).canonical_key()
    assert NB201Arch(("none",) * 6).canonical_key() == "0"


def test_mutation_is_valid_and_different_and_neighbours_differ_in_one_edge():
    generator = random.Random(0)
    for _ in range(200):
        arch = NB201Arch.sample(generator)
        child = arch.mutate(generator)
        assert child != arch and sum(x != y for x, y in zip(arch.ops, child.ops)) == 1
    neighbours = list(NB201Arch.parse(EXAMPLE).neighbours())
    assert len(neighbours) == 24 and len(set(neighbours)) == 24


def test_network_forward_shapes_and_shared_cell_code():
    torch.manual_seed(0)
    net = NB201Network(EXAMPLE, num_classes=10)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    cells = [m for m in net.layers if isinstance(m, Cell)]
    assert len(cells) == 15 and all(isinstance(e, FixedEdge) for c in cells for e in c.edges)
    assert [c.edges[0].op_name for c in cells[:1]] == ["nor_conv_3x3"]
    digits = NB201Network(EXAMPLE, num_classes=10, in_channels=1, channels=(8, 16, 32))
    assert digits(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    supernet = NB201Supernet(num_classes=10, channels=(8, 16, 32))
    assert supernet.alpha.shape == (6, 5)
    assert all(isinstance(e, MixedEdge) for m in supernet.layers if isinstance(m, Cell) for e in m.edges)
    assert supernet(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with torch.no_grad():
        supernet.alpha.zero_()
        supernet.alpha[:, 3] = 5.0  # nor_conv_3x3 everywhere
    assert str(supernet.derive()) == (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )


@pytest.mark.parametrize("size", [2, 6, 10])
def test_images_that_do_not_pass_the_two_reduction_blocks_are_a_clear_error(size):
    from darts_lightning.spaces import NB201Space
    from darts_lightning.spaces.mixing import SoftmaxRelaxation

    space = NB201Space(channels=4, cells_per_stage=1)
    with pytest.raises(ValueError, match=rf"{size}x{size} do not pass the two residual reduction blocks .* multiple of 4"):
        space.build_network(NB201Arch.parse(EXAMPLE), num_classes=10, image_size=size)
    with pytest.raises(ValueError, match="multiple of 4"):
        space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=10, image_size=size)
    for fits in (4, 8, 12):  # and such images do pass
        network = space.build_network(NB201Arch.parse(EXAMPLE), num_classes=10, in_channels=1, image_size=fits)
        assert network(torch.randn(2, 1, fits, fits)).shape == (2, 10)
