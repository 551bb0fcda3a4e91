"""Shared helpers: a tiny supernet and a quick CPU trainer for the digits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs in one worker per core (setup.cfg): one torch thread each, and the same for the
    # processes the tests start, so that the workers' spinning OpenMP threads never oversubscribe the cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

from darts_lightning import DARTSSearch, SearchDataModule

#: the slowest modules, which the workers take first (longest first): one of them run last would leave the other
#: core idle at the end of the suite; the Ray tests' instance then also starts while the rest is light
SLOW_MODULES = ("test_ray.py", "test_distributed.py", "test_gpu_check.py", "test_multinode.py", "test_notebooks.py",
                "test_protocol.py", "test_files.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slowest modules first (``--dist loadfile`` hands out modules in this order)."""
    order = {name: index for index, name in enumerate(SLOW_MODULES)}
    items.sort(key=lambda item: order.get(item.path.name, len(order)))


FIGURE_FUNCTIONS = ("draw_genotype", "draw_nb201_cell", "alpha_heatmap", "alpha_heatmaps")


def tiny_search(**overrides) -> DARTSSearch:
    """A 3-cell, 4-channel supernet for the 8×8 one-channel digits."""
    kwargs = dict(in_channels=1, num_classes=10, image_size=8, channels=4, layers=3, arch_lr=3e-2)
    kwargs.update(overrides)
    return DARTSSearch(**kwargs)


def quick_trainer(root, **overrides) -> pl.Trainer:
    kwargs = dict(
        accelerator="cpu", devices=1, max_epochs=2, limit_train_batches=3, limit_val_batches=2,
        default_root_dir=str(root), enable_progress_bar=False, enable_model_summary=False,
        deterministic=True, log_every_n_steps=1,
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)


@pytest.fixture
def digits() -> SearchDataModule:
    return SearchDataModule("digits", batch_size=16)


@pytest.fixture(scope="session", autouse=True)
def repository_stays_clean():
    """No test may write into the repository root (runs belong in tmp_path)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    before = {p.name for p in root.iterdir()}
    yield
    added = {p.name for p in root.iterdir()} - before - {".pytest_cache", "__pycache__"}
    assert not added, f"tests wrote into the repository root: {sorted(added)}"


@pytest.fixture(autouse=True)
def placeholder_figures(request, monkeypatch):
    """Runs inside tests draw placeholder figures: rendering the α heatmaps and the cell drawings is most of
    a tiny search's time. The figures themselves are tested by tests/spaces/test_drawing.py, and the tests marked
    ``real_figures`` (and the notebook) run searches with the real ones. Everything around the drawing
    (TensorBoard images, PNG files, the export's drawing) still runs, on a small blank figure."""
    if request.node.get_closest_marker("real_figures"):
        return
    from darts_lightning.spaces import drawing as visualize

    def placeholder(*args, **kwargs):
        figure = visualize._new_figure(1.0, 1.0, dpi=16)
        path = kwargs.get("path", args[1] if len(args) > 1 and isinstance(args[1], (str, Path)) else None)
        if path is not None:
            visualize.save_png(figure, path)
        return figure

    for name in FIGURE_FUNCTIONS:
        monkeypatch.setattr(visualize, name, placeholder)
