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
