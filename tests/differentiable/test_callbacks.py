"""The side work of the search as callbacks: answer files, the summary, R-DARTS's eigenvalue and compilation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import DARTSSearch, Genotype
from darts_lightning.differentiable.callbacks import (
    AnswerFiles,
    ArchitectureFigures,
    CompileSupernet,
    HessianEigenvalue,
    SearchSummary,
)
from darts_lightning.differentiable.optimizers import ArchOptimizer
from darts_lightning.differentiable.relaxations import GDASRelaxation
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.spaces.nasbench201 import NB201Arch, NB201Space
from tests.conftest import quick_trainer
from tests.searches import checkpointing, last_ckpt

PNG = b"\x89PNG\r\n\x1a\n"


def _search(space=None, **kwargs) -> DARTSSearch:
    """Two reduction cells of one node (a Hessian of 2 × 2 edges × 8 ops entries), or the given space."""
    space = space or DartsSpace(channels=4, layers=2, nodes=1, multiplier=1)
    return DARTSSearch(space=space, arch_optimizer=ArchOptimizer(lr=3e-2), in_channels=1, image_size=8, **kwargs)


def _record(model: DARTSSearch, epoch: int, answer) -> dict:
    return {"epoch": epoch, "step": epoch + 1, "genotype": model.space.to_record(answer)}


def test_answer_files_write_the_answer_its_drawing_and_the_history(tmp_path):
    model = _search(DartsSpace(channels=4, layers=2))
    model._output_dir = tmp_path / "run"
    model.genotype_history = [_record(model, 0, Genotype.resolve("DARTS_V2")), _record(model, 1, model.genotype())]
    written = AnswerFiles().write(model)
    assert written == tmp_path / "run" / "genotype.json"
    assert Genotype.load(written) == model.genotype()
    assert (tmp_path / "run" / "genotype.png").read_bytes()[:8] == PNG
    assert json.loads((tmp_path / "run" / "genotype_history.json").read_text()) == model.genotype_history

    # The answer is the selected one: after early stopping, that of the selected epoch.
    model.selected_epoch = 0
    AnswerFiles().write(model)
    assert Genotype.load(written) == Genotype.resolve("DARTS_V2")


def test_answer_files_of_the_nasbench201_space(tmp_path):
    model = _search(NB201Space(channels=4, cells_per_stage=1))
    model._output_dir = tmp_path
    model.genotype_history = [_record(model, 0, model.genotype())]
    assert AnswerFiles().write(model) == tmp_path / "arch.txt"
    assert NB201Arch.parse((tmp_path / "arch.txt").read_text()) == model.genotype()
    assert (tmp_path / "arch.png").read_bytes()[:8] == PNG


class _CountingAnswerFiles(AnswerFiles):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, module):
        self.writes += 1
        return super().write(module)


def test_a_trainer_callback_takes_the_place_of_the_default_one(tmp_path, digits):
    """The search adds AnswerFiles, ArchitectureFigures and SearchSummary; one given to the trainer (here a
    subclass) replaces the default, which would otherwise write the files a second time."""
    answer_files = _CountingAnswerFiles()
    model = _search(NB201Space(channels=4, cells_per_stage=1))
    trainer = quick_trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=0,
                            callbacks=[answer_files])
    trainer.fit(model, digits)
    assert [c for c in trainer.callbacks if isinstance(c, AnswerFiles)] == [answer_files]
    assert answer_files.writes == 3, "at the end of each epoch and of the fit"
    assert sum(isinstance(c, (ArchitectureFigures, SearchSummary)) for c in trainer.callbacks) == 2
    assert NB201Arch.parse((Path(trainer.log_dir) / "arch.txt").read_text()) == model.genotype()
    assert [h["epoch"] for h in json.loads((Path(trainer.log_dir) / "genotype_history.json").read_text())] == [0, 1]


def test_search_summary_prints_the_answer_and_the_early_stopped_epoch(tmp_path, capsys):
    model = _search(DartsSpace(channels=4, layers=2))
    model._output_dir = tmp_path
    model.genotype_history = [_record(model, 0, Genotype.resolve("DARTS_V2"))]
    model.selected_epoch = 0
    trainer = SimpleNamespace(is_global_zero=True, callback_metrics={"val/acc": torch.tensor(0.25)})
    SearchSummary().on_fit_end(trainer, model)
    out = capsys.readouterr().out
    assert f"derived genotype: {Genotype.resolve('DARTS_V2')!r}" in out
    assert f"written to: {tmp_path / 'genotype.json'}" in out
    assert "supernet search-val accuracy: 0.2500" in out
    assert "early-stopped: the genotype is that of epoch 0" in out
    SearchSummary().on_fit_end(SimpleNamespace(is_global_zero=False), model)
    assert capsys.readouterr().out == "", "only rank 0 prints"


def test_hessian_eigenvalue_logs_and_its_state_round_trips_through_a_checkpoint(tmp_path, digits):
    pl.seed_everything(0)
    eigenvalue = HessianEigenvalue(every=1)
    trainer = quick_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0,
                            callbacks=[eigenvalue, *checkpointing()])
    trainer.fit(_search(), digits)
    value = trainer.callback_metrics["arch/hessian_eigenvalue"]
    assert torch.isfinite(value) and value != 0
    assert [h["epoch"] for h in eigenvalue.history] == [0]
    assert float(value) == pytest.approx(eigenvalue.history[0]["eigenvalue"], rel=1e-6)
    saved = last_ckpt(trainer)
    checkpoint = torch.load(saved, weights_only=True)
    assert checkpoint["callbacks"]["HessianEigenvalue"] == {"history": eigenvalue.history, "selected_epoch": None}
    assert "eigenvalue_history" not in checkpoint and "selected_epoch" not in checkpoint

    resumed = HessianEigenvalue(every=1)
    trainer = quick_trainer(tmp_path / "resumed", max_epochs=2, limit_train_batches=2, limit_val_batches=0,
                            callbacks=[resumed])
    trainer.fit(_search(), digits, ckpt_path=saved)
    assert [h["epoch"] for h in resumed.history] == [0, 1]
    assert resumed.history[0] == eigenvalue.history[0], "the history before the checkpoint is restored"


def test_hessian_eigenvalue_hands_the_selected_epoch_to_the_search():
    eigenvalue = HessianEigenvalue(every=2, early_stop=True)
    eigenvalue.load_state_dict({"history": [{"epoch": 0, "eigenvalue": 1.0}], "selected_epoch": 3})
    assert eigenvalue.state_dict() == {"history": [{"epoch": 0, "eigenvalue": 1.0}], "selected_epoch": 3}
    assert eigenvalue.state_key == "HessianEigenvalue"
    model = _search()
    eigenvalue.on_fit_start(None, model)
    assert model.selected_epoch == 3
    assert HessianEigenvalue().rule is None and HessianEigenvalue(early_stop=True).rule.factor == 1.3


def test_compile_supernet_compiles_once_and_refuses_what_it_cannot_compile(monkeypatch):
    """``nn.Module.compile`` (in place) of the supernet, once; the compiled search itself runs in
    benchmarks/gpu_check.py (compiling a supernet takes minutes on a CPU)."""
    compiled = []

    def compile(self, *args, **kwargs):  # what nn.Module.compile records, without importing the compiler
        compiled.append(self)
        self._compiled_call_impl = self._call_impl

    monkeypatch.setattr(torch.nn.Module, "compile", compile)
    model = _search()
    CompileSupernet().setup(None, model, "fit")
    CompileSupernet().setup(None, model, "fit")
    assert compiled == [model.network], "the supernet, compiled once"
    gdas = _search(relaxation=GDASRelaxation())
    with pytest.raises(ValueError, match="compile cannot be used with the gdas relaxation: .*remove CompileSupernet"):
        CompileSupernet().setup(None, gdas, "fit")
    assert compiled == [model.network]
    with pytest.raises(ValueError, match="CompileSupernet compiles the supernet of a differentiable search"):
        CompileSupernet().setup(None, SimpleNamespace(network=torch.nn.Linear(2, 2)), "fit")


def _tensorboard_run(directory: Path) -> tuple[dict[str, dict[str, list[str]]], set[str]]:
    """The custom-scalar layout of the run's event file, as {category: {chart: series}}, and its scalar tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    (events,) = directory.rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    (config,) = accumulator.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    charts = {
        category.title: {chart.title: list(chart.multiline.tag) for chart in category.chart}
        for category in layout.category
    }
    return charts, set(accumulator.Tags()["scalars"])


