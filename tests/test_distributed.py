"""Multi-process (DDP, gloo, 2 ranks) behaviour of every search method: ranks must agree after every step."""

from __future__ import annotations

import pytest
import torch

from .multiprocess import run_scenarios


@pytest.fixture(scope="session")
def distributed_results(tmp_path_factory):
    return run_scenarios(tmp_path_factory.mktemp("ddp"))


def _ok(results: dict, name: str) -> list[dict]:
    ranks = results[name]
    for rank, result in enumerate(ranks):
        assert result["ok"], f"scenario {name!r} failed on rank {rank}:\n{result.get('error')}"
    return [r["value"] for r in ranks]


def _assert_ranks_agree(rank0: dict, rank1: dict) -> None:
    assert rank0["checksums"] == rank1["checksums"]
    assert rank0["state"].keys() == rank1["state"].keys()
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), f"{key} differs across ranks"


def test_first_order_darts_ranks_agree_after_every_step(distributed_results):
    rank0, rank1 = _ok(distributed_results, "darts_first_order")
    assert rank0["global_step"] == rank1["global_step"] == 6
    assert len(rank0["checksums"]) == 6
    assert rank0["checksums"] == rank1["checksums"]
    # The ranks trained on different shards of the data ...
    assert rank0["first_batch"] != rank1["first_batch"]
    # ... and still end with bit-identical α, weights, BN statistics and optimizer states.
    assert rank0["state"].keys() == rank1["state"].keys()
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), f"{key} differs across ranks"
    assert any(k.startswith("optimizer1/") for k in rank0["state"]), "the α optimizer state is compared too"
    assert any("running_mean" in k for k in rank0["state"])


def test_second_order_darts_ranks_agree_after_every_step(distributed_results):
    rank0, rank1 = _ok(distributed_results, "darts_second_order")
    assert rank0["global_step"] == rank1["global_step"] == 6
    _assert_ranks_agree(rank0, rank1)


def test_two_processes_equal_one_process_on_the_union_batch(distributed_results, tmp_path):
    """First order, batch norm from running statistics: averaging the ranks' gradients is the gradient
    of the union batch, so 2 × 8 samples per step give the run of 1 × 16."""
    from .scenarios import union_batch_run

    rank0, rank1 = _ok(distributed_results, "first_order_union_batch")
    single = union_batch_run(1, 0, tmp_path)
    for got, want in zip(rank0["alpha"] + rank0["weights"], single["alpha"] + single["weights"]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert not torch.equal(rank0["alpha"][0], torch.zeros_like(rank0["alpha"][0]))


def test_retraining_ranks_agree_after_every_step(distributed_results):
    rank0, rank1 = _ok(distributed_results, "retrain")
    assert rank0["global_step"] == rank1["global_step"] == 6
    params = [k for k in rank0["state"] if k.startswith("param/")]
    assert params
    _assert_ranks_agree(rank0, rank1)


def test_single_path_weight_sharing_ranks_sample_the_same_paths_and_agree(distributed_results):
    rank0, rank1 = _ok(distributed_results, "single_path_weight_sharing")
    assert rank0["global_step"] == rank1["global_step"] == 6
    # Every rank trained the same cell at every step: the path is a function of (seed, global step) ...
    assert rank0["paths"] == rank1["paths"] == rank0["expected_paths"]
    assert len(set(rank0["paths"])) > 1
    # ... on its own shard of the data ...
    assert rank0["first_batch"] != rank1["first_batch"]
    # ... and the ranks end with bit-identical weights, α, BN statistics and optimizer states.
    _assert_ranks_agree(rank0, rank1)
    assert any(k.startswith("optimizer0/") for k in rank0["state"])
    assert any("running_mean" in k for k in rank0["state"])
    # Weights off every trained path never moved (no gradient, no momentum, no weight decay) on any rank.
    for rank in (rank0, rank1):
        assert not [k for k, (on_a_path, moved) in rank["op_weights"].items() if moved and not on_a_path]
        assert any(moved for on_a_path, moved in rank["op_weights"].values())
        assert any(not on_a_path for on_a_path, moved in rank["op_weights"].values())


@pytest.mark.parametrize(
    "variant", ["pcdarts", "gdas", "snas", "drnas", "darts_minus_beta_decay", "sdarts_rs", "sdarts_adv"])
def test_darts_family_ranks_draw_the_same_samples_and_agree_after_every_step(distributed_results, variant):
    rank0, rank1 = _ok(distributed_results, f"family_{variant}")
    assert rank0["global_step"] == rank1["global_step"] == 6
    assert rank0["first_batch"] != rank1["first_batch"]
    # every rank draws the same sample at every step (seeded from the sample seed and the global step) ...
    assert rank0["samples"] == rank1["samples"]
    if variant in ("gdas", "snas", "drnas"):
        assert len({tuple(s) for s in rank0["samples"]}) > 1, "a new sample each step"
    if variant.startswith("sdarts"):
        # ... and the same perturbation of every weight step (the weight gradients are averaged, so ranks that
        # drew different noise would still agree on the weights below) ...
        assert len(rank0["perturbations"]) == len(rank1["perturbations"]) == 6
        for step, ((w0, p0), (w1, p1)) in enumerate(zip(rank0["perturbations"], rank1["perturbations"])):
            assert torch.equal(w0, w1) and torch.equal(p0, p1), f"the perturbation of step {step} differs across ranks"
        moved = [not torch.equal(w, p) for w, p in rank0["perturbations"]]
        assert all(moved) if variant == "sdarts_rs" else any(moved), "the weight step is perturbed"
        noise = [p - w for w, p in rank0["perturbations"]]
        assert not torch.equal(noise[0], noise[1]), "new noise each step"
    # ... and the ranks end with bit-identical α (β), weights, BN statistics and optimizer states
    _assert_ranks_agree(rank0, rank1)
