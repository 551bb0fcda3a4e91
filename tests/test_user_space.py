"""A user's search space in one file (examples/mobile_space.py), run through the package exactly as a user runs
it, with the example's folder on the import path and nothing of the package changed: its own answer type, the
differentiable searches (DARTS of both orders, GDAS), the discrete searches (random search and regularized
evolution with the scratch evaluator), the export of the answer, and its retraining."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from darts_lightning import (
    ArchClassifier,
    ArchOptimizer,
    AuxiliarySkip,
    ClassificationDataModule,
    DARTSSearch,
    DiscreteSearch,
    FirstOrderGradient,
    SearchDataModule,
    SecondOrderGradient,
)
from darts_lightning.differentiable.relaxations import GDASRelaxation
from darts_lightning.entry.cli import main
from darts_lightning.entry.export import export_main

REPO = Path(__file__).resolve().parents[1]
DIGITS = dict(in_channels=1, num_classes=10, image_size=8)
QUIET = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=4)


@pytest.fixture(scope="module")
def mobile():
    """The example file, imported by its module name as a user's code is (its class path then names it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO / "examples"))
        import mobile_space

        yield mobile_space


@pytest.fixture(scope="module")
def searched(mobile, tmp_path_factory):
    """One epoch of first-order DARTS over the stack (C = 4): the run folder and the module."""
    root = tmp_path_factory.mktemp("darts")
    model = DARTSSearch(space=mobile.MobileSpace(channels=4), estimator=FirstOrderGradient(),
                        arch_optimizer=ArchOptimizer(lr=3e-2), **DIGITS)
    before = model.network.alpha.detach().clone()
    trainer = pl.Trainer(max_epochs=1, default_root_dir=str(root), **QUIET)
    trainer.fit(model, SearchDataModule("digits", batch_size=64))
    assert not torch.equal(before, model.network.alpha), "alpha was trained"
    return Path(trainer.log_dir), model


def test_the_answer_type_reads_writes_prints_draws_and_encodes(mobile):
    space = mobile.MobileSpace(channels=4)
    assert len(space.decisions()) == 6 and space.size() == 7**6
    text = "mbconv(k=5,e=6) skip | sepconv(k=3) mbconv(k=3,e=3) | skip mbconv(k=5,e=3)"
    arch = space.parse(text)
    assert isinstance(arch, mobile.MobileArch) and space.format(arch) == text
    assert [(b.op, b.kernel, b.expansion) for b in arch.stages[0]] == [("mbconv", 5, 6), ("skip", 0, 1)]
    assert arch.table().splitlines()[1].split() == ["1", "1", "mbconv", "5x5", "6"]
    assert space.draw(arch).axes, "a matplotlib figure"
    with pytest.raises(ValueError, match=r"mbconv\(k=7,e=6\) is not a block of the mobile space; the blocks are"):
        space.parse("mbconv(k=7,e=6) skip | skip skip | skip skip")
    with pytest.raises(ValueError, match=r"has depths \[2, 1\]; this space has \[2, 2, 2\]"):
        space.parse("skip skip | skip")
    generator = random.Random(0)
    for _ in range(20):
        sample = space.sample(generator)
        assert space.from_decisions(space.to_decisions(sample)) == sample == space.parse(space.format(sample))
        child = space.mutate(sample, generator)
        assert sum(a != b for a, b in zip(space.to_decisions(sample), space.to_decisions(child))) == 1
    assert len(space.neighbours(arch)) == 6 * 6
    # where a stage's skips sit does not change the function: one key
    swapped = space.parse("skip mbconv(k=5,e=6) | sepconv(k=3) mbconv(k=3,e=3) | mbconv(k=5,e=3) skip")
    assert space.key(swapped) == space.key(arch) and swapped != arch
    assert space.key(space.parse(text.replace("sepconv(k=3)", "sepconv(k=5)"))) != space.key(arch)


