"""Discrete-encoding search as a LightningModule: one searcher, one evaluator, a budget.

Each training step proposes architectures until one is new (by the space's isomorphism-aware key),
evaluates it, and tells the searcher its reward. Re-proposed architectures are answered from the history
at no budget cost. The run stops when ``budget`` distinct architectures have been evaluated, when the
searcher reports convergence, when the best reward has not improved for ``patience`` evaluations, or
when ``max_samples`` proposals were made (a converged policy that keeps proposing known architectures
must not hang the run); each stop says why.

The loop is driven by batches: the data module's under the CLI (a lookup evaluator ignores their
content), else a loader of ``budget`` dummy steps; configs set ``max_epochs: -1`` and let the search
stop itself.

The full history (architecture, reward, cost, metrics) lives in the checkpoint together with the
searcher's state and random generator, so a resumed search neither re-evaluates nor forgets anything.
The best architecture is written into the run's log directory as ``best_arch.txt`` (its text form), as the
space's answer file (``genotype.json`` for the DARTS space, ``arch.txt`` for NAS-Bench-201, as a
differentiable search writes it) and drawn as ``best_arch.png``; the history goes to ``history.json``.

The search knows its space only through the :class:`~darts_lightning.spaces.SearchSpace` contract: any
registered or user-defined space runs with any searcher and evaluator.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, Generic

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from darts_lightning.discrete.evaluation import Evaluator
from darts_lightning.discrete.evaluators import build_evaluator
from darts_lightning.discrete.searchers import Searcher, build_searcher
from darts_lightning.spaces import SearchSpace, get_space
from darts_lightning.spaces.base import Arch
from darts_lightning.spaces.drawing import figure_to_array, save_png
from darts_lightning.utils.files import atomic_write_text, use_atomic_checkpoints
from darts_lightning.utils.resume import check_resume, record_module
from darts_lightning.utils.training import trainer_datamodule
from darts_lightning.utils.validation import check_range

__all__ = ["DiscreteSearch"]


class DiscreteSearch(pl.LightningModule, Generic[Arch]):
    """Run a discrete searcher against an evaluator.

    Args:
        space: the search space: a :class:`~darts_lightning.spaces.SearchSpace`, a registered name
            (``nasbench201``, ``darts``) or ``{"class_path", "init_args"}``; recorded in the hyperparameters
            as ``{"class_path", "init_args"}`` (plain data: checkpoints load with ``torch.load(weights_only=True)``).
        searcher: ``random`` (or another registered searcher); ``searcher_args`` go to its constructor.
        evaluator: ``lookup`` (or another registered evaluator); ``evaluator_args`` go to its constructor.
        budget: distinct architectures to evaluate.
        max_samples: cap on proposals (default: 50 × budget).
        patience: stop when the best reward has not improved for this many evaluations (None: never).
        seed: the searcher's random seed.
        checkpoint_every: save ``checkpoints/search_state.ckpt`` in the run's directory after every this
            many evaluations (None: only Lightning's own checkpoints), so that an interrupted search with
            a slow evaluator resumes from its last evaluation with ``fit --ckpt_path``.

    Resuming may raise the budget and the stopping rules (``RESUME_MAY_CHANGE``); every other setting must
    be the checkpoint's (:func:`darts_lightning.utils.resume.check_resume`).
    """

    #: "space" is compared by :meth:`resume_compared`, by meaning
    RESUME_MAY_CHANGE = frozenset({"budget", "max_samples", "patience", "checkpoint_every", "space"})

    def __init__(
        self,
        # Unparametrised: the command line builds a space from its class path only for the bare class.
        space: SearchSpace | str | Mapping[str, Any] = "nasbench201",
        searcher: str = "random",
        searcher_args: dict[str, Any] | None = None,
        evaluator: str = "lookup",
        evaluator_args: dict[str, Any] | None = None,
        budget: int = 100,
        max_samples: int | None = None,
        patience: int | None = None,
        seed: int = 0,
        checkpoint_every: int | None = 1,
    ) -> None:
        super().__init__()
        self.space: SearchSpace[Arch] = get_space(space)
        self.save_hyperparameters({
            "space": self.space.config(), "searcher": searcher, "searcher_args": searcher_args, "evaluator": evaluator,
            "evaluator_args": evaluator_args, "budget": budget, "max_samples": max_samples, "patience": patience,
            "seed": seed, "checkpoint_every": checkpoint_every,
        })
        self.automatic_optimization = False
        # Numbers first; the names and their arguments are checked by the registries (searcher_args and
        # evaluator_args against the constructors' keywords) before the evaluator reads anything.
        check_range("budget", budget, 1, integer=True)
        check_range("max_samples", max_samples, 1, integer=True, optional=True, hint="None: 50 × budget")
        check_range("patience", patience, 1, integer=True, optional=True, hint="None: never stop for lack of improvement")
        check_range("seed", seed, 0, integer=True)
        check_range("checkpoint_every", checkpoint_every, 1, integer=True, optional=True,
                    hint="None: only Lightning's own checkpoints")
        if budget > self.space.size():
            raise ValueError(
                f"budget {budget} exceeds the {self.space.name} space's {self.space.size()} architectures"
            )
        self.searcher: Searcher[Arch] = build_searcher(searcher, self.space, seed=seed, **(searcher_args or {}))
        self.evaluator: Evaluator[Arch] = build_evaluator(evaluator, self.space, **(evaluator_args or {}))
        self.budget = budget
        self.max_samples = max_samples or 50 * budget
        self.patience = patience
        self.checkpoint_every = checkpoint_every
        self._state_path: Path | None = None
        self.history: list[dict[str, Any]] = []
        self.samples = 0
        self.stop_reason: str | None = None
        self._seen: dict[Hashable, float] = {}

    # ------------------------------------------------------------------ the loop

    def train_dataloader(self) -> DataLoader:
        # One step per evaluation (the batches themselves are not read); the loop stops itself when the budget is spent.
        return DataLoader(TensorDataset(torch.arange(self.budget)), batch_size=1)

    def configure_optimizers(self):
        return None

    def setup(self, stage: str) -> None:
        use_atomic_checkpoints(self.trainer)  # a full disk must not truncate checkpoints/search_state.ckpt
        super().setup(stage)

    def on_fit_start(self) -> None:
        # ``trainer.log_dir`` is a collective under DDP: every rank resolves it here.
        self._state_path = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "checkpoints" / "search_state.ckpt"

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.checkpoint_every and self.history and len(self.history) % self.checkpoint_every == 0:
            if self._state_path is None:
                raise RuntimeError("the search state is saved during a fit only (its path is set in on_fit_start)")
            self.trainer.save_checkpoint(self._state_path)

    def best(self) -> dict[str, Any] | None:
        """The history entry with the highest reward (the first one on ties)."""
        return max(self.history, key=lambda h: h["reward"]) if self.history else None

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self._should_stop():
            return
        while True:
            if self.samples >= self.max_samples:
                self._stop(f"{self.samples} proposals gave {len(self.history)} distinct architectures: "
                           "the searcher stopped finding new ones (raise max_samples to go on)")
                return
            arch = self.searcher.ask()
            self.samples += 1
            key = self.space.key(arch)
            if key in self._seen:
                self.searcher.tell(arch, self._seen[key])
                continue
            break
        evaluation = self.evaluator.evaluate(arch)
        self._seen[key] = evaluation.reward
        self.history.append({
            "arch": self.space.format(arch), "reward": evaluation.reward, "cost": evaluation.cost,
            "metrics": dict(evaluation.metrics), "sample": self.samples,
        })
        self.searcher.tell(arch, evaluation.reward)
        best = self.best()
        assert best is not None, "the history holds the evaluation just made"
        self.log_dict({"search/reward": evaluation.reward, "search/best_reward": best["reward"],
                       "search/evaluated": float(len(self.history))}, on_step=True, on_epoch=False, batch_size=1)
        self._should_stop()

    def _should_stop(self) -> bool:
        if self.stop_reason is not None:
            self.trainer.should_stop = True
            return True
        if len(self.history) >= self.budget:
            self._stop(f"budget of {self.budget} distinct architectures spent")
        elif self.searcher.converged():
            self._stop("the searcher converged")
        elif self.patience and len(self.history) > self.patience:
            best_at = max(range(len(self.history)), key=lambda i: (self.history[i]["reward"], -i))
            if len(self.history) - 1 - best_at >= self.patience:
                self._stop(f"no improvement in the last {self.patience} evaluations")
        return self.stop_reason is not None

    def _stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.trainer.should_stop = True

    # ------------------------------------------------------------------ results

    def on_fit_end(self) -> None:
        log_dir = self.trainer.log_dir
        if not self.trainer.is_global_zero:
            return
        best = self.best()
        print(f"search stopped: {self.stop_reason or 'end of the loop'}; "
              f"{len(self.history)} architectures evaluated in {self.samples} proposals")
        if best is None:
            return
        print(f"best reward {best['reward']:.4f}: {best['arch']}")
        directory = Path(log_dir or self.trainer.default_root_dir)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "best_arch.txt", best["arch"] + "\n")
        atomic_write_text(directory / "history.json", json.dumps(self.history, indent=1) + "\n")
        arch = self.space.parse(best["arch"])
        self.space.write(arch, directory)  # the space's answer file, which a retraining reads
        drawing = self.space.draw(arch)
        save_png(drawing, directory / "best_arch.png")
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if experiment is not None and hasattr(experiment, "add_text"):
                experiment.add_text("search/best_arch", best["arch"], self.global_step)
                experiment.add_histogram("search/rewards", torch.tensor([h["reward"] for h in self.history]), self.global_step)
                experiment.add_image("search/best_arch", figure_to_array(drawing), self.global_step, dataformats="HWC")

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_module(self, checkpoint)
        checkpoint["discrete_search"] = {
            "space": self.space.signature(), "history": self.history, "samples": self.samples,
            "searcher": self.searcher.state_dict(), "stop_reason": self.stop_reason,
        }

    def resume_compared(self, checkpoint: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """The space, compared as the space it builds: earlier versions recorded a registered space by its name
        (``"nasbench201"``), which is the space with its default arguments."""
        saved = (checkpoint.get("hyper_parameters") or {}).get("space")
        return {"space": (get_space(saved).config() if saved is not None else None, self.space.config())}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_resume(self, checkpoint, datamodule=trainer_datamodule(self._trainer))
        state = checkpoint["discrete_search"]
        # Earlier versions recorded a registered space by its name: the space with its default arguments.
        searched = get_space(state["space"]).signature() if isinstance(state["space"], str) else state["space"]
        if searched != self.space.signature():
            raise ValueError(
                f"the checkpoint searched the space {state['space']}, this model searches {self.space.signature()}: "
                "configure the checkpoint's space to resume"
            )
        self.history = list(state["history"])
        self.samples = state["samples"]
        # The stopping rules are checked again with the configured budget and rules (a resumed search may
        # raise them): the checkpoint's reason to stop holds only if they still say so.
        self.stop_reason = None
        self.searcher.load_state_dict(state["searcher"])
        self._seen = {self.space.key(self.space.parse(h["arch"])): h["reward"] for h in self.history}
