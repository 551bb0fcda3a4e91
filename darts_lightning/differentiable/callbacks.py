"""The side work of a differentiable search, as Lightning callbacks.

:class:`~darts_lightning.DARTSSearch` trains the supernet and keeps the history of its answers; everything
else around it is a callback:

* :class:`AnswerFiles`: the answer, its drawing and the history in the run's log directory, every epoch;
* :class:`ArchitectureFigures`: the α heatmap, α grouped into one chart per edge, the answer's text and drawing in
  TensorBoard;
* :class:`SearchSummary`: the summary printed at the end;
  (these three are the search's defaults, :meth:`DARTSSearch.configure_callbacks`; a trainer callback of
  the same class replaces the default);
* :class:`HessianEigenvalue`: R-DARTS's dominant eigenvalue of the architecture Hessian, and its early
  stopping (DARTS-ES);
* :class:`CompileSupernet`: ``torch.compile`` the supernet.

The callbacks talk to the search through a small interface: ``space``, ``network``, ``genotype_history``,
``selected_epoch``, ``selected_answer()``, ``architecture_diagnostics()`` and ``output_dir()``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Protocol

import pytorch_lightning as pl
import torch
from torch import Tensor

from darts_lightning.differentiable.diagnostics import EigenvalueEarlyStop, dominant_hessian_eigenvalue, eigenvalue_measured
from darts_lightning.spaces.base import SearchSpace
from darts_lightning.spaces.supernet import Supernet
from darts_lightning.utils.distributed import all_reduce_mean_, is_distributed
from darts_lightning.utils.files import atomic_write_text
from darts_lightning.utils.validation import check_choice, check_range

__all__ = ["AnswerFiles", "ArchitectureFigures", "SearchSummary", "HessianEigenvalue", "CompileSupernet", "Drawing"]


class SearchModule(Protocol):
    """What the callbacks read of a differentiable search."""

    space: SearchSpace[Any]
    network: Supernet
    genotype_history: list[dict[str, Any]]
    selected_epoch: int | None
    current_epoch: int

    def selected_answer(self) -> Any: ...

    def architecture_diagnostics(self) -> dict[str, float]: ...

    def output_dir(self) -> Path: ...

    def sample(self, phase: int, step: int | None = None) -> None: ...

    def layout(self, x: Tensor) -> Tensor: ...


class Drawing:
    """The drawing of an answer (a figure and its RGB pixels), redrawn only when the answer changed: drawing
    is most of the side work of an epoch, and the answer often stays the same for many epochs."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._figure: Any = None
        self._pixels: Any = None

    def get(self, space: SearchSpace[Any], answer: Any) -> tuple[Any, Any]:
        from darts_lightning.spaces.drawing import figure_to_array

        key = space.format(answer)
        if self._key != key:
            self._figure = space.draw(answer)
            self._pixels = figure_to_array(self._figure)
            self._key = key
        return self._figure, self._pixels