@pytest.mark.parametrize("space", ["darts", "nasbench201"])
def test_architecture_figures_group_alpha_in_one_chart_per_edge(tmp_path, digits, space):
    """The custom-scalar layout written at the start of the run holds, per cell type, one chart per edge whose
    series pick up, as TensorBoard matches them, exactly the scalars logged for that edge's ops; with a
    logger's prefix too."""
    import re

    from pytorch_lightning.loggers import TensorBoardLogger

    model = _search(DartsSpace(channels=4, layers=2, nodes=1, multiplier=1) if space == "darts"
                    else NB201Space(channels=4, cells_per_stage=1))
    loggers = [TensorBoardLogger(tmp_path / "plain"), TensorBoardLogger(tmp_path / "prefixed", prefix="search")]
    trainer = quick_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=loggers)
    trainer.fit(model, digits)

    network = model.network
    cells = list(network.cell_weights())
    assert cells == (["normal", "reduce"] if space == "darts" else ["cell"])
    for directory, head in ((tmp_path / "plain", ""), (tmp_path / "prefixed", "search-")):
        charts, scalars = _tensorboard_run(directory)
        logged = {tag for tag in scalars if tag.startswith(f"{head}alpha/")}
        expected = {f"{head}alpha/{cell}/{edge}/{op}" for cell in cells for edge in network.edge_labels()
                    for op in network.op_names}
        assert logged == expected, "the search logs one scalar per cell type, edge and op"
        assert list(charts) == [f"alpha/{cell}" for cell in cells]
        for cell in cells:
            assert list(charts[f"alpha/{cell}"]) == network.edge_labels()
            for edge, series in charts[f"alpha/{cell}"].items():
                assert len(series) == len(network.op_names)
                for op, pattern in zip(network.op_names, series):
                    # TensorBoard's custom scalars: re.match of each series against the run's scalar tags
                    assert {tag for tag in scalars if re.match(pattern, tag)} == {f"{head}alpha/{cell}/{edge}/{op}"}


def test_alpha_layout_series_match_only_their_own_op():
    """An op whose name starts another's (``conv`` and ``conv_3x3``) still gets a series of its own: TensorBoard
    matches series at the start of the tags, so they are anchored at the end (and escaped)."""
    import re

    network = SimpleNamespace(edge_labels=lambda: ["0-2"], op_names=("conv", "conv_3x3"),
                              cell_weights=lambda detach=True: {"normal": torch.zeros(1, 2)})
    ((conv, conv_3x3),) = [series for _, series in ArchitectureFigures.alpha_layout(network)["alpha/normal"].values()]
    tags = ["alpha/normal/0-2/conv", "alpha/normal/0-2/conv_3x3"]
    assert [tag for tag in tags if re.match(conv, tag)] == tags[:1]
    assert [tag for tag in tags if re.match(conv_3x3, tag)] == tags[1:]
