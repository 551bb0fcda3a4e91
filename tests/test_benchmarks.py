"""The benchmark scripts stay runnable: their methods are built from the shipped configs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from darts_lightning import DARTSSearch

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


search_step = _load("search_step")


@pytest.mark.parametrize("method", search_step.METHODS)
def test_search_step_builds_each_method_as_its_paper_config(method):
    kwargs = search_step.method_arguments(method)
    assert "channels" not in kwargs and "arch_warmup_epochs" not in kwargs
    model = DARTSSearch(1, 10, 8, channels=4, layers=2, **kwargs)
    expected_relaxation = {"pcdarts": "pcdarts", "gdas": "gdas", "snas": "snas", "drnas": "drnas"}.get(method, "darts")
    assert model.relaxation.name == expected_relaxation
    assert model.hparams.weight_lr == search_step.method_arguments(method)["weight_lr"]
