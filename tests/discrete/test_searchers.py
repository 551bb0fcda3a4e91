"""The discrete searchers: they find a known optimum far more often than chance, resume exactly from
their state (directly and through DiscreteSearch checkpoints), and a converged policy cannot hang a run.

The synthetic problem: a hidden target cell of the NAS-Bench-201 space, and the reward of a cell is the
number of its six edges whose op equals the target's, plus a tie-breaker below 0.006 (a fixed random
weight per edge and op), so the target is the unique optimum (and the only cell with its key). Random
search needs more draws than distinct cells, because isomorphic cells share a key: about 204 draws for
B = 150 distinct cells, 460 for 300 and 840 for 500 (measured), so it finds the target with probability
about 1.3 %, 2.9 % and 5.4 % respectively.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import random
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import DiscreteSearch
from darts_lightning.discrete.evaluators import Evaluation, Evaluator, list_evaluators, register_evaluator
from darts_lightning.discrete.searchers import LocalSearch, Reinforce, Searcher, build_searcher, list_searchers
from darts_lightning.spaces import get_space
from darts_lightning.spaces.nasbench201 import NB201Arch
from darts_lightning.spaces.ops import NB201_OPS

SPACE = get_space("nasbench201")
TARGET = NB201Arch(("nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"))
_TIE_RNG = random.Random(1234)
TIE_BREAK = [[_TIE_RNG.random() for _ in NB201_OPS] for _ in TARGET.ops]


def target_reward(arch: NB201Arch) -> float:
    matches = sum(a == b for a, b in zip(arch.ops, TARGET.ops))
    return matches + 1e-3 * sum(TIE_BREAK[k][NB201_OPS.index(op)] for k, op in enumerate(arch.ops))


class HiddenTargetEvaluator(Evaluator):
    """The synthetic reward of the module docstring, for DiscreteSearch."""

    def evaluate(self, arch: Any) -> Evaluation:
        return Evaluation(reward=target_reward(arch))


if "hidden_target" not in list_evaluators():
    register_evaluator("hidden_target", HiddenTargetEvaluator)


def search(searcher: Searcher, budget: int, max_samples: int, until: Any = None) -> tuple[list[Any], list[str]]:
    """DiscreteSearch's loop without a Trainer: returns the evaluated keys and every proposal's text. With
    ``until`` (a key), it returns as soon as that key is evaluated."""
    seen: dict[Any, float] = {}
    evaluated: list[Any] = []
    proposals: list[str] = []
    while len(evaluated) < budget and not searcher.converged():
        while True:
            if len(proposals) >= max_samples:
                return evaluated, proposals
            arch = searcher.ask()
            proposals.append(SPACE.format(arch))
            key = SPACE.key(arch)
            if key in seen:
                searcher.tell(arch, seen[key])
                continue
            break
        seen[key] = target_reward(arch)
        evaluated.append(key)
        if key == until:
            break
        searcher.tell(arch, seen[key])
    return evaluated, proposals


def test_registry_and_target_is_unique() -> None:
    assert {"random", "regularized_evolution", "reinforce", "local_search"} <= set(list_searchers())
    target_key = SPACE.key(TARGET)
    assert sum(SPACE.key(NB201Arch(ops)) == target_key for ops in itertools.product(NB201_OPS, repeat=6)) == 1
    with pytest.raises(ValueError, match="removal"):
        build_searcher("regularized_evolution", SPACE, removal="youngest")
    with pytest.raises(ValueError, match="controller"):
        build_searcher("reinforce", SPACE, controller="gru")
    with pytest.raises(ValueError, match="improvement"):
        build_searcher("local_search", SPACE, improvement="random")


# (searcher, options, budget of distinct cells, seeds, least number of seeds that must find the target).
# Budgets differ because the variants climb at different speeds on this problem: aging evolution keeps
# little selection pressure with population 10 / tournament 3, and uniform crossover averages the two
# parents' matches, so aging + crossover is the slowest (about 60 % of seeds at 500). REINFORCE gets a
# larger learning rate than the NAS-Bench-201 default (1e-3 moves a logit by about 0.15 in 150 steps).
SUCCESS_CASES = [
    ("regularized_evolution", {"removal": "oldest"}, 300, 20, 12),
    ("regularized_evolution", {"removal": "worst"}, 150, 20, 12),
    ("regularized_evolution", {"removal": "oldest", "crossover": True}, 500, 20, 8),
    ("regularized_evolution", {"removal": "worst", "crossover": True}, 150, 20, 12),
    ("local_search", {}, 150, 20, 12),
    ("local_search", {"improvement": "best"}, 150, 20, 12),
    ("reinforce", {"learning_rate": 0.05}, 150, 10, 7),
    ("reinforce", {"controller": "lstm", "learning_rate": 0.01}, 150, 10, 5),
]


def case_id(name: str, options: dict) -> str:
    return name + "-" + ("-".join(f"{k}={v}" for k, v in options.items()) or "default")


@pytest.mark.parametrize("name, options, budget, seeds, needed", SUCCESS_CASES,
                         ids=[case_id(n, o) for n, o, *_ in SUCCESS_CASES])
def test_finds_hidden_optimum_far_more_often_than_chance(name: str, options: dict, budget: int, seeds: int,
                                                         needed: int) -> None:
    torch.set_num_threads(1)
    target_key = SPACE.key(TARGET)
    hits = sum(
        target_key in search(build_searcher(name, SPACE, seed=seed, **options), budget, 4 * budget, until=target_key)[0]
        for seed in range(seeds)
    )
    assert hits >= needed, f"{name} {options} found the target in {hits} of {seeds} seeds (needed {needed})"


def test_random_search_finds_it_about_as_often_as_chance() -> None:
    """The control: at about 1.3 % per seed, 3 or more hits in 20 seeds has probability about 0.2 %."""
    target_key = SPACE.key(TARGET)
    hits = sum(target_key in search(build_searcher("random", SPACE, seed=seed), 150, 600, until=target_key)[0]
               for seed in range(20))
    assert hits <= 2


def synthetic_accuracy(arch: NB201Arch, problem: str) -> float:
    """A table with a distinct value per cell: ``rugged`` is a fixed permutation of 0 .. 15624 (scaled),
    ``unimodal`` adds it (scaled below 8) to 10 × the number of edges that match TARGET."""
    index = sum(NB201_OPS.index(op) * 5**k for k, op in enumerate(arch.ops))
    noise = (index * 7919) % 15625
    if problem == "rugged":
        return noise / 1000
    return 10 * sum(a == b for a, b in zip(arch.ops, TARGET.ops)) + noise / 2000


# SHA-256 (first 16 hex digits) of the 150 cell strings naszilla's local_search queries, joined by "\n".
NASZILLA_LOCAL_SEARCH = {
    ("rugged", "first", 0): "1e4547fc7db2c398", ("rugged", "first", 1): "e54c904d03c73e3d",
    ("rugged", "first", 2): "0a74bed066a5f255", ("rugged", "best", 0): "fa20774122627258",
    ("rugged", "best", 1): "280fe1d2669e2a66", ("rugged", "best", 2): "46ecf70aeb17fbee",
    ("unimodal", "first", 0): "dcda6237040775e9", ("unimodal", "first", 1): "929ec81f6afd54b8",
    ("unimodal", "first", 2): "7e690a148c64afd8", ("unimodal", "best", 0): "f171fab2cba2932c",
    ("unimodal", "best", 1): "3a4e6a6cda8fdaf3", ("unimodal", "best", 2): "2cabbc609fa18718",
}


@pytest.mark.parametrize("problem, improvement, seed", list(NASZILLA_LOCAL_SEARCH),
                         ids=["-".join(map(str, case)) for case in NASZILLA_LOCAL_SEARCH])
def test_local_search_proposes_what_naszilla_queries(problem: str, improvement: str, seed: int) -> None:
    """Golden sequences from naszilla/naszilla at commit 7e6549146120687615d7cbb8d1a08ef234d52083: the cells
    that ``local_search`` of that commit's ``naszilla/nas_algorithms.py`` (the function's code, extracted from
    the file) queries with naszilla's ``Nasbench201`` space class and ``Cell201`` (ops relabelled to
    NB201_OPS's order) on a stub NAS-Bench-201 API serving ``synthetic_accuracy`` as the validation accuracy,
    after ``random.seed(seed)``, for 150 queries, ``query_full_nbhd`` False ("first") or True ("best"), other
    arguments at their defaults.
    Every proposal is one query here (no deduplicating driver), and no cell is proposed twice."""
    searcher = LocalSearch(SPACE, seed=seed, improvement=improvement)
    proposals = []
    for _ in range(150):
        arch = searcher.ask()
        proposals.append(SPACE.format(arch))
        searcher.tell(arch, synthetic_accuracy(arch, problem))
    assert len(set(proposals)) == len(proposals)
    digest = hashlib.sha256("\n".join(proposals).encode()).hexdigest()[:16]
    assert digest == NASZILLA_LOCAL_SEARCH[(problem, improvement, seed)]


def test_local_search_never_reproposes_and_reports_an_exhausted_space() -> None:
    """Through the deduplicating driver no cell is proposed twice (restarts included); a searcher that has
    proposed every cell says so, and asking it more is a clear error."""
    for improvement in ("first", "best"):
        _, proposals = search(LocalSearch(SPACE, seed=0, improvement=improvement), 300, 1200)
        assert len(proposals) >= 300 and len(set(proposals)) == len(proposals)
    searcher = LocalSearch(SPACE, seed=0)
    for ops in itertools.product(NB201_OPS, repeat=6):
        searcher.proposed[tuple(NB201_OPS.index(op) for op in ops)] = None
    assert searcher.converged()
    with pytest.raises(RuntimeError, match="all 15625 architectures"):
        searcher.ask()


RESUME_CASES = [
    ("random", {}),
    ("regularized_evolution", {}),
    ("regularized_evolution", {"removal": "worst", "crossover": True}),
    ("reinforce", {"learning_rate": 0.05}),
    ("reinforce", {"controller": "lstm", "learning_rate": 0.01}),
    ("local_search", {}),
    ("local_search", {"improvement": "best", "initial": 3}),
]
RESUME_IDS = [case_id(n, o) for n, o in RESUME_CASES]


def ask_tell(searcher: Searcher, steps: int, seen: dict[Any, float]) -> list[str]:
    """``steps`` proposals, each told its reward (a known key gets its first reward, as in DiscreteSearch)."""
    proposals = []
    for _ in range(steps):
        arch = searcher.ask()
        proposals.append(SPACE.format(arch))
        reward = seen.setdefault(SPACE.key(arch), target_reward(arch))
        searcher.tell(arch, reward)
    return proposals


@pytest.mark.parametrize("name, options", RESUME_CASES, ids=RESUME_IDS)
def test_state_dict_resumes_exactly(name: str, options: dict) -> None:
    torch.set_num_threads(1)
    total = 70
    uninterrupted = ask_tell(build_searcher(name, SPACE, seed=5, **options), total, {})
    for stop in (4, 23, 51):  # in the first random samples, early and late in a climb or a population
        first = build_searcher(name, SPACE, seed=5, **options)
        seen: dict[Any, float] = {}
        head = ask_tell(first, stop, seen)
        buffer = io.BytesIO()
        torch.save(first.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        # A different seed: everything that matters must come from the state.
        resumed = build_searcher(name, SPACE, seed=999, **options)
        resumed.load_state_dict(state)
        tail = ask_tell(resumed, total - stop, seen)
        assert head + tail == uninterrupted, f"{name} diverged after resuming at step {stop}"


class SaveAndStop(pl.Callback):
    """Writes a checkpoint after the ``k``-th evaluation and stops the run there, as a crash would."""

    def __init__(self, k: int, path: Path) -> None:
        self.k, self.path = k, path

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: DiscreteSearch, *args: Any) -> None:
        if len(pl_module.history) == self.k:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def quick_trainer(root: Path, callbacks: list[pl.Callback] | None = None, **overrides: Any) -> pl.Trainer:
    kwargs: dict[str, Any] = dict(
        accelerator="cpu", devices=1, max_epochs=1, default_root_dir=str(root), logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, callbacks=callbacks or [],
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)


def discrete_search(name: str, options: dict, budget: int = 24) -> DiscreteSearch:
    return DiscreteSearch(space="nasbench201", searcher=name, searcher_args=options, evaluator="hidden_target",
                          budget=budget, seed=3)


@pytest.mark.parametrize("name, options", RESUME_CASES, ids=RESUME_IDS)
def test_discrete_search_resumes_from_a_mid_run_checkpoint(tmp_path: Path, name: str, options: dict) -> None:
    torch.set_num_threads(1)
    uninterrupted = discrete_search(name, options)
    quick_trainer(tmp_path / "full").fit(uninterrupted)
    assert len(uninterrupted.history) == 24

    checkpoint = tmp_path / "after10.ckpt"
    interrupted = discrete_search(name, options)
    quick_trainer(tmp_path / "part", [SaveAndStop(10, checkpoint)]).fit(interrupted)
    assert len(interrupted.history) == 10
    # The checkpoint holds plain containers only: history and searcher state load without pickle.
    saved = torch.load(checkpoint, weights_only=True)["discrete_search"]
    assert len(saved["history"]) == 10

    resumed = discrete_search(name, options)
    quick_trainer(tmp_path / "resumed").fit(resumed, ckpt_path=str(checkpoint))
    assert resumed.history == uninterrupted.history
    assert resumed.samples == uninterrupted.samples
    assert resumed.stop_reason == uninterrupted.stop_reason
    assert resumed.searcher.state_dict().keys() == uninterrupted.searcher.state_dict().keys()


def test_discrete_search_resumes_from_model_checkpoint_last(tmp_path: Path) -> None:
    """ModelCheckpoint(save_last=True) writes ``last.ckpt`` when the stopped epoch ends; Lightning then
    counts the epoch as completed, so the resumed Trainer needs one more epoch (``max_epochs=2``) and
    DiscreteSearch stops itself when the budget is spent."""
    torch.set_num_threads(1)
    options = {"controller": "lstm", "learning_rate": 0.01}
    uninterrupted = discrete_search("reinforce", options)
    quick_trainer(tmp_path / "full").fit(uninterrupted)

    class StopAfter(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: DiscreteSearch, *args: Any) -> None:
            if len(pl_module.history) >= 10:
                trainer.should_stop = True

    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    interrupted = discrete_search("reinforce", options)
    quick_trainer(tmp_path / "part", [StopAfter(), saver], enable_checkpointing=True).fit(interrupted)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert len(torch.load(last, weights_only=True)["discrete_search"]["history"]) == 10

    resumed = discrete_search("reinforce", options)
    quick_trainer(tmp_path / "resumed", max_epochs=2).fit(resumed, ckpt_path=str(last))
    assert resumed.history == uninterrupted.history


def peak_on_target(searcher: Reinforce) -> None:
    """Make the factorised policy choose TARGET with probability about 1 - 6e-8 per decision."""
    with torch.no_grad():
        for logits, choice in zip(searcher.policy.logits, SPACE.to_decisions(TARGET)):
            logits.zero_()
            logits[choice] = 20.0


def test_reinforce_convergence_is_reported() -> None:
    for controller in ("factorised", "lstm"):
        searcher = Reinforce(SPACE, seed=0, controller=controller)
        assert not searcher.converged()
        assert all(p < 0.5 for p in searcher.probabilities())
    searcher = Reinforce(SPACE, seed=0)
    peak_on_target(searcher)
    assert searcher.converged()
    assert searcher.best() == TARGET


def test_converged_policy_does_not_hang_discrete_search(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    # A threshold of 1.0 is never exceeded: the searcher never says it converged, but it only proposes
    # TARGET; the run must end at max_samples, with a reason.
    stuck = DiscreteSearch(searcher="reinforce", searcher_args={"converge_threshold": 1.0}, evaluator="hidden_target",
                           budget=20, max_samples=40, seed=0)
    peak_on_target(stuck.searcher)
    quick_trainer(tmp_path / "stuck").fit(stuck)
    assert [h["arch"] for h in stuck.history] == [SPACE.format(TARGET)]
    assert stuck.samples == 40
    assert stuck.stop_reason is not None and "40 proposals gave 1 distinct" in stuck.stop_reason

    # With the default threshold the same policy reports convergence and the run stops at once.
    converged = DiscreteSearch(searcher="reinforce", evaluator="hidden_target", budget=20, seed=0)
    peak_on_target(converged.searcher)
    quick_trainer(tmp_path / "converged").fit(converged)
    assert converged.stop_reason == "the searcher converged"
    assert converged.history == []
