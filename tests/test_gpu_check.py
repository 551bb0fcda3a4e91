"""benchmarks/gpu_check.py, the GPU machine's one command: its smoke cases pass at quick sizes on a CPU, and
a case that fails is reported as such and fails the run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"

#: every smoke case, in running order: a case dropped from the script fails the first test
SEARCHES = ("darts_o1", "darts_o2_fd", "darts_o2_exact", "pcdarts", "gdas", "gdas_edge_norm", "snas", "drnas",
            "darts_minus", "beta_darts", "hessian_eigenvalue", "nb201_o1")
EXPECTED_SMOKE = [f"smoke/{name}/{precision}" for precision in ("fp32", "bf16") for name in SEARCHES] + [
    "smoke/retrain_darts_v2/fp32", "smoke/discrete_weight_sharing/fp32", "smoke/discrete_scratch/fp32",
    "smoke/ddp_darts_o1/fp32",
]


def _load(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_quick_smoke_cases_all_pass_on_a_cpu(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--cases", "smoke"],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = _records(result.stdout)
    assert [r["case"] for r in records] == EXPECTED_SMOKE
    failed = {r["case"]: r.get("error") for r in records if r["ok"] is not True}
    assert not failed, failed
    for r in records:
        assert r["device"] == "cpu" and r["quick"] is True and "error" not in r
        if r["case"].startswith(("smoke/darts", "smoke/gdas", "smoke/pcdarts")):
            assert r["arch_tensors_moved"] >= 2 and r["seconds_per_step"] > 0 and r["peak_memory_mb"] > 0
    assert records[0]["precision"] == "32-true" and records[len(SEARCHES)]["precision"] == "bf16-mixed"
    assert f"summary: {len(EXPECTED_SMOKE)}/{len(EXPECTED_SMOKE)} cases ok on cpu" in result.stdout
    assert "smoke/ddp_darts_o1/fp32" in result.stdout.split("summary:")[1], "the table lists every case"
    assert list(tmp_path.iterdir()) == [], "the cases write into temporary directories only"


def test_a_failing_case_is_reported_in_one_line_and_fails_the_run(monkeypatch, capsys, tmp_path):
    gpu_check = _load(monkeypatch)

    def boom(ctx):
        raise ValueError("wrong device\nsecond line")

    cases = [gpu_check.Case("smoke/boom", boom, {"kind": "test"}),
             gpu_check.Case("smoke/fine", lambda ctx: {"seconds_per_step": 0.5, "peak_memory_mb": 1.0})]
    monkeypatch.setattr(gpu_check, "build_cases", lambda settings: cases)
    out = tmp_path / "results.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--json-out", str(out)]) == 1
    stdout = capsys.readouterr().out
    boom_record, fine_record = _records(stdout)
    assert boom_record["case"] == "smoke/boom" and boom_record["ok"] is False
    assert boom_record["error"] == "ValueError: wrong device second line" and boom_record["kind"] == "test"
    assert fine_record["ok"] is True and fine_record["seconds_per_step"] == 0.5
    assert "summary: 1/2 cases ok" in stdout and "FAIL" in stdout
    assert [r["case"] for r in json.loads(out.read_text())] == ["smoke/boom", "smoke/fine"]

    assert gpu_check.main(["--device", "cpu", "--quick", "--cases", "fine$"]) == 0
    assert [r["case"] for r in _records(capsys.readouterr().out)] == ["smoke/fine"]
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--device", "cpu", "--quick", "--cases", "no-such-case"])
    assert exit_info.value.code == 2 and "matches no case" in capsys.readouterr().err
    odd = [gpu_check.Case("smoke/a(b", boom), *cases]
    assert [c.name for c in gpu_check.select(odd, "a(b")] == ["smoke/a(b"], "not a regular expression: a substring"


def test_a_case_past_its_time_limit_fails_and_the_spent_budget_skips_the_rest(monkeypatch, capsys):
    gpu_check = _load(monkeypatch)
    cases = [gpu_check.Case("speed/slow", lambda ctx: time.sleep(30) or {}),
             gpu_check.Case("speed/next", lambda ctx: {"seconds_per_step": 0.1})]
    monkeypatch.setattr(gpu_check, "build_cases", lambda settings: cases)
    start = time.monotonic()
    assert gpu_check.main(["--device", "cpu", "--quick", "--case-timeout", "1", "--time-budget", "1.5"]) == 1
    assert time.monotonic() - start < 10
    slow, following = _records(capsys.readouterr().out)
    assert slow["ok"] is False and slow["error"].startswith("CaseTimeout: the case ran past its time limit of 1 s")
    assert following["ok"] is False and following["error"].startswith("CaseSkipped: the --time-budget of 1.5 s was spent")


def test_placement_is_read_at_the_end_of_training_not_after_the_fit(monkeypatch, tmp_path):
    """Lightning's teardown moves the module back to the CPU when ``fit`` returns, so the check must read
    the devices while training still holds the module: a module that training leaves on the "meta" device
    (a stand-in for the accelerator) passes, while the same module after ``fit`` is on the CPU."""
    import pytorch_lightning as pl
    import torch
    from torch import nn

    gpu_check = _load(monkeypatch)

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 2)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def cpu(self):  # what the strategy's teardown calls; a meta tensor holds no data to copy
            return self.to_empty(device="cpu")

    class HeldOnMeta(pl.Callback):  # runs before the probe: where an accelerator would hold the module
        def on_train_end(self, trainer, pl_module):
            pl_module.to("meta")

    probe = gpu_check.PlacementProbe("meta")
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                         callbacks=[HeldOnMeta(), probe])
    model = Tiny()
    trainer.fit(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2))
    assert probe.misplaced == []  # recorded while training held the module
    gpu_check.check_fit_on_device(trainer)
    with pytest.raises(gpu_check.CheckFailed, match="not on meta"):
        gpu_check.check_on_device(model, "meta")  # after fit: moved back, which is why the probe exists

    probe.misplaced = ["layer.weight (cpu)"]
    with pytest.raises(gpu_check.CheckFailed, match="1 tensors were not on meta at the end of training"):
        gpu_check.check_fit_on_device(trainer)


def test_trainer_for_records_placement(monkeypatch, tmp_path):
    gpu_check = _load(monkeypatch)
    ctx = gpu_check.Context(gpu_check.Settings(device="cpu", quick=True, warmup=0, steps=1), tmp_path)
    trainer = gpu_check.trainer_for(ctx, max_steps=1)
    with pytest.raises(gpu_check.CheckFailed, match="training never ended"):
        gpu_check.check_fit_on_device(trainer)
