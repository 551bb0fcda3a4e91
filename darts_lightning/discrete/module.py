"""Discrete-encoding search as a LightningModule: one searcher, one evaluator, a budget.

Each training step proposes architectures until one is new (by the space's isomorphism-aware key) and
within the cost budgets (``constraints``), evaluates it, and tells the searcher its reward
(:class:`~darts_lightning.discrete.loop.SearchLoop`). Re-proposed architectures are answered from the history
at no budget cost; architectures over a budget are recorded as refused, never evaluated, cost no budget
either, and the searcher is told so (:meth:`~darts_lightning.discrete.searchers.Searcher.reject`). The run
stops when ``budget`` distinct architectures have been evaluated, when the searcher reports convergence,
when the best reward has not improved for ``patience`` evaluations, or when ``max_samples`` proposals were
made (a converged policy that keeps proposing known architectures must not hang the run); each stop says why.

Costs (:mod:`~darts_lightning.discrete.constraints`): every history entry records the costs of the
constraints and ``objectives`` (``multiply_adds``, ``parameters``) of the network its architecture describes,
priced at the data's shape: the evaluator's data (the benchmark's data for the shipped NAS-Bench-201 table, the
data module of the weight-sharing and scratch evaluators) unless ``data_shape`` gives it. With objectives, the
Pareto front of the history (reward maximised, the objectives' costs minimised) is written to
``pareto_front.json`` and drawn to TensorBoard (``search/pareto_front``) at the end, for any searcher;
``pareto_evolution`` searches for it (:mod:`~darts_lightning.discrete.pareto`).

The loop is driven by batches: the data module's under the CLI (a lookup evaluator ignores their
content), else a loader of ``budget`` dummy steps; configs set ``max_epochs: -1`` and let the search
stop itself.

The full history (architecture, reward, cost, costs, metrics, refusals) lives in the checkpoint together with the
searcher's state and random generator, so a resumed search neither re-evaluates nor forgets anything.
The best architecture is written into the run's log directory as ``best_arch.txt`` (its text form), as the
space's answer file (``genotype.json`` for the DARTS space, ``arch.txt`` for NAS-Bench-201, as a
differentiable search writes it) and drawn as ``best_arch.png``; the history goes to ``history.json``.

The search knows its space only through the :class:`~darts_lightning.spaces.SearchSpace` contract: any
registered or user-defined space runs with any searcher and evaluator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Generic

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from darts_lightning.discrete.constraints import CostConstraint, CostObjective, Pricing, build_constraint, build_objective
from darts_lightning.discrete.evaluation import DataShape, Evaluator
from darts_lightning.discrete.evaluators import build_evaluator
from darts_lightning.discrete.executors import Executor, build_executor
from darts_lightning.discrete.fidelity import SuccessiveHalving, build_fidelity
from darts_lightning.discrete.loop import SearchLoop
from darts_lightning.discrete.pareto import draw_pareto_front, pareto_front
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
        constraints: cost budgets, each a :class:`~darts_lightning.discrete.constraints.CostConstraint`, its
            ``{"class_path", "init_args"}`` or its arguments (``{cost: multiply_adds, budget: 1.0e8, channels:
            null, layers: null}``): an architecture over one is refused before it is evaluated.
        objectives: costs recorded and minimised besides maximising the reward: cost model names
            (``[multiply_adds]``), :class:`~darts_lightning.discrete.constraints.CostObjective` or their
            arguments (``{cost: parameters, channels: 8}``). A multi-objective searcher (``pareto_evolution``)
            needs them; with any searcher they define the Pareto front the search writes.
        data_shape: ``{in_channels, num_classes, image_size}`` of the networks the costs are counted on;
            ``None``: the evaluator's (:meth:`~darts_lightning.discrete.evaluation.Evaluator.data_shape`),
            needed only with constraints or objectives. (Not named ``in_channels``/... because the command
            line links those to the data module, which only drives the loop of a lookup search.)
        executor: how the trials run (:mod:`darts_lightning.discrete.executors`): ``sequential`` (the default,
            in this process), an instance or ``{"class_path", "init_args"}``; its ``max_retries`` runs a trial
            again after its evaluator raised or gave a non-finite reward, and a trial that fails every attempt
            is recorded as failed and the search goes on. It may change when a search resumes.
        fidelity: successive halving over the evaluator's training epochs (ASHA,
            :class:`~darts_lightning.discrete.fidelity.SuccessiveHalving`, its ``{"class_path", "init_args"}``
            or its arguments ``{min_epochs: 1, max_epochs: 9, eta: 3}``), for an evaluator that trains
            (``scratch``); ``None``: every architecture is evaluated once, as configured.

    Resuming may raise the budget and the stopping rules (``RESUME_MAY_CHANGE``); every other setting, the
    constraints and objectives included, must be the checkpoint's (:func:`darts_lightning.utils.resume.check_resume`).
    """

    #: "space" is compared by :meth:`resume_compared`, by meaning
    RESUME_MAY_CHANGE = frozenset({"budget", "max_samples", "patience", "checkpoint_every", "space", "executor"})

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
        constraints: Sequence[CostConstraint | Mapping[str, Any]] | None = None,
        objectives: Sequence[str | CostObjective | Mapping[str, Any]] | None = None,
        data_shape: Mapping[str, int] | None = None,
        executor: str | Executor | Mapping[str, Any] | None = None,
        fidelity: SuccessiveHalving | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.space: SearchSpace[Arch] = get_space(space)
        self.executor: Executor = _named("executor", build_executor, executor)
        self.fidelity: SuccessiveHalving | None = _named("fidelity", build_fidelity, fidelity)
        self.constraints: list[CostConstraint] = [
            _named(f"constraints[{i}]", build_constraint, c) for i, c in enumerate(constraints or ())
        ]
        self.objectives: list[CostObjective] = [
            _named(f"objectives[{i}]", build_objective, o) for i, o in enumerate(objectives or ())
        ]
        if data_shape is not None:
            keys = ("in_channels", "num_classes", "image_size")
            if not isinstance(data_shape, Mapping) or set(data_shape) != set(keys):
                raise ValueError(f"data_shape must be a mapping with the keys {', '.join(keys)}, got {data_shape!r}")
            for key in keys:
                check_range(f"data_shape.{key}", data_shape[key], 2 if key == "num_classes" else 1, integer=True)
        self.save_hyperparameters({
            "space": self.space.config(), "searcher": searcher, "searcher_args": searcher_args, "evaluator": evaluator,
            "evaluator_args": evaluator_args, "budget": budget, "max_samples": max_samples, "patience": patience,
            "seed": seed, "checkpoint_every": checkpoint_every,
            "constraints": [c.config() for c in self.constraints] or None,
            "objectives": [o.config() for o in self.objectives] or None,
            "data_shape": dict(data_shape) if data_shape is not None else None,
            "executor": self.executor.config(),
            "fidelity": self.fidelity.config() if self.fidelity is not None else None,
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
        if self.searcher.uses_costs and not self.objectives:
            raise ValueError(
                f"the searcher {searcher!r} ranks architectures by their costs too: configure the search's objectives "
                "(e.g. objectives: [multiply_adds])"
            )
        self.evaluator: Evaluator[Arch] = build_evaluator(evaluator, self.space, **(evaluator_args or {}))
        self.budget = budget
        self.max_samples = max_samples or 50 * budget
        self.patience = patience
        self.checkpoint_every = checkpoint_every
        self.pricing: Pricing[Arch] | None = None
        if self.constraints or self.objectives:
            shape = DataShape(**data_shape) if data_shape is not None else self.evaluator.data_shape()
            if shape is None:
                raise ValueError(
                    f"the costs of the constraints and objectives are counted on networks for the data, whose shape "
                    f"the evaluator {evaluator!r} does not know: give data_shape={{in_channels: ..., num_classes: ..., "
                    "image_size: ...}} (the NAS-Bench-201 benchmark's: 3, 10, 32)"
                )
            self.pricing = Pricing(self.space, [*self.constraints, *self.objectives], shape)
        self.loop: SearchLoop[Arch] = SearchLoop(
            self.searcher, self.evaluator, max_samples=self.max_samples, pricing=self.pricing,
            constraints=self.constraints, objectives=list(dict.fromkeys(o.label for o in self.objectives)),
            executor=self.executor, fidelity=self.fidelity,
        )
        self._state_path: Path | None = None
        self.stop_reason: str | None = None

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every proposal recorded by the search (evaluated and refused, see :class:`SearchLoop`)."""
        return self.loop.history

    @property
    def samples(self) -> int:
        """Proposals made so far."""
        return self.loop.samples

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
        if self.checkpoint_every and self.loop.evaluated and self.loop.evaluated % self.checkpoint_every == 0:
            if self._state_path is None:
                raise RuntimeError("the search state is saved during a fit only (its path is set in on_fit_start)")
            self.trainer.save_checkpoint(self._state_path)

    def best(self) -> dict[str, Any] | None:
        """The evaluated history entry with the highest reward (the first one on ties)."""
        return self.loop.best()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self._should_stop():
            return
        entry = self.loop.step(self.budget)
        if entry is None:
            self._stop(self.loop.exhausted_reason())
            return
        best = self.best()
        assert best is not None, "the history holds the evaluation just made"
        logged = {"search/reward": entry["reward"], "search/best_reward": best["reward"],
                  "search/evaluated": float(self.loop.evaluated)}
        if self.constraints:
            logged["search/rejected"] = float(self.loop.rejected)
        logged.update({f"search/cost/{label}": value for label, value in entry["costs"].items()})
        if "epochs" in entry:
            logged["search/epochs"] = float(entry["epochs"])
        self.log_dict(logged, on_step=True, on_epoch=False, batch_size=1)
        self._should_stop()

    def _should_stop(self) -> bool:
        if self.stop_reason is not None:
            self.trainer.should_stop = True
            return True
        reason = self.loop.stop_reason(self.budget, self.patience)
        if reason is not None:
            self._stop(reason)
        return self.stop_reason is not None

    def pareto_front(self) -> list[Mapping[str, Any]]:
        """The evaluated entries no other evaluated entry dominates (reward maximised, the objectives' costs
        minimised); empty without objectives."""
        return pareto_front(self.history, self.loop.objectives) if self.loop.objectives else []

    def _stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.trainer.should_stop = True

    def teardown(self, stage: str) -> None:
        self.executor.close()  # trials still in flight are in the search state; a resumed search reruns them
        super().teardown(stage)

    # ------------------------------------------------------------------ results

    def on_fit_end(self) -> None:
        log_dir = self.trainer.log_dir
        if not self.trainer.is_global_zero:
            return
        best = self.best()
        refused = f", {self.loop.rejected} refused over budget" if self.constraints else ""
        print(f"search stopped: {self.stop_reason or 'end of the loop'}; "
              f"{self.loop.evaluated} architectures evaluated{refused} in {self.samples} proposals")
        if best is None:
            return
        at = f" after {best['epochs']} epochs" if "epochs" in best else ""
        print(f"best reward {best['reward']:.4f}{at}: {best['arch']}")
        directory = Path(log_dir or self.trainer.default_root_dir)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "best_arch.txt", best["arch"] + "\n")
        atomic_write_text(directory / "history.json", json.dumps(self.history, indent=1) + "\n")
        arch = self.space.parse(best["arch"])
        self.space.write(arch, directory)  # the space's answer file, which a retraining reads
        drawing = self.space.draw(arch)
        save_png(drawing, directory / "best_arch.png")
        labels = self.loop.objectives
        if labels:
            front = sorted(self.pareto_front(), key=lambda e: [e["costs"][label] for label in labels])
            atomic_write_text(directory / "pareto_front.json", json.dumps({
                "maximised": "reward", "minimised": labels,
                "front": [{"arch": e["arch"], "reward": e["reward"], "costs": e["costs"], "sample": e["sample"]}
                          for e in front],
            }, indent=1) + "\n")
        rewards = torch.tensor([h["reward"] for h in self.loop.evaluations()])
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if experiment is not None and hasattr(experiment, "add_text"):
                experiment.add_text("search/best_arch", best["arch"], self.global_step)
                experiment.add_histogram("search/rewards", rewards, self.global_step)
                experiment.add_image("search/best_arch", figure_to_array(drawing), self.global_step, dataformats="HWC")
                if labels and hasattr(experiment, "add_figure"):
                    experiment.add_figure("search/pareto_front", draw_pareto_front(self.history, labels),
                                          self.global_step)

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_module(self, checkpoint)
        checkpoint["discrete_search"] = {
            "space": self.space.signature(), "history": self.history, "samples": self.samples,
            "searcher": self.searcher.state_dict(), "stop_reason": self.stop_reason,
            "pending": self.loop.pending_record(),
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
        self.loop.restore(state["history"], state["samples"], pending=state.get("pending", ()))
        # The stopping rules are checked again with the configured budget and rules (a resumed search may
        # raise them): the checkpoint's reason to stop holds only if they still say so.
        self.stop_reason = None
        self.searcher.load_state_dict(state["searcher"])


def _named(where: str, build: Any, value: Any) -> Any:
    """``build(value)``, its error prefixed with the setting it came from (``constraints[0]: ...``)."""
    try:
        return build(value)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