class AnswerFiles(pl.Callback):
    """Write the search's answer (``genotype.json`` for DARTS, ``arch.txt`` for NAS-Bench-201), its drawing
    (``genotype.png`` / ``arch.png``) and ``genotype_history.json`` into the run's log directory at the end of
    every epoch and of the fit (rank 0), so that an interrupted search leaves its latest answer."""

    def __init__(self) -> None:
        self.drawing = Drawing()
        self._saved: tuple[Path, str] | None = None  # (file, answer text) last drawn to a file

    def write(self, module: SearchModule) -> Path:
        """Write the files; returns the answer file."""
        from darts_lightning.spaces.drawing import save_png

        space, answer = module.space, module.selected_answer()
        directory = module.output_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = space.write(answer, directory)
        drawing = path.with_suffix(".png")
        text = space.format(answer)
        if self._saved != (drawing, text) or not drawing.is_file():
            save_png(self.drawing.get(space, answer)[0], drawing)
            self._saved = (drawing, text)
        atomic_write_text(directory / "genotype_history.json", json.dumps(module.genotype_history, indent=1) + "\n")
        return path

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.is_last_batch and trainer.is_global_zero:
            self.write(pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self.write(pl_module)


class ArchitectureFigures(pl.Callback):
    """At the end of every epoch, to every TensorBoard logger: the heatmap of the expected mixing weights
    (``alpha/heatmap``), the answer's text (``genotype``) and its drawing (``genotype/cells``).

    Once per run, at the start of the fit, it also writes TensorBoard's custom-scalar layout
    (:meth:`alpha_layout`): the search logs every op of every edge as its own scalar
    (``alpha/<cell>/<edge>/<op>``), hundreds of charts in the DARTS space; the layout groups them into one
    chart per edge (the CUSTOM SCALARS tab), where the competition between an edge's candidates shows.

    In a space whose edges have their own candidates (R-DARTS's S1), each edge's series and heatmap row are
    named by that edge's ops: the heatmap's columns are ``op 0``, ``op 1``, … and each row reads
    ``<edge>: <op 0> | <op 1> | …``.
    """

    def __init__(self) -> None:
        self.drawing = Drawing()

    @staticmethod
    def edge_op_names(network: Any) -> dict[str, list[tuple[str, ...]]]:
        """The op of every column of α per cell type and edge (:meth:`Supernet.edge_op_names`; a network
        without that method has ``op_names`` on every edge)."""
        if hasattr(network, "edge_op_names"):
            return network.edge_op_names()
        rows = len(network.edge_labels())
        return {cell: [tuple(network.op_names)] * rows for cell in network.cell_weights(detach=True)}

    @staticmethod
    def alpha_layout(network: Supernet, prefix: str = "") -> dict[str, dict[str, list[Any]]]:
        """The custom-scalar layout of α (``SummaryWriter.add_custom_scalars``): a category ``alpha/<cell>``
        per cell type, and in it a multiline chart per edge whose series are the edge's ops.

        The tags are those :meth:`DARTSSearch.architecture_diagnostics` logs (``prefix`` is the logger's
        prefix, joined with ``-`` as Lightning does). TensorBoard reads every series as a regular expression
        it matches at the start of the scalar tags, so each is the escaped tag anchored at its end: one op's
        series never picks up another op whose name starts the same.
        """
        labels, edge_ops = network.edge_labels(), ArchitectureFigures.edge_op_names(network)
        head = f"{prefix}-" if prefix else ""
        return {
            f"alpha/{cell}": {
                label: ["Multiline", [re.escape(f"{head}alpha/{cell}/{label}/{op}") + "$" for op in edge_ops[cell][e]]]
                for e, label in enumerate(labels)
            }
            for cell in network.cell_weights(detach=True)
        }

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        from pytorch_lightning.loggers import TensorBoardLogger

        module: SearchModule = pl_module
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                layout = self.alpha_layout(module.network, prefix=getattr(logger, "_prefix", "") or "")
                logger.experiment.add_custom_scalars(layout)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not (trainer.is_last_batch and trainer.is_global_zero):
            return
        from pytorch_lightning.loggers import TensorBoardLogger

        from darts_lightning.spaces.drawing import alpha_heatmap, alpha_heatmaps

        module: SearchModule = pl_module
        answer = module.selected_answer()
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            writer = logger.experiment
            weights = {k: v.float().cpu() for k, v in module.network.cell_weights(detach=True).items()}
            labels, ops = module.network.edge_labels(), module.network.op_names
            edge_ops = self.edge_op_names(module.network)
            if any(names != tuple(ops) for rows in edge_ops.values() for names in rows):
                figure = self._edge_ops_heatmaps(weights, labels, edge_ops)
            elif set(weights) == {"normal", "reduce"}:
                figure = alpha_heatmaps(weights["normal"], weights["reduce"], ops, labels)
            else:
                (name, w), = weights.items()
                figure = alpha_heatmap(w, ops, labels, title=name)
            writer.add_figure("alpha/heatmap", figure, module.current_epoch)
            writer.add_text("genotype", module.space.format(answer), module.current_epoch)
            writer.add_image("genotype/cells", self.drawing.get(module.space, answer)[1], module.current_epoch,
                             dataformats="HWC")


    @staticmethod
    def _edge_ops_heatmaps(
        weights: dict[str, Tensor], labels: list[str], edge_ops: dict[str, list[tuple[str, ...]]]
    ) -> Any:
        """One heatmap per cell type, side by side, when edges have their own candidates: columns ``op j``,
        rows labelled by the edge and its ops (a shared op axis would name the columns wrongly)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from darts_lightning.spaces.drawing import alpha_heatmap

        cols = max(w.shape[1] for w in weights.values())
        figure = Figure(figsize=(len(weights) * (5.0 + 0.75 * cols), 1.6 + 0.32 * len(labels)))
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, len(weights), squeeze=False)[0]
        for ax, (cell, w) in zip(axes, weights.items()):
            rows = [f"{label}: {' | '.join(names)}" for label, names in zip(labels, edge_ops[cell])]
            alpha_heatmap(w, [f"op {j}" for j in range(w.shape[1])], rows, title=cell, ax=ax)
        figure.tight_layout()
        return figure


class SearchSummary(pl.Callback):
    """Print what the search found at the end of the fit (rank 0): the answer, where it was written, how far
    α moved from its initialisation, the supernet's search-val accuracy and the early-stopped epoch."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        module: SearchModule = pl_module
        answer = module.selected_answer()
        diagnostics = module.architecture_diagnostics()
        n_ops = next(iter(module.network.cell_weights().values())).shape[1]  # candidates per edge
        val_acc = trainer.callback_metrics.get("val/acc")
        summary = [
            f"derived genotype: {module.space.format(answer)}",
            f"written to: {module.output_dir() / module.space.answer_file}",
            f"how far alpha moved (at initialisation: entropy {math.log(n_ops):.3f}, margin 0.000):",
        ]
        for cell in module.network.cell_weights():
            summary.append(
                f"  {cell:6s} entropy {diagnostics[f'arch/{cell}/entropy']:.3f}, "
                f"margin {diagnostics[f'arch/{cell}/margin']:.3f}, "
                f"skip_connect in derived cell {int(diagnostics[f'arch/{cell}/skip_connect'])}"
            )
        if val_acc is not None:
            summary.append(f"supernet search-val accuracy: {float(val_acc):.4f}")
        if module.selected_epoch is not None:
            summary.append(f"early-stopped: the genotype is that of epoch {module.selected_epoch}")
        print("\n".join(summary))


class HessianEigenvalue(pl.Callback):
    """R-DARTS's diagnostic (Zela et al., ICLR 2020): log ``arch/hessian_eigenvalue``, the largest eigenvalue
    of the Hessian of the architecture loss L_val + arch_weight_decay / 2 · ‖α‖² w.r.t. α on the epoch's last
    search-val batch, at epochs 0, ``every``, 2 · ``every``, … and in the last epoch, as the R-DARTS code does
    (``every`` 2 there). See :mod:`darts_lightning.differentiable.diagnostics`.

    ``early_stop``: R-DARTS's DARTS-ES (:class:`~darts_lightning.differentiable.diagnostics.EigenvalueEarlyStop`):
    stop when the local average of the eigenvalue over ``window`` measurements exceeds ``factor`` times the one
    ``delta`` measurements earlier, and return the answer of the epoch that earlier average is centred on,
    provided that epoch is at least ``start_epoch`` (the R-DARTS code: every 2 epochs, window 5, delta 4,
    factor 1.3, start epoch 10, so at the earliest it stops at epoch 22 and returns epoch 10; never in the
    last epoch). The chosen epoch is this callback's checkpoint state (``selected_epoch``), which
    ``darts-lightning export-genotype`` reads.
    """

    def __init__(
        self, every: int = 2, early_stop: bool = False, window: int = 5, delta: int = 4, factor: float = 1.3,
        start_epoch: int = 10,
    ) -> None:
        check_range("every", every, 1, integer=True, hint="the eigenvalue is measured every `every` epochs (R-DARTS: 2)")
        check_choice("early_stop", early_stop, (True, False))
        self.every = every
        rule = EigenvalueEarlyStop(window, delta, factor, start_epoch, every=every)  # checks the settings either way
        self.rule = rule if early_stop else None
        self.history: list[dict[str, float]] = []
        self.selected_epoch: int | None = None

    @property
    def state_key(self) -> str:
        return "HessianEigenvalue"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        pl_module.selected_epoch = self.selected_epoch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        module: SearchModule = pl_module
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        if not (trainer.is_last_batch and eigenvalue_measured(module.current_epoch, self.every, epochs)):
            return
        x, y = batch["val"]
        x = module.layout(x)
        module.sample(phase=3)
        weight_decay = float(pl_module.arch_optimizer.weight_decay)
        value = dominant_hessian_eigenvalue(module.network, x, y, weight_decay=weight_decay)
        if is_distributed():  # every rank measured its own batch: the mean, in float64 as it was computed
            mean = torch.tensor([value], dtype=torch.float64, device=x.device)
            all_reduce_mean_([mean])
            value = float(mean)
        pl_module.log("arch/hessian_eigenvalue", value, on_step=False, on_epoch=True, sync_dist=True)
        self.history.append({"epoch": module.current_epoch, "eigenvalue": value})
        if self.rule is not None and self.selected_epoch is None:
            selected = self.rule.check(self.history, epochs)
            if selected is not None:
                self.selected_epoch = module.selected_epoch = selected
                trainer.should_stop = True
                if trainer.is_global_zero:
                    print(
                        f"R-DARTS early stop at epoch {module.current_epoch}: the dominant eigenvalue grew by more than "
                        f"{self.rule.factor}x; the search returns the genotype of epoch {selected}"
                    )

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "selected_epoch": self.selected_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.selected_epoch = state_dict.get("selected_epoch")


class CompileSupernet(pl.Callback):
    """``torch.compile`` the supernet in place (``nn.Module.compile``: parameters, state dict and checkpoints
    are unchanged) when the run is set up.

    A search step launches thousands of small kernels, and on a GPU their launch overhead, not arithmetic,
    bounds it; compiling fuses them. The second order's functional passes go through the same compiled
    module. Refused for relaxations that compute a different sampled sub-network every step (GDAS), which
    would recompile every step.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        network = pl_module.network
        if not isinstance(network, Supernet):
            raise ValueError("CompileSupernet compiles the supernet of a differentiable search (DARTSSearch)")
        if network.relaxation.computes_subset:
            raise ValueError(
                f"compile cannot be used with the {network.relaxation.name} relaxation: every step computes a "
                "different sampled sub-network, which torch.compile would recompile at every step; remove CompileSupernet"
            )
        if network._compiled_call_impl is None:
            network.compile()

