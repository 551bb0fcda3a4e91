"""Search spaces: encodings round-trip, mutation yields a valid different architecture, registry errors."""

from __future__ import annotations

import random

import pytest

from darts_lightning import Genotype
from darts_lightning.spaces import get_space, list_spaces


@pytest.mark.parametrize("name", ["darts", "nasbench201"])
def test_encodings_round_trip(name):
    space = get_space(name)
    generator = random.Random(0)
    for _ in range(50):
        arch = space.sample(generator)
        assert space.from_decisions(space.to_decisions(arch)) == arch
        assert space.parse(space.format(arch)) == arch
        decisions = space.to_decisions(arch)
        assert all(0 <= c < n for c, n in zip(decisions, space.decisions()))


@pytest.mark.parametrize("name", ["darts", "nasbench201"])
def test_mutation_yields_a_valid_different_architecture(name):
    space = get_space(name)
    generator = random.Random(1)
    for _ in range(100):
        arch = space.sample(generator)
        child = space.mutate(arch, generator)
        assert child != arch
        if name == "darts":  # every DARTS decision changes the function (NAS-Bench-201 has dead edges)
            assert space.key(child) != space.key(arch)
        assert sum(a != b for a, b in zip(space.to_decisions(arch), space.to_decisions(child))) == 1
        if name == "darts":
            child.validate(nodes=4)
        mixed = space.crossover(arch, child, generator)
        assert all(m in (a, b) for m, a, b in zip(space.to_decisions(mixed), space.to_decisions(arch), space.to_decisions(child)))


def test_darts_space_key_ignores_edge_order_within_a_node():
    space = get_space("darts")
    genotype = Genotype.published("DARTS_V2")
    swapped_normal = list(genotype.normal)
    swapped_normal[0], swapped_normal[1] = swapped_normal[1], swapped_normal[0]
    swapped = Genotype(tuple(swapped_normal), genotype.normal_concat, genotype.reduce, genotype.reduce_concat)
    assert swapped != genotype and space.key(swapped) == space.key(genotype)


def test_nb201_space_size_and_unknown_space():
    assert get_space("nasbench201").size() == 15625
    assert set(list_spaces()) >= {"darts", "nasbench201"}
    with pytest.raises(ValueError, match="unknown search space 'nb101'; valid spaces are: darts, nasbench201"):
        get_space("nb101")