def test_a_differentiable_search_writes_the_answer_and_export_reproduces_it(mobile, searched, tmp_path, capsys):
    run_dir, model = searched
    answer = model.selected_answer()
    assert isinstance(answer, mobile.MobileArch)
    assert mobile.MobileSpace(channels=4).read(run_dir / "stack.txt") == answer
    assert (run_dir / "stack.png").is_file()
    checkpoint = run_dir / "checkpoints" / "epoch=0-step=12.ckpt"
    # Rebuilding the search imports the user's module: only with consent.
    with pytest.raises(ValueError, match=r"import path \(mobile_space\.MobileSpace\).*--allow-import-paths"):
        export_main([str(checkpoint), "--out", str(tmp_path / "stack.txt")])
    assert export_main([str(checkpoint), "--allow-import-paths", "--out", str(tmp_path / "stack.txt")]) == 0
    assert (tmp_path / "stack.txt").read_text() == (run_dir / "stack.txt").read_text()
    assert str(answer) in capsys.readouterr().out


@pytest.mark.parametrize("method", ["second_order", "gdas"])
def test_second_order_darts_and_gdas_search_the_stack(mobile, method, tmp_path):
    if method == "second_order":
        parts = dict(estimator=SecondOrderGradient())
    else:
        parts = dict(relaxation=GDASRelaxation(tau_max=10.0, tau_min=0.1), estimator=FirstOrderGradient())
    model = DARTSSearch(space=mobile.MobileSpace(channels=4), arch_optimizer=ArchOptimizer(lr=3e-2), **parts, **DIGITS)
    before = model.network.alpha.detach().clone()
    trainer = pl.Trainer(max_epochs=1, default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(model, SearchDataModule("digits", batch_size=64))
    assert trainer.global_step == 12 and not torch.equal(before, model.network.alpha)
    answer = mobile.MobileSpace(channels=4).read(Path(trainer.log_dir) / "stack.txt")
    assert answer == model.selected_answer() == model.network.derive()


def test_retraining_the_exported_answer_and_loading_its_export(mobile, searched, tmp_path):
    run_dir, model = searched
    space = mobile.MobileSpace(channels=4)
    classifier = ArchClassifier(space=space, arch=str(run_dir / "stack.txt"), channels=4, **DIGITS)
    assert classifier.arch == model.selected_answer()
    data = ClassificationDataModule("digits", batch_size=64, cutout_length=0)
    trainer = pl.Trainer(max_epochs=1, default_root_dir=str(tmp_path), gradient_clip_val=5.0, **QUIET)
    trainer.fit(classifier, data)
    (result,) = trainer.test(classifier, data, verbose=False)
    assert 0.0 <= result["test/acc"] <= 1.0

    export = Path(trainer.log_dir) / "export"
    assert space.read(export / "stack.txt") == classifier.arch
    saved = torch.load(export / "model.pt", weights_only=True)
    assert saved["space"] == {"class_path": "mobile_space.MobileSpace", "init_args": {"channels": 4, "depths": [2, 2, 2]}}
    assert saved["arch"] == str(classifier.arch) and saved["build"]["channels"] == 4
    rebuilt = ArchClassifier(space=saved["space"], arch=str(export / "stack.txt"), channels=4, **DIGITS).network.eval()
    rebuilt.load_state_dict(saved["state_dict"])
    x = torch.randn(3, 1, 8, 8)
    classifier.eval()
    torch.testing.assert_close(rebuilt(x), classifier.network(x))
    program = torch.export.load(str(export / "model.pt2")).module()
    torch.testing.assert_close(program(x), classifier.network(x), rtol=1e-4, atol=1e-5)
    assert (export / "model.onnx").is_file() and (export / "summary.json").is_file()


@pytest.mark.parametrize("searcher", ["random", "regularized_evolution"])
def test_discrete_searches_train_each_stack_from_scratch(mobile, searcher, tmp_path):
    scratch = {"epochs": 1, "channels": 4, "layers": 1, "data": {"dataset": "digits", "batch_size": 64},
               "trainer_args": {"limit_train_batches": 4}}
    searcher_args = {"population_size": 2, "sample_size": 2} if searcher == "regularized_evolution" else {}
    model = DiscreteSearch(space=mobile.MobileSpace(channels=4), searcher=searcher, searcher_args=searcher_args,
                           evaluator="scratch", evaluator_args=scratch, budget=3, seed=1)
    trainer = pl.Trainer(max_epochs=-1, default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(model)
    space = model.space
    assert len({space.key(space.parse(h["arch"])) for h in model.history}) == 3
    assert all(0.0 <= h["reward"] <= 1.0 and h["metrics"]["steps"] == 4 for h in model.history)
    best = max(model.history, key=lambda h: h["reward"])
    assert space.read(Path(trainer.log_dir) / "stack.txt") == space.parse(best["arch"])


def test_what_the_space_cannot_serve_is_a_clear_error(mobile):
    space = mobile.MobileSpace(channels=4)
    with pytest.raises(ValueError, match="blocks are residual.*remove the AuxiliarySkip remedy"):
        DARTSSearch(space=space, remedies=[AuxiliarySkip()], **DIGITS)
    with pytest.raises(ValueError, match="does not fit the mobile space"):
        DiscreteSearch(space=space, evaluator="lookup", budget=3)
    with pytest.raises(TypeError, match="answers are MobileArch stacks, got NB201Arch"):
        from darts_lightning import NB201Arch

        space.build_network(NB201Arch(("none",) * 6), num_classes=10)
    with pytest.raises(ValueError, match="no answer to retrain: give model.arch, the answer file a search wrote"):
        ArchClassifier(space=space, **DIGITS)


def test_the_space_composes_with_a_shipped_config_on_the_command_line(mobile, tmp_path):
    """The README's command: a shipped method config plus the one-line space config of the example."""
    assert main([
        "fit", "--config", str(REPO / "configs" / "gdas_digits.yaml"), "--config", str(REPO / "examples" / "mobile_space.yaml"),
        "--model.init_args.space.init_args.channels", "4", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
    ]) == 0
    (run_dir,) = (tmp_path / "lightning_logs").iterdir()
    assert "class_path: mobile_space.MobileSpace" in (run_dir / "config.yaml").read_text()
    assert isinstance(mobile.MobileSpace(channels=4).read(run_dir / "stack.txt"), mobile.MobileArch)


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
@pytest.mark.parametrize(("config", "module"), [
    ("mobile_evolution_digits.yaml", DiscreteSearch), ("mobile_retrain_digits.yaml", ArchClassifier),
])
def test_the_example_configs_build_their_run(mobile, config, module, tmp_path, monkeypatch):
    from darts_lightning.entry.runner import DartsLightningCLI

    monkeypatch.chdir(tmp_path)  # the configs' run folders are relative
    cli = DartsLightningCLI(
        pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False,
        save_config_callback=None, parser_kwargs={"exit_on_error": False},
        args=["--config", str(REPO / "examples" / config), "--trainer.logger", "false"],
    )
    assert isinstance(cli.model, module) and isinstance(cli.model.space, mobile.MobileSpace)
    assert cli.model.space.config()["init_args"] == {"channels": 8, "depths": [2, 2, 2]}


def test_single_path_weight_sharing_trains_and_scores_stacks(mobile, tmp_path):
    """Random single paths through the supernet (Li & Talwalkar's weight sharing) and the weight-sharing
    evaluator run on the user's supernet through its ``path``."""
    from darts_lightning import SinglePathSupernet, WeightSharingEvaluator

    space = mobile.MobileSpace(channels=4)
    model = SinglePathSupernet(space=space, **DIGITS)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=1, default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(model, SearchDataModule("digits", batch_size=64))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    evaluator = WeightSharingEvaluator(space, model, data=SearchDataModule("digits", batch_size=64), batches=1)
    rewards = [evaluator.evaluate(space.sample(random.Random(seed))).reward for seed in range(3)]
    assert all(0.0 <= r <= 1.0 for r in rewards)
