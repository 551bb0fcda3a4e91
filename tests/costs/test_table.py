"""Costs per candidate op at its sites add up to the whole network's count, for every shipped space and the
user space in examples/; the expected cost is differentiable and meets the answer's cost at one-hot weights."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

from darts_lightning.costs import CostTable, MultiplyAdds, Parameters, get_cost_model
from darts_lightning.spaces import DartsSpace, NB201Space, RDartsSpace, SearchSpace
from darts_lightning.spaces.mixing import SoftmaxRelaxation

REPO = Path(__file__).resolve().parents[2]


def _mobile_space(channels: int) -> SearchSpace:
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import mobile_space
    finally:
        sys.path.remove(str(REPO / "examples"))
    return mobile_space.MobileSpace(channels=channels)


#: (space, data shape, network size) of each case: tiny digits networks and one CIFAR-sized DARTS network
CASES = {
    "darts": (lambda: DartsSpace(channels=4, layers=3), (1, 8), dict(channels=4, layers=3)),
    "darts_cifar": (lambda: DartsSpace(), (3, 32), dict(channels=16, layers=8)),
    "rdarts_s1": (lambda: RDartsSpace("s1", channels=4, layers=3), (1, 8), dict(channels=4, layers=3)),
    "nasbench201": (lambda: NB201Space(channels=4, cells_per_stage=1), (1, 8), dict(channels=4, layers=2)),
    "mobile": (lambda: _mobile_space(4), (1, 8), dict(channels=4, layers=2)),
}


@pytest.mark.parametrize("model", ["parameters", "multiply_adds"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_per_op_costs_add_up_to_the_whole_network(case, model):
    make, (in_channels, image_size), size = CASES[case]
    space = make()
    table = CostTable.build(space, model, in_channels=in_channels, num_classes=10, image_size=image_size, **size)
    measure = get_cost_model(model)
    costs = []
    for seed in range(1, 4 if case == "darts_cifar" else 6):
        arch = space.sample(random.Random(seed))
        network = space.build_network(arch, num_classes=10, in_channels=in_channels, image_size=image_size, **size)
        whole = measure.measure(network, (in_channels, image_size, image_size))
        assert table.arch_cost(arch) == pytest.approx(whole, rel=1e-9, abs=1e-6), f"{case} {arch}"
        costs.append(whole)
    assert len(set(costs)) > 1, "the sampled networks differ in cost, so the ops are priced, not just the fixed parts"
    assert 0 < table.cheapest() <= min(costs)


def test_the_parameter_and_multiply_add_counts_are_those_of_the_network():
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.Flatten(),
                                  torch.nn.Linear(8 * 4 * 4, 10))
    assert Parameters().measure(network, (3, 4, 4)) == 3 * 8 * 9 + 128 * 10 + 10
    assert MultiplyAdds().measure(network, (3, 4, 4)) == 3 * 8 * 9 * 16 + 128 * 10
    with pytest.raises(ValueError, match="unknown cost model 'latencyy'; valid cost models are: latency, multiply_adds, "
                                         "parameters"):
        get_cost_model("latencyy")


@pytest.mark.parametrize("case", ["darts", "nasbench201", "mobile"])
def test_the_expected_cost_is_differentiable_and_meets_the_answer_at_one_hot_weights(case):
    make, (in_channels, image_size), size = CASES[case]
    space = make()
    supernet = space.build_supernet(SoftmaxRelaxation(), in_channels=in_channels, num_classes=10, image_size=image_size)
    table = CostTable.build(space, "multiply_adds", in_channels=in_channels, num_classes=10, image_size=image_size,
                            supernet=supernet, **size)
    expected = table.cost(supernet.expected_path(supernet.cell_weights(detach=False)))
    expected.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in supernet.arch_parameters())
    if case != "darts":  # every edge kept: one-hot weights are the answer's path
        arch = space.sample(random.Random(0))
        rows = {cell: 1e4 * (r - 0.5) for cell, r in supernet.path(arch).items()}
        one_hot = table.cost(supernet.expected_path({c: torch.softmax(r.double(), -1) for c, r in rows.items()}))
        assert float(one_hot) == pytest.approx(table.arch_cost(arch), rel=1e-9)


def test_a_space_that_does_not_say_where_its_ops_run_cannot_be_priced():
    class Unpriced(NB201Space):
        name = "unpriced"

        op_sites = SearchSpace.op_sites

    with pytest.raises(NotImplementedError, match="the unpriced space does not say where its ops run.*implement op_sites"):
        CostTable.build(Unpriced(channels=4, cells_per_stage=1), "parameters", in_channels=1, num_classes=10, image_size=8)


def test_an_op_the_cost_model_cannot_run_is_named_with_its_site():
    space = DartsSpace(ops=["none", "tests.custom_ops:broken", "skip_connect"], channels=4, layers=3, nodes=2, multiplier=2)
    with pytest.raises(ValueError, match=r"cannot measure the op 'tests.custom_ops:broken' at 4 channels, stride 1, 8x8 "
                                         r"input \(RuntimeError: no kernel for this input\)"):
        CostTable.build(space, "multiply_adds", in_channels=1, num_classes=10, image_size=8, channels=4, layers=3)
