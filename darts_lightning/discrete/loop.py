"""One discrete search without Lightning: propose, refuse, evaluate, tell.

:class:`SearchLoop` is the rule :class:`~darts_lightning.DiscreteSearch` runs at each training step, and what a
benchmark runs thousands of times without a Trainer (``benchmarks/nb201_pareto.py``):

1. the searcher proposes (``ask``) and the proposal is priced by the search's objectives and constraints
   (:class:`~darts_lightning.discrete.constraints.Pricing`); one over a budget is recorded as refused (its
   costs and the reason, no reward; once per text form), answered with ``reject``, never evaluated, and the
   searcher proposes again;
2. a proposal within the budgets whose isomorphism-aware key (``space.key``) was already evaluated is
   answered from the history at no cost (``tell`` with its reward) and the searcher proposes again;
3. a new one that is not already in flight is run as a trial by the search's executor
   (:mod:`darts_lightning.discrete.executors`), up to its ``capacity`` at once and never beyond the evaluations
   the budget has left; finished trials are recorded in the order they finish, with their reward and costs
   (or as failed), and told.

The budgets are checked before the key because two cells with one key compute the same function but need
not cost the same: the network of a cell also runs (and counts) the ops of edges that cannot reach its output.

Refusals and answers from the history spend no evaluation budget; every proposal counts towards
``max_samples``, so that a searcher that only proposes known or refused architectures cannot hang a search.

With a ``fidelity`` schedule (:class:`~darts_lightning.discrete.fidelity.SuccessiveHalving`), a free trial slot
first goes to a promotion (an evaluated architecture trained again for more epochs), and only then to a new
proposal; the budget still counts distinct architectures, and the search ends when it is spent and no rung can
promote any more.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Generic

from darts_lightning.discrete.constraints import CostConstraint, Pricing
from darts_lightning.discrete.evaluation import Evaluation, Evaluator
from darts_lightning.discrete.executors import Executor, SequentialExecutor, TrialFailure
from darts_lightning.discrete.fidelity import SuccessiveHalving
from darts_lightning.discrete.searchers import Searcher
from darts_lightning.spaces.base import Arch
from darts_lightning.utils.validation import check_range

__all__ = ["SearchLoop", "finish_order"]


class SearchLoop(Generic[Arch]):
    """The history of one search and the rule that extends it by one evaluation (:meth:`step`).

    Args:
        searcher, evaluator: for the searcher's space.
        max_samples: the most proposals (known and refused ones included).
        pricing: the costs of the space's architectures; needed with ``constraints`` or ``objectives``.
        constraints: budgets checked before an evaluation.
        objectives: labels of the costs the search minimises besides maximising the reward (a searcher with
            ``uses_costs`` is given them; the search's Pareto front is taken over them).

    Every history entry has ``arch`` (text form), ``reward`` (``None`` when refused), ``costs`` (by label,
    every cost the pricing knows) and ``sample`` (the proposal's number); an evaluated one also ``cost`` and
    ``metrics`` (the evaluator's), a refused one ``rejected`` (why), one whose trial failed every attempt
    (:mod:`darts_lightning.discrete.executors`: the evaluator raised or gave a non-finite reward) ``failed``
    (the last error) and ``attempts``; a failed architecture is never run again and spends no budget.
    ``executor``: runs the trials (:class:`~darts_lightning.discrete.executors.SequentialExecutor` by default).

    ``fidelity``: successive halving over the evaluator's training epochs (ASHA). Then an evaluated entry also
    has ``rungs`` (per trial of the architecture, lowest rung first: ``epochs``, ``reward`` or ``failed``,
    ``cost``, ``trial``, ``finished`` = its place in the order trials finished) and ``epochs`` (of its highest
    rung); its ``reward`` and ``metrics`` are those of its highest rung, its ``cost`` the sum over its rungs.
    A new proposal's trial is numbered by its ``sample``; a promotion's trials are -1, -2, ...
    """

    def __init__(self, searcher: Searcher[Arch], evaluator: Evaluator[Arch], *, max_samples: int,
                 pricing: Pricing[Arch] | None = None, constraints: Sequence[CostConstraint] = (),
                 objectives: Sequence[str] = (), executor: Executor | None = None,
                 fidelity: SuccessiveHalving | None = None) -> None:
        check_range("max_samples", max_samples, 1, integer=True)
        self.space = searcher.space
        self.searcher, self.evaluator = searcher, evaluator
        self.executor = SequentialExecutor() if executor is None else executor
        self.max_samples = max_samples
        self.constraints, self.objectives = list(constraints), list(objectives)
        if pricing is None and (self.constraints or self.objectives):
            raise ValueError("constraints and objectives need a Pricing of the space's architectures")
        if pricing is not None:
            pricing.check(self.space, [c.label for c in self.constraints] + self.objectives)
            pricing.check_budgets(self.constraints)
        self.pricing = pricing
        if searcher.uses_costs:
            if not self.objectives:
                raise ValueError(
                    f"the searcher {type(searcher).__name__} ranks architectures by their costs too: configure the "
                    "search's objectives (e.g. objectives: [multiply_adds])"
                )
            searcher.use_costs(self.objective_costs)
        self.fidelity = fidelity
        # the evaluator at each rung's epochs (one rung, the evaluator itself, without a fidelity schedule)
        self._evaluators = [evaluator] if fidelity is None else [evaluator.with_epochs(e) for e in fidelity.rungs]
        self.history: list[dict[str, Any]] = []
        self.samples = 0
        self.evaluated = 0
        self._finished = 0  # trials finished so far (with a fidelity schedule: their order)
        self._promotions = 0  # promotion trials submitted so far (numbered -1, -2, ...)
        self._rung_results: list[dict[Hashable, float]] = [{} for _ in self._evaluators]  # reward by key, per rung
        self._rung_started: list[set[Hashable]] = [set() for _ in self._evaluators]  # keys with a trial there
        self._rung_of: dict[int, int] = {}  # rung of each trial in flight
        self._seen: dict[Hashable, dict[str, Any]] = {}  # evaluated entries by key
        self._refused: dict[str, dict[str, Any]] = {}  # refused entries by text form
        self._failed: dict[Hashable, dict[str, Any]] = {}  # failed entries by key
        self._pending: dict[int, tuple[Arch, Hashable, dict[str, float]]] = {}  # trials in flight by number
        self._resubmit: list[int] = []  # restored trials in flight, not yet given to this executor

    def objective_costs(self, arch: Arch) -> dict[str, float]:
        """The costs of ``arch`` the search minimises, by label, in the order of ``objectives``."""
        assert self.pricing is not None, "objectives come with a pricing"
        costs = self.pricing.costs(arch)
        return {label: costs[label] for label in self.objectives}

    def step(self, budget: int | None = None) -> dict[str, Any] | None:
        """Fill the executor with new proposals (:meth:`propose`; at most its ``capacity`` in flight and, with a
        ``budget``, no more than the evaluations it has left), wait for finished trials, record them in the
        order they finished and tell the searcher. Returns the last evaluated entry, or ``None`` when no trial
        is in flight and ``max_samples`` proposals gave nothing new."""
        for trial in self._resubmit:  # the trials a checkpoint left in flight run again
            self.executor.submit(trial, self._pending[trial][0], self._evaluators[self._rung_of[trial]])
        self._resubmit = []
        while True:
            while len(self._pending) < self.executor.capacity:
                promotion = self._promotion()
                if promotion is not None:
                    key, rung = promotion
                    self._promotions += 1
                    entry = self._seen[key]
                    self._submit(-self._promotions, (self.space.parse(entry["arch"]), key, entry["costs"]), rung)
                    continue
                new_in_flight = sum(rung == 0 for rung in self._rung_of.values())
                if budget is not None and self.evaluated + new_in_flight >= budget:
                    break
                proposal = self.propose()
                if proposal is None:
                    break
                self._submit(self.samples, proposal, 0)
            if not self._pending:
                return None
            evaluated = None
            for trial, outcome in self.executor.wait():
                evaluated = self._record(trial, outcome) or evaluated
            if evaluated is not None:
                return evaluated

    def _submit(self, trial: int, proposal: tuple[Arch, Hashable, dict[str, float]], rung: int) -> None:
        self.executor.submit(trial, proposal[0], self._evaluators[rung])
        self._pending[trial] = proposal
        self._rung_of[trial] = rung
        self._rung_started[rung].add(proposal[1])

    def _promotion(self) -> tuple[Hashable, int] | None:
        """The architecture the fidelity schedule promotes now and its rung, if any."""
        if self.fidelity is None:
            return None
        return self.fidelity.promotion(self._rung_results, self._rung_started)

    def propose(self) -> tuple[Arch, Hashable, dict[str, float]] | None:
        """Ask until the searcher gives an architecture to run: within the budgets (refusals are recorded and
        answered with ``reject``), not evaluated (known ones are answered from the history), not failed and
        not in flight. ``(arch, key, costs)``, or ``None`` after ``max_samples`` proposals."""
        in_flight = {key for _, key, _ in self._pending.values()}
        while self.samples < self.max_samples:
            arch = self.searcher.ask()
            self.samples += 1
            costs = self.pricing.costs(arch) if self.pricing is not None else {}
            reasons = [reason for c in self.constraints if (reason := c.violation(costs)) is not None]
            if reasons:
                text = self.space.format(arch)
                if text not in self._refused:
                    entry = {"arch": text, "reward": None, "costs": costs, "rejected": "; ".join(reasons),
                             "sample": self.samples}
                    self.history.append(entry)
                    self._refused[text] = entry
                self.searcher.reject(arch)
                continue
            key = self.space.key(arch)
            known = self._seen.get(key)
            if known is not None:
                self.searcher.tell(arch, self._told(known))
                continue
            if key in self._failed:  # never run a failed architecture again
                self.searcher.reject(arch)
                continue
            if key in in_flight:  # never run one architecture twice at once; its result is on its way
                continue
            return arch, key, costs
        return None

    def _told(self, entry: Mapping[str, Any]) -> float:
        """The reward the searcher is told for an evaluated entry: with a fidelity schedule, its rung 0's, where
        every architecture is measured."""
        return entry["rungs"][0]["reward"] if "rungs" in entry else entry["reward"]

    def _record(self, trial: int, outcome: Evaluation | TrialFailure) -> dict[str, Any] | None:
        """Record the finished ``trial`` and tell the searcher; returns its entry when it was evaluated."""
        arch, key, costs = self._pending.pop(trial)
        rung = self._rung_of.pop(trial)
        text = self.space.format(arch)
        self._finished += 1
        record: dict[str, Any] = {}
        if self.fidelity is not None:
            record = {"epochs": self.fidelity.rungs[rung], "trial": trial, "finished": self._finished}
            if isinstance(outcome, TrialFailure):
                record.update({"failed": outcome.error, "attempts": outcome.attempts})
            else:
                record.update({"reward": outcome.reward, "cost": outcome.cost})
        if rung > 0:  # a promotion of an evaluated architecture
            entry = self._seen[key]
            entry["rungs"].append(record)
            if isinstance(outcome, TrialFailure):
                return None
            self._rung_results[rung][key] = outcome.reward
            entry.update({"reward": outcome.reward, "cost": entry["cost"] + outcome.cost, "epochs": record["epochs"],
                          "metrics": dict(outcome.metrics)})
            return entry
        if isinstance(outcome, TrialFailure):
            self._failed[key] = {"arch": text, "reward": None, "costs": costs, "failed": outcome.error,
                                 "attempts": outcome.attempts, "sample": trial}
            if record:
                self._failed[key]["rungs"] = [record]
            self.history.append(self._failed[key])
            self.searcher.reject(arch)
            return None
        entry = {"arch": text, "reward": outcome.reward, "cost": outcome.cost, "costs": costs,
                 "metrics": dict(outcome.metrics), "sample": trial}
        if record:
            entry.update({"epochs": record["epochs"], "rungs": [record]})
            self._rung_results[0][key] = outcome.reward
        self.history.append(entry)
        self._seen[key] = entry
        self.evaluated += 1
        self.searcher.tell(arch, outcome.reward)
        return entry

    @property
    def rejected(self) -> int:
        """Architectures refused over a budget."""
        return sum("rejected" in entry for entry in self.history)

    @property
    def failed(self) -> int:
        """Architectures whose trial failed every attempt."""
        return sum("failed" in entry for entry in self.history)

    def evaluations(self) -> list[dict[str, Any]]:
        """The evaluated entries of the history, in order."""
        return [entry for entry in self.history if entry.get("reward") is not None]

    def best(self) -> dict[str, Any] | None:
        """The evaluated entry with the highest reward (the first one on ties); with a fidelity schedule, among
        the entries of the highest rung reached."""
        return max(self.evaluations(), key=lambda h: (h.get("epochs", 0), h["reward"]), default=None)

    def stop_reason(self, budget: int, patience: int | None = None) -> str | None:
        """Why the search stops before its next step, if it does: the budget of evaluations is spent, the
        searcher has converged, or the best reward has not improved for ``patience`` evaluations."""
        if self.evaluated >= budget and not (self.fidelity is not None and (self._pending or self._promotion())):
            return f"budget of {budget} distinct architectures spent"
        if self.searcher.converged():
            return "the searcher converged"
        if patience and self.evaluated > patience:
            rewards = [h["reward"] for h in self.evaluations()]
            best_at = max(range(len(rewards)), key=lambda i: (rewards[i], -i))
            if len(rewards) - 1 - best_at >= patience:
                return f"no improvement in the last {patience} evaluations"
        return None

    def exhausted_reason(self) -> str:
        """Why the search stops when :meth:`step` found nothing new in ``max_samples`` proposals."""
        refused = f" and {self.rejected} refused over budget" if self.rejected else ""
        refused += f" and {self.failed} failed" if self.failed else ""
        return (f"{self.samples} proposals gave {self.evaluated} distinct architectures{refused}: the searcher "
                "stopped finding new ones (raise max_samples to go on)")

    def run(self, budget: int, patience: int | None = None) -> str:
        """Step until a stopping rule holds (:meth:`stop_reason`, or ``max_samples`` proposals); returns why."""
        while True:
            reason = self.stop_reason(budget, patience)
            if reason is not None:
                return reason
            if self.step(budget) is None:
                return self.exhausted_reason()

    def pending_record(self) -> list[dict[str, Any]]:
        """The trials in flight as plain data (``sample``, ``arch``), for a checkpoint: a resumed search runs
        them again (:meth:`restore`)."""
        records = []
        for trial, (arch, _, _) in self._pending.items():
            record: dict[str, Any] = {"sample": trial, "arch": self.space.format(arch)}
            if self.fidelity is not None:
                record["rung"] = self._rung_of[trial]
            records.append(record)
        return records

    def restore(self, history: Sequence[Mapping[str, Any]], samples: int,
                pending: Sequence[Mapping[str, Any]] = ()) -> None:
        """Continue from a saved history, proposal count and trials in flight (:meth:`pending_record`), which the
        next :meth:`step` submits again (the searcher's state is restored separately)."""
        self.history = [dict(entry) for entry in history]
        self.samples = int(samples)
        self.evaluated = sum(entry.get("reward") is not None for entry in self.history)
        evaluated = self.evaluations()
        self._seen = {self.space.key(self.space.parse(entry["arch"])): entry for entry in evaluated}
        self._refused = {entry["arch"]: entry for entry in self.history if "rejected" in entry}
        self._failed = {self.space.key(self.space.parse(entry["arch"])): entry for entry in self.history
                        if "failed" in entry}
        self._rung_results = [{} for _ in self._evaluators]
        self._rung_started = [set() for _ in self._evaluators]
        self._finished, self._promotions = 0, 0
        for entry in self.history:
            key = None if "rejected" in entry else self.space.key(self.space.parse(entry["arch"]))
            for rung, record in enumerate(entry.get("rungs", ())):
                self._rung_started[rung].add(key)
                if "reward" in record:
                    self._rung_results[rung][key] = record["reward"]
                self._finished = max(self._finished, int(record["finished"]))
                self._promotions = max(self._promotions, -int(record["trial"]))
            if "rungs" not in entry and ("reward" in entry and entry["reward"] is not None or "failed" in entry):
                self._finished += 1
        self._pending, self._rung_of = {}, {}
        for record in pending:
            arch = self.space.parse(record["arch"])
            costs = self.pricing.costs(arch) if self.pricing is not None else {}
            trial, rung = int(record["sample"]), int(record.get("rung", 0))
            self._pending[trial] = (arch, self.space.key(arch), costs)
            self._rung_of[trial] = rung
            self._rung_started[rung].add(self._pending[trial][1])
            self._promotions = max(self._promotions, -trial)
        self._resubmit = list(self._pending)


def finish_order(history: Sequence[Mapping[str, Any]]) -> list[int]:
    """The trials of a search's ``history`` (``history.json``) in the order they finished, failures included:
    the ``order`` of a :class:`~darts_lightning.discrete.executors.ReplayExecutor` that repeats the run. With a
    fidelity schedule, every rung's trial, by its ``finished`` place; otherwise each evaluated or failed
    entry's ``sample``, in the order of the history."""
    records = [record for entry in history for record in entry.get("rungs", ())]
    if records:
        return [int(record["trial"]) for record in sorted(records, key=lambda record: record["finished"])]
    return [int(entry["sample"]) for entry in history if entry.get("reward") is not None or "failed" in entry]
