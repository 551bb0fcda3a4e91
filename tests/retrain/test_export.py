"""The deployable export of a retrained network (``export_network``): ``model.onnx`` and ``model.pt2`` for a DARTS
genotype, a NAS-Bench-201 cell and the user space of examples/mobile_space.py, each reproducing the network
at any batch size, and the figures of ``summary.json``."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import random
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from darts_lightning import ArchClassifier, GenotypeClassifier
from darts_lightning.retrain.module import DEPLOY_INSTALL, NetworkClassifier, export_network, onnx_latency
from darts_lightning.spaces.nasbench201 import NB201Space

REPO = Path(__file__).resolve().parents[2]
DIGITS = dict(in_channels=1, num_classes=10, image_size=8)
#: A cell with every NAS-Bench-201 op.
NB201_CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
SPACES = ["darts", "nasbench201", "mobile"]


@pytest.fixture(scope="module")
def mobile():
    """The example user space, imported by its module name as a user's code is."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO / "examples"))
        import mobile_space

        yield mobile_space


def classifier(name: str, mobile) -> NetworkClassifier:
    """A freshly built (untrained) classifier of the space ``name`` at C = 4 for the 8×8 digits."""
    if name == "darts":
        return GenotypeClassifier(genotype="DARTS_V2", channels=4, layers=3, **DIGITS)
    if name == "nasbench201":
        return ArchClassifier(space=NB201Space(channels=4, cells_per_stage=1), arch=NB201_CELL, **DIGITS)
    space = mobile.MobileSpace(channels=4)
    return ArchClassifier(space=space, arch=space.sample(random.Random(0)), **DIGITS)


@pytest.fixture(scope="module", params=SPACES)
def exported(request, mobile, tmp_path_factory):
    """``(model, export folder, written paths, printed text)`` of one space's export."""
    torch.manual_seed(0)
    model = classifier(request.param, mobile)
    directory = tmp_path_factory.mktemp(request.param)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        written = export_network(model, directory)
    return model, directory, written, printed.getvalue()


@functools.cache
def load_program(path: Path) -> torch.nn.Module:
    """The module of the torch.export program at ``path`` (loaded once for every test that runs it)."""
    return torch.export.load(str(path)).module()


def reference(model: NetworkClassifier, x: torch.Tensor) -> torch.Tensor:
    """The network's output in evaluation mode, which both programs are."""
    was_training = model.network.training
    model.network.eval()
    try:
        with torch.no_grad():
            return model.network(x)
    finally:
        model.network.train(was_training)


def test_both_exports_are_written_and_the_network_is_left_as_it_was(exported):
    model, directory, written, _ = exported
    failures = {p.name: p.read_text() for p in directory.glob("*_failed.txt")}
    assert not failures
    assert written["onnx"] == directory / "model.onnx" and written["onnx"].stat().st_size > 0
    assert written["torch_export"] == directory / "model.pt2" and written["torch_export"].stat().st_size > 0
    assert written["state_dict"].is_file() and written["answer"].is_file()
    assert not (directory / "model.torchscript.pt").exists()
    assert model.network.training  # the export ran on a copy in evaluation mode
    if isinstance(model, GenotypeClassifier):
        assert model.network.auxiliary_head is not None  # dropped from the copy only


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_reproduces_the_network_at_any_batch_size(exported, batch):
    model, _, written, _ = exported
    session = onnxruntime.InferenceSession(str(written["onnx"]), providers=["CPUExecutionProvider"])
    x = torch.randn(batch, 1, 8, 8)
    (logits,) = session.run(None, {"images": x.numpy()})
    assert logits.shape == (batch, 10)
    np.testing.assert_allclose(logits, reference(model, x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 3])
def test_the_torch_export_program_reproduces_the_network_at_any_batch_size(exported, batch):
    model, _, written, _ = exported
    x = torch.randn(batch, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(load_program(written["torch_export"])(x), reference(model, x), rtol=1e-4, atol=1e-4)


def test_the_summary_records_and_prints_the_figures(exported):
    model, directory, written, printed = exported
    assert written["summary"] == directory / "summary.json"
    summary = json.loads(written["summary"].read_text())
    # The deployed network: a DARTS network without its auxiliary head, which only training runs.
    deployed = [p for name, p in model.network.named_parameters() if not name.startswith("auxiliary_head.")]
    assert summary["parameters"] == sum(p.numel() for p in deployed)
    assert summary["parameters"] == sum(v.numel() for v in load_program(written["torch_export"]).parameters())
    assert summary["multiply_adds"] > 0 and summary["latency_ms"] > 0
    assert summary["input_shape"] == [1, 1, 8, 8]
    assert f"parameters     {summary['parameters']:,}" in printed
    assert f"multiply-adds  {summary['multiply_adds']:,}" in printed
    assert "latency" in printed and " ms " in printed


def test_without_the_deploy_packages_the_export_notes_why_and_goes_on(mobile, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else find_spec(name, *a))
    model = classifier("nasbench201", mobile)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        written = export_network(model, tmp_path)
    assert "onnx" not in written and "torch_export" in written
    assert DEPLOY_INSTALL in (tmp_path / "onnx_failed.txt").read_text()
    assert json.loads(written["summary"].read_text())["latency_ms"] is None
    assert "not measured (see onnx_failed.txt)" in printed.getvalue()


def test_the_latency_without_onnxruntime_is_a_clear_error(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # an import of it fails
    with pytest.raises(ImportError, match=r"onnxruntime: pip install darts-lightning\[deploy\]"):
        onnx_latency(exported[2]["onnx"])


def test_an_exporter_limitation_is_noted_and_a_failed_write_is_an_error(mobile, tmp_path, monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("an op the exporter cannot handle")

    monkeypatch.setattr(torch.export, "export", unsupported)
    model = classifier("nasbench201", mobile)
    with contextlib.redirect_stdout(io.StringIO()):
        written = export_network(model, tmp_path)
    assert "torch_export" not in written and written["state_dict"].is_file() and written["summary"].is_file()
    assert "an op the exporter cannot handle" in (tmp_path / "torch_export_failed.txt").read_text()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.export, "export", full_disk)
    with pytest.raises(OSError, match="No space left"), contextlib.redirect_stdout(io.StringIO()):
        export_network(model, tmp_path / "full")
