"""Search spaces: encodings round-trip, mutation yields a valid different architecture, registry errors."""

from __future__ import annotations

import random

import pytest
import torch

from darts_lightning import Genotype
from darts_lightning.spaces import DartsSpace, NB201Space, get_space, list_spaces
from darts_lightning.spaces.mixing import SoftmaxRelaxation


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


# --------------------------------------------------------------------------- the contract, for every space

TINY = {
    "darts": lambda: DartsSpace(channels=4, layers=3, nodes=3, multiplier=2),
    "nasbench201": lambda: NB201Space(channels=4, cells_per_stage=1),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_space_builds_its_networks_and_its_supernet_runs_its_answers(name):
    """What the searches and evaluators use, through the contract only: the network of an answer gives
    logits, and the supernet runs a sampled answer as a single path."""
    torch.manual_seed(0)
    space = TINY[name]()
    arch = space.sample(random.Random(0))
    x = torch.randn(2, 1, 8, 8)
    network = space.build_network(arch, num_classes=10, in_channels=1, image_size=8, channels=4, layers=3)
    logits = network.train()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 10)  # a plain classifier, in training too
    supernet = space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=10, image_size=8)
    assert supernet(x).shape == (2, 10)
    path = supernet.path(arch)
    assert set(path) == set(supernet.alphas()) and all(rows.device.type == "cpu" for rows in path.values())
    assert supernet(x, path=path).shape == (2, 10)
    assert space.ops_of(arch) and all(op in supernet.op_names for ops in space.ops_of(arch).values() for op in ops)


@pytest.mark.parametrize("name", sorted(TINY))
def test_answers_round_trip_through_files_records_and_configs(name, tmp_path):
    space = TINY[name]()
    arch = space.sample(random.Random(2))
    path = space.write(arch, tmp_path)
    assert path == tmp_path / space.answer_file
    assert space.read(path) == arch
    assert space.from_record(space.to_record(arch)) == arch
    rebuilt = get_space(space.config())
    assert type(rebuilt) is type(space) and rebuilt.config() == space.config() == rebuilt.signature()
    assert rebuilt.sample(random.Random(2)) == arch


def test_darts_answers_concatenate_what_the_supernet_concatenates():
    """With fewer concatenated nodes than nodes, sampled and decoded answers still run on the space's supernet."""
    space = DartsSpace(channels=4, layers=3, nodes=3, multiplier=2)
    supernet = space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=10, image_size=8)
    generator = random.Random(0)
    for _ in range(5):
        arch = space.sample(generator)
        assert arch.normal_concat == arch.reduce_concat == (3, 4)
        supernet.path(arch)  # no error
        assert space.from_decisions(space.to_decisions(arch)).normal_concat == (3, 4)


def test_darts_network_has_no_auxiliary_head_unless_asked():
    arch = Genotype.published("DARTS_V2")
    space = DartsSpace()
    assert space.build_network(arch, num_classes=10, channels=4, layers=3).auxiliary_head is None
    assert space.build_network(arch, num_classes=10, channels=4, layers=3, auxiliary=True).auxiliary_head is not None


def test_a_space_refuses_edge_normalization_for_a_relaxation_that_runs_paths_only():
    class PathsOnly(SoftmaxRelaxation):
        paths_only = True

    space = DartsSpace(channels=4, layers=3, edge_normalization=True)
    with pytest.raises(ValueError, match="edge_normalization .* single path does not use"):
        space.build_supernet(PathsOnly(), in_channels=1, num_classes=10)
    assert space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=10).edge_normalization
