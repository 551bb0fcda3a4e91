"""DiscreteSearch: budget, de-duplication, stop conditions, outputs, checkpoint state and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import DiscreteSearch
from darts_lightning.discrete.evaluators import Evaluation, Evaluator, LookupEvaluator, register_evaluator
from darts_lightning.discrete.searchers import Searcher, register_searcher
from darts_lightning.spaces import DartsSpace, SearchSpace


def _fit(model: DiscreteSearch, root: Path, ckpt_path: Path | None = None, **kwargs) -> pl.Trainer:
    kwargs = {"max_epochs": -1, **kwargs}
    trainer = pl.Trainer(accelerator="cpu", default_root_dir=str(root), enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1, **kwargs)
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer


def test_random_search_on_the_table_spends_its_budget_on_distinct_architectures(tmp_path):
    model = DiscreteSearch(budget=50, seed=3)
    trainer = _fit(model, tmp_path)
    keys = {model.space.key(model.space.parse(h["arch"])) for h in model.history}
    assert len(model.history) == 50 and len(keys) == 50
    assert model.samples >= 50 and model.stop_reason.startswith("budget")
    best = model.best()
    assert best["reward"] == max(h["reward"] for h in model.history)
    run_dir = Path(trainer.log_dir)
    assert (run_dir / "best_arch.txt").read_text().strip() == best["arch"]
    table = LookupEvaluator()
    assert best["metrics"]["cifar10_test"] == table.rows[best["arch"]]["cifar10_test"]


def test_same_seed_same_history_and_different_seed_different(tmp_path):
    a, b, c = (DiscreteSearch(budget=20, seed=s) for s in (1, 1, 2))
    for i, m in enumerate((a, b, c)):
        _fit(m, tmp_path / str(i), logger=False, enable_checkpointing=False)
    assert [h["arch"] for h in a.history] == [h["arch"] for h in b.history]
    assert [h["arch"] for h in a.history] != [h["arch"] for h in c.history]


class _Stuck(Searcher):
    """Always proposes the same architecture: a converged policy."""

    def ask(self):
        return self.space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|skip_connect~2|")


register_searcher("_stuck_for_tests", _Stuck)


def test_a_searcher_that_stops_finding_new_architectures_does_not_hang(tmp_path):
    model = DiscreteSearch(searcher="_stuck_for_tests", budget=10, max_samples=30)
    _fit(model, tmp_path, logger=False, enable_checkpointing=False)
    assert len(model.history) == 1 and model.samples == 30
    assert "stopped finding new ones" in model.stop_reason


class _Constant(Evaluator):
    def evaluate(self, arch):
        return Evaluation(reward=1.0)


register_evaluator("_constant_for_tests", _Constant)


def test_patience_stops_a_search_that_no_longer_improves(tmp_path):
    model = DiscreteSearch(evaluator="_constant_for_tests", evaluator_args={}, budget=100, patience=5)
    _fit(model, tmp_path, logger=False, enable_checkpointing=False)
    assert len(model.history) == 6 and "no improvement" in model.stop_reason


def test_resume_continues_without_re_evaluating_or_forgetting(tmp_path):
    full = DiscreteSearch(budget=30, seed=5)
    _fit(full, tmp_path / "full", logger=False, enable_checkpointing=False)

    class StopAt(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if len(pl_module.history) == 12:
                trainer.should_stop = True

    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    first = DiscreteSearch(budget=30, seed=5)
    _fit(first, tmp_path / "part", logger=False, callbacks=[checkpoint, StopAt()])
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["discrete_search"]
    assert len(state["history"]) == 12
    resumed = DiscreteSearch(budget=30, seed=5)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path / "r"))
    trainer.fit(resumed, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert [h["arch"] for h in resumed.history] == [h["arch"] for h in full.history]
    assert resumed.samples == full.samples


def test_errors():
    with pytest.raises(ValueError, match="unknown search space"):
        DiscreteSearch(space="nb101")
    with pytest.raises(ValueError, match="unknown searcher 'bayes'; valid searchers are"):
        DiscreteSearch(searcher="bayes")
    with pytest.raises(ValueError, match="unknown evaluator"):
        DiscreteSearch(evaluator="oracle")
    with pytest.raises(ValueError, match="budget 20000 exceeds the nasbench201 space's 15625"):
        DiscreteSearch(budget=20000)


def test_lookup_table_that_does_not_match_the_space(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("index,arch,cifar10_valid,cifar10_test\n0,|conv~0|+|x~0|y~1|+|a~0|b~1|c~2|,1,2\n")
    with pytest.raises(ValueError, match="row 2 of .* does not fit the nasbench201 space"):
        LookupEvaluator(path=bad)
    short = tmp_path / "short.csv"
    short.write_text("index,arch,cifar10_valid,cifar10_test\n0,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1,2\n")
    with pytest.raises(ValueError, match="holds 1 distinct architectures, but the nasbench201 space has 15625"):
        LookupEvaluator(path=short)
    with pytest.raises(ValueError, match="no column cifar10_train"):
        LookupEvaluator(metric="train")


def test_search_state_checkpoint_after_every_evaluation_resumes_exactly(tmp_path):
    full = DiscreteSearch(budget=25, seed=9, searcher="regularized_evolution")
    _fit(full, tmp_path / "full", logger=False, enable_checkpointing=False)

    class Interrupt(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if len(pl_module.history) == 11:
                raise RuntimeError("simulated crash")

    first = DiscreteSearch(budget=25, seed=9, searcher="regularized_evolution")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(first, tmp_path / "run", callbacks=[Interrupt()], enable_checkpointing=False)
    state = Path(tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints" / "search_state.ckpt")
    # the crash came before the 11th evaluation was saved: the last checkpoint holds 10
    assert len(torch.load(state, weights_only=True)["discrete_search"]["history"]) == 10
    resumed = DiscreteSearch(budget=25, seed=9, searcher="regularized_evolution")
    trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path / "r"))
    trainer.fit(resumed, ckpt_path=state)
    assert [h["arch"] for h in resumed.history] == [h["arch"] for h in full.history]


@pytest.mark.real_figures
def test_best_architecture_is_drawn_and_logged(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = _fit(DiscreteSearch(budget=5, seed=0), tmp_path)
    run_dir = Path(trainer.log_dir)
    assert (run_dir / "best_arch.png").read_bytes()[:4] == b"\x89PNG"
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "histograms": 0})
    events.Reload()
    assert "search/best_arch" in events.Tags()["images"]
    assert "search/rewards" in events.Tags()["histograms"]
    assert len(events.Scalars("search/best_reward")) == 5


def test_a_finished_search_resumes_with_a_raised_budget(tmp_path):
    """The stopping rules are checked again on resume: a search that spent its budget goes on to a raised one
    (and evaluates what an uninterrupted search with that budget does)."""
    first = DiscreteSearch(budget=10, seed=4)
    _fit(first, tmp_path / "first", logger=False, enable_checkpointing=False)
    state = tmp_path / "first" / "checkpoints" / "search_state.ckpt"
    assert first.stop_reason.startswith("budget") and state.is_file()
    resumed = DiscreteSearch(budget=15, seed=4)
    # A bounded number of epochs: a search that did not stop itself would fail here instead of running forever.
    _fit(resumed, tmp_path / "resumed", max_epochs=3, logger=False, enable_checkpointing=False, ckpt_path=state)
    assert len(resumed.history) == 15 and resumed.stop_reason == "budget of 15 distinct architectures spent"
    full = DiscreteSearch(budget=15, seed=4)
    _fit(full, tmp_path / "full", logger=False, enable_checkpointing=False)
    assert [h["arch"] for h in resumed.history] == [h["arch"] for h in full.history]


def test_a_darts_space_search_writes_the_space_answer_and_records_the_space_as_plain_data(tmp_path):
    space = DartsSpace(channels=4, layers=3, nodes=2, multiplier=2)
    model = DiscreteSearch(space, searcher="regularized_evolution", searcher_args={"population_size": 2},
                           evaluator="_constant_for_tests", budget=3)
    assert model.space is space
    trainer = _fit(model, tmp_path)
    run_dir = Path(trainer.log_dir)
    best = space.parse(model.best()["arch"])
    assert space.read(run_dir / "genotype.json") == best
    assert (run_dir / "best_arch.txt").read_text().strip() == space.format(best)
    assert (run_dir / "best_arch.png").is_file()
    checkpoint = torch.load(run_dir / "checkpoints" / "search_state.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["space"] == space.config()
    again = DiscreteSearch(**{k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")})
    assert again.space.config() == space.config()
    with pytest.raises(ValueError, match="model.space.channels: checkpoint 4, configured 8"):
        _fit(DiscreteSearch(DartsSpace(channels=8, layers=3, nodes=2, multiplier=2), evaluator="_constant_for_tests",
                            budget=4), tmp_path / "other", logger=False, ckpt_path=run_dir / "checkpoints" / "search_state.ckpt")


class _Triple(SearchSpace[tuple[int, int, int]]):
    """A space the package does not know: three decisions of three choices, answers as tuples."""

    name = "triple"

    def build_supernet(self, relaxation, *, in_channels, num_classes, image_size=None, auxiliary_skip=False):
        raise NotImplementedError("no supernet: only discrete searches with a table-like evaluator")

    def build_network(self, arch, *, num_classes, in_channels=3, image_size=None, channels=None, layers=None):
        raise NotImplementedError("no network: only discrete searches with a table-like evaluator")

    def parse(self, text):
        return tuple(int(c) for c in text.split("-"))

    def format(self, arch):
        return "-".join(map(str, arch))

    def draw(self, arch):
        from matplotlib.figure import Figure

        return Figure(figsize=(1, 1), dpi=16)

    def ops_of(self, arch):
        return {"cell": [str(c) for c in arch]}

    def sample(self, generator):
        return tuple(generator.randrange(3) for _ in range(3))

    def mutate(self, arch, generator):
        k = generator.randrange(3)
        return arch[:k] + (generator.choice([c for c in range(3) if c != arch[k]]),) + arch[k + 1:]

    def crossover(self, a, b, generator):
        return tuple(x if generator.random() < 0.5 else y for x, y in zip(a, b))

    def neighbours(self, arch):
        return [arch[:k] + (c,) + arch[k + 1:] for k in range(3) for c in range(3) if c != arch[k]]

    def decisions(self):
        return [3, 3, 3]

    def from_decisions(self, choices):
        return tuple(int(c) for c in choices)

    def to_decisions(self, arch):
        return list(arch)

    def key(self, arch):
        return arch


class _Sum(Evaluator):
    def evaluate(self, arch):
        return Evaluation(reward=float(sum(arch)))


register_evaluator("_sum_for_tests", _Sum)


@pytest.mark.parametrize("searcher", ["random", "regularized_evolution", "reinforce", "local_search"])
def test_every_searcher_runs_on_a_space_the_package_does_not_know(tmp_path, searcher):
    """Nothing outside a space knows which space it is: a user's space runs with every searcher, and its
    answer is written and drawn through the contract."""
    model = DiscreteSearch(_Triple(), searcher=searcher, evaluator="_sum_for_tests", budget=27, seed=1)
    trainer = _fit(model, tmp_path)
    assert model.best()["arch"] == "2-2-2"
    run_dir = Path(trainer.log_dir)
    assert (run_dir / "arch.txt").read_text().strip() == "2-2-2" and (run_dir / "best_arch.png").is_file()


def test_searchers_and_evaluators_register_by_decorator_and_refuse_unknown_names():
    from darts_lightning.discrete.evaluators import build_evaluator, list_evaluators
    from darts_lightning.discrete.searchers import RandomSearch, build_searcher, list_searchers

    @register_searcher("_decorated_for_tests")
    class Decorated(RandomSearch):
        pass

    @register_evaluator("_decorated_for_tests")
    class Scored(_Constant):
        pass

    assert {"random", "regularized_evolution", "reinforce", "local_search", "_decorated_for_tests"} <= set(list_searchers())
    assert {"lookup", "weight_sharing", "scratch", "_decorated_for_tests"} <= set(list_evaluators())
    assert isinstance(build_searcher("_decorated_for_tests", _Triple()), Decorated)
    assert isinstance(build_evaluator("_decorated_for_tests", "nasbench201"), Scored)
    with pytest.raises(ValueError, match="unknown evaluator 'oracle'; valid evaluators are: .*lookup, scratch"):
        build_evaluator("oracle", "nasbench201")
    with pytest.raises(ValueError, match="already registered"):
        register_searcher("random", RandomSearch)
    with pytest.raises(ValueError, match="unknown key 'populaton_size'; valid keys are: population_size"):
        build_searcher("regularized_evolution", "nasbench201", populaton_size=3)


def test_a_checkpoint_that_recorded_the_space_by_name_resumes(tmp_path):
    """Earlier versions recorded a registered space by its name; that is the space with its default arguments,
    so such a checkpoint resumes a search configured with that space."""
    first = DiscreteSearch(budget=6, seed=2)
    _fit(first, tmp_path / "first", logger=False, enable_checkpointing=False)
    state = tmp_path / "first" / "checkpoints" / "search_state.ckpt"
    checkpoint = torch.load(state, weights_only=True)
    checkpoint["hyper_parameters"]["space"] = "nasbench201"
    checkpoint["discrete_search"]["space"] = "nasbench201"
    earlier = tmp_path / "earlier.ckpt"
    torch.save(checkpoint, earlier)
    resumed = DiscreteSearch(budget=9, seed=2)
    _fit(resumed, tmp_path / "resumed", max_epochs=3, logger=False, enable_checkpointing=False, ckpt_path=earlier)
    assert [h["arch"] for h in resumed.history[:6]] == [h["arch"] for h in first.history]
    assert len(resumed.history) == 9
    other = DiscreteSearch(space={"class_path": "darts_lightning.NB201Space", "init_args": {"channels": 8}}, budget=9)
    with pytest.raises(ValueError, match="model.space.channels: checkpoint 16, configured 8"):
        _fit(other, tmp_path / "other", max_epochs=3, logger=False, enable_checkpointing=False, ckpt_path=earlier)
