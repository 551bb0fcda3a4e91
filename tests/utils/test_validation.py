"""Every argument of the configurable classes is checked in the constructor, whatever the other arguments are.

Each row gives one argument a bad value and leaves every other argument at its default (``hessian`` is
refused in a second-order estimator whatever else is set, the early-stop settings of the eigenvalue callback
with early stopping off too); the error must be a ValueError that names the argument and, for a choice,
lists the valid values. The search is composed of parts (space, relaxation, estimator, optimizers, remedies,
callbacks): each part checks its own arguments, and the search checks which parts it is given.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from darts_lightning import (
    ArchOptimizer,
    ArchWarmup,
    ClassificationDataModule,
    DARTSSearch,
    DartsSpace,
    DiscreteSearch,
    GenotypeClassifier,
    HessianEigenvalue,
    NB201Space,
    ScratchEvaluator,
    SearchDataModule,
    SecondOrderGradient,
    SinglePathSupernet,
    WeightOptimizer,
    WeightSharingEvaluator,
)
from darts_lightning.differentiable.diagnostics import EigenvalueEarlyStop
from darts_lightning.differentiable.estimators import FirstOrderGradient
from darts_lightning.differentiable.relaxations import (
    DirichletRelaxation,
    GDASRelaxation,
    PCDartsRelaxation,
    SNASRelaxation,
    build_relaxation,
)
from darts_lightning.differentiable.remedies import BetaDecay
from darts_lightning.discrete.evaluators import LookupEvaluator
from darts_lightning.discrete.searchers import LocalSearch, RandomSearch, RegularizedEvolution, Reinforce

REPO = Path(__file__).resolve().parents[2]
YES = "yes"  # a string where a flag is expected
FLAG = "True, False"

# (class, argument, bad value, texts the message must hold besides the argument's name)
ROWS: list[tuple[type, str, object, tuple[str, ...]]] = [
    *[(DARTSSearch, name, value, texts) for name, value, texts in [
        ("space", "nb101", ("darts, nasbench201",)),
        ("relaxation", "gumbel", ("darts, drnas, gdas, pcdarts, snas",)),
        ("estimator", "third_order", ("first_order, second_order",)),
        ("weight_optimizer", "sgd", ("WeightOptimizer",)),
        ("arch_optimizer", "rmsprop", ("ArchOptimizer",)),
        ("remedies", ["early_stop"], ("arch_warmup, auxiliary_skip, beta_decay",)),
        ("step_order", "both", ("arch_first, weight_first, joint",)),
        ("in_channels", 0, ("positive integer",)),
        ("num_classes", 1, (">= 2",)),
        ("image_size", 0, ()),
        ("sample_seed", -1, ()),
        ("channels_last", YES, ("None, True, False",)),
    ]],
    *[(DartsSpace, name, value, texts) for name, value, texts in [
        ("ops", ["none", "conv_9x9"], ("conv_9x9", "sep_conv_3x3")),
        ("nodes", 0, ()),
        ("multiplier", 5, ("[1, 4]",)),
        ("channels", 0, ()),
        ("layers", 0, ()),
        ("stem_multiplier", 0, ()),
        ("genotype_rule", "best", ("darts, gdas, snas",)),
        ("edge_normalization", YES, (FLAG,)),
        ("pool_batch_norm", YES, (FLAG,)),
        ("last_activation", YES, (FLAG,)),
        ("drop_path", 1.0, ("[0, 1)",)),
    ]],
    *[(NB201Space, name, value, texts) for name, value, texts in [
        ("channels", 0, ()),
        ("cells_per_stage", 0, ()),
        ("pool_batch_norm", YES, (FLAG,)),
    ]],
    (PCDartsRelaxation, "partial_channels", 0, ()),
    *[(relaxation, name, value, texts) for relaxation in (GDASRelaxation, SNASRelaxation) for name, value, texts in [
        ("tau_max", 0.05, ("tau_min",)),
        ("tau_min", 0.0, ()),
        ("schedule", "cosine", ("linear, exponential, snas",)),
        ("partial_channels", 0, ()),
        ("max_draws", 0, ()),
    ]],
    *[(DirichletRelaxation, name, value, texts) for name, value, texts in [
        ("kl_weight", -1.0, ()),
        ("prior", 0.0, ()),
        ("partial_channels", 0, ()),
    ]],
    (FirstOrderGradient, "arch_batch", "both", ("val, train",)),
    *[(SecondOrderGradient, name, value, texts) for name, value, texts in [
        ("hessian", "foo", ("finite_difference, exact",)),
        ("epsilon", 0.0, ("positive",)),
        ("xi", -0.1, ()),
        ("arch_batch", "both", ("val, train",)),
    ]],
    *[(WeightOptimizer, name, value, texts) for name, value, texts in [
        ("lr", -0.1, ()),
        ("lr_min", -0.1, ()),
        ("momentum", 1.0, ("[0, 1)",)),
        ("weight_decay", -1e-4, ()),
        ("nesterov", YES, (FLAG,)),
        ("grad_clip", -1.0, ()),
        ("lr_epoch_offset", -1, ()),
        ("clip_includes_arch", YES, (FLAG,)),
    ]],
    *[(ArchOptimizer, name, value, texts) for name, value, texts in [
        ("name", "rmsprop", ("adam, sgd",)),
        ("lr", -1e-3, ()),
        ("betas", (0.5, 1.0), ("[0, 1)",)),
        ("weight_decay", -1e-3, ()),
        ("grad_clip", -1.0, ()),
    ]],
    (ArchWarmup, "epochs", -1, ()),
    (BetaDecay, "max_weight", -1.0, ()),
    *[(HessianEigenvalue, name, value, texts) for name, value, texts in [
        ("every", 0, ()),
        ("early_stop", YES, (FLAG,)),
        ("window", 0, ()),
        ("delta", 0, ()),
        ("factor", 0.0, ()),
        ("start_epoch", -1, ()),
    ]],
    *[(GenotypeClassifier, name, value, texts) for name, value, texts in [
        ("genotype", "DARTS_V9", ("known names",)),
        ("in_channels", 0, ()),
        ("num_classes", 1, ()),
        ("image_size", 0, ()),
        ("channels", 0, ()),
        ("layers", 0, ()),
        ("variant", "mobile", ("cifar, imagenet",)),
        ("auxiliary_weight", -0.4, ()),
        ("drop_path_prob", 1.0, ("[0, 1)",)),
        ("lr", -0.025, ()),
        ("lr_min", -1.0, ()),
        ("momentum", 1.0, ("[0, 1)",)),
        ("weight_decay", -3e-4, ()),
        ("channels_last", YES, ("None, True, False",)),
        ("drop_path_seed", -1, ()),
        ("allow_import_paths", YES, (FLAG,)),
    ]],
    *[(DiscreteSearch, name, value, texts) for name, value, texts in [
        ("space", "nb101", ("darts, nasbench201",)),
        ("searcher", "bayes", ("local_search, pareto_evolution, random, regularized_evolution, reinforce",)),
        ("searcher_args", {"population": 5}, ("'population'",)),
        ("evaluator", "oracle", ("lookup",)),
        ("evaluator_args", {"table": "x.csv"}, ("'table'", "path, dataset, metric")),
        ("budget", 0, ()),
        ("max_samples", 0, ()),
        ("patience", 0, ()),
        ("seed", -1, ()),
        ("checkpoint_every", 0, ()),
        ("constraints", [{"cost": "flops", "budget": 1e6}], ("latency, multiply_adds, parameters",)),
        ("objectives", ["flops"], ("latency, multiply_adds, parameters",)),
        ("data_shape", {"in_channels": 0, "num_classes": 10, "image_size": 32}, ("data_shape.in_channels",)),
        ("executor", "ray_cluster", ("valid executors are: ray, replay, sequential",)),
        ("executor", {"class_path": "darts_lightning.discrete.executors.SequentialExecutor",
                      "init_args": {"max_retries": -1}}, ("max_retries",)),
        ("fidelity", {"min_epoch": 1}, ("fidelity", "'min_epoch'", "min_epochs, max_epochs, eta")),
        ("fidelity", {"min_epochs": 2, "max_epochs": 4}, ("max_epochs", "at least min_epochs · eta = 6")),
    ]],
    *[(data, name, value, texts) for data in (SearchDataModule, ClassificationDataModule) for name, value, texts in [
        ("dataset", "imagenet", ("digits", "cifar10")),
        ("batch_size", 0, ()),
        ("num_workers", -1, ()),
        ("seed", -1, ()),
        ("download", YES, (FLAG,)),
        ("cutout_length", -1, ()),
        ("resize", 0, ()),
        ("train_portion", 1.0, ("(0, 1)",)),
    ]],
    (ClassificationDataModule, "holdout", YES, (FLAG,)),
    (ClassificationDataModule, "train_portion", 0.0, ("(0, 1)",)),
    *[(LookupEvaluator, name, value, texts) for name, value, texts in [
        ("space", "nb101", ("darts, nasbench201",)),
        ("dataset", "cifar11", ("cifar10, cifar100, imagenet16",)),
        ("metric", "train", ("valid, test",)),
    ]],
    *[(WeightSharingEvaluator, name, value, texts) for name, value, texts in [
        ("space", "nb101", ("darts, nasbench201",)),
        ("supernet", None, ("SinglePathSupernet",)),
        ("data", {"dataset": "digits", "batchsize": 32}, ("'batchsize'", "batch_size")),
        ("batches", 0, ()),
        ("reestimate_bn", YES, (FLAG,)),
        ("bn_batches", 0, ()),
        ("device", "gpu0", ("cpu",)),
        ("metric", "torchmetrics.NoSuchMetric", ("accuracy",)),
        ("metric_args", {"num_classes": 10}, ("accuracy",)),
    ]],
    *[(ScratchEvaluator, name, value, texts) for name, value, texts in [
        ("space", "nb101", ("darts, nasbench201",)),
        ("epochs", 0, ()),
        ("channels", 0, ()),
        ("layers", 0, ()),
        ("data", {"dataset": "digits", "batchsize": 32}, ("'batchsize'", "batch_size")),
        ("lr", -0.025, ()),
        ("lr_min", -1.0, ()),
        ("momentum", 1.0, ("[0, 1)",)),
        ("weight_decay", -3e-4, ()),
        ("grad_clip", -5.0, ()),
        ("seed", -1, ()),
        ("accelerator", "quantum", ("auto", "cpu", "cuda")),
        ("trainer_args", {"max_epoch": 1}, ("'max_epoch'", "max_epochs")),
    ]],
    *[(SinglePathSupernet, name, value, texts) for name, value, texts in [
        ("space", "nb101", ("darts, nasbench201",)),
        ("in_channels", 0, ()),
        ("num_classes", 1, ()),
        ("image_size", 0, ()),
        ("seed", -1, ()),
        ("lr", -0.025, ()),
        ("lr_min", -1.0, ()),
        ("momentum", 1.0, ("[0, 1)",)),
        ("nesterov", YES, (FLAG,)),
        ("weight_decay", -5e-4, ()),
        ("grad_clip", -5.0, ()),
        ("channels_last", YES, ("None, True, False",)),
    ]],
    *[(searcher, name, value, texts) for searcher in (RandomSearch, RegularizedEvolution, Reinforce, LocalSearch)
      for name, value, texts in [("space", "nb101", ("darts, nasbench201",)), ("seed", -1, ())]],
    *[(RegularizedEvolution, name, value, texts) for name, value, texts in [
        ("population_size", 0, ()),
        ("sample_size", 0, ()),
        ("removal", "youngest", ("oldest, worst",)),
        ("crossover", YES, (FLAG,)),
    ]],
    *[(Reinforce, name, value, texts) for name, value, texts in [
        ("learning_rate", -1e-3, ()),
        ("momentum", 1.0, ("[0, 1)",)),
        ("controller", "gru", ("factorised, lstm",)),
        ("hidden_size", 0, ()),
        ("reward_scale", 0.0, ()),
        ("converge_threshold", 1.5, ("[0, 1]",)),
    ]],
    (LocalSearch, "initial", 0, ()),
    (LocalSearch, "improvement", "random", ("first, best",)),
    *[(EigenvalueEarlyStop, name, value, ()) for name, value in [
        ("window", 0), ("delta", 0), ("factor", 0.0), ("start_epoch", -1), ("every", 0),
    ]],
]

#: arguments no value of which is wrong in itself: free paths (a missing file is a FileNotFoundError,
#: see test_discrete) and the search space's name of a searcher, which is required
UNCHECKED = {(SearchDataModule, "root"), (ClassificationDataModule, "root"), (ClassificationDataModule, "test_root"),
             (LookupEvaluator, "path"), (ScratchEvaluator, "log_dir")}

#: arguments without a default
REQUIRED = {RandomSearch: {"space": "nasbench201"}, RegularizedEvolution: {"space": "nasbench201"},
            Reinforce: {"space": "nasbench201"}, LocalSearch: {"space": "nasbench201"}}


@pytest.fixture
def no_network(monkeypatch):
    """Building a supernet fails the test: the arguments are checked before anything is built."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network was built before the arguments were checked")

    for name in ("darts_lightning.spaces.darts.space.SearchNetwork", "darts_lightning.spaces.nasbench201.NB201Supernet",
                 "darts_lightning.spaces.nasbench201.NB201Network"):
        monkeypatch.setattr(name, refuse)


@pytest.mark.parametrize("cls, name, value, texts", ROWS, ids=[f"{c.__name__}-{n}={v!r}" for c, n, v, _ in ROWS])
def test_every_argument_is_checked_with_the_others_at_their_defaults(cls, name, value, texts, no_network):
    kwargs = {**REQUIRED.get(cls, {}), name: value}
    with pytest.raises(ValueError) as error:
        cls(**kwargs)
    message = str(error.value)
    for text in (name, *texts):
        assert text in message, f"{text!r} missing from: {message}"
    assert "\n" not in message


def test_the_table_covers_every_constructor_argument():
    covered = {(cls, name) for cls, name, _, _ in ROWS} | UNCHECKED
    for cls in {cls for cls, _, _, _ in ROWS}:
        arguments = set(inspect.signature(cls.__init__).parameters) - {"self"}
        missing = sorted(a for a in arguments if (cls, a) not in covered)
        assert not missing, f"{cls.__name__}: {missing}"


@pytest.mark.parametrize("relaxation, args, texts", [
    ("gdas", {"tau_max": 0.1, "tau_min": 1.0}, ("tau_max", "tau_min")),
    ("snas", {"schedule": "cosine"}, ("schedule", "linear, exponential, snas")),
    ("gdas", {"max_draws": 0}, ("max_draws",)),
    ("pcdarts", {"partial_channels": 0}, ("partial_channels",)),
    ("drnas", {"kl_weight": -1.0}, ("kl_weight",)),
    ("drnas", {"prior": 0.0}, ("prior",)),
    ("drnas", {"tau_max": 10.0}, ("relaxation 'drnas'", "'tau_max'", "kl_weight, prior, partial_channels")),
    ("snas", {"kl_weight": 1e-3},
     ("relaxation 'snas'", "'kl_weight'", "tau_max, tau_min, schedule, partial_channels, max_draws")),
])
def test_relaxation_args_are_checked_by_name_and_value(relaxation, args, texts, no_network):
    with pytest.raises(ValueError) as error:
        build_relaxation(relaxation, **args)
    assert all(text in str(error.value) for text in texts), str(error.value)


def test_nesterov_needs_a_momentum(no_network):
    with pytest.raises(ValueError, match="nesterov needs a momentum"):
        WeightOptimizer(nesterov=True, momentum=0.0)
    with pytest.raises(ValueError, match="nesterov needs a momentum"):
        SinglePathSupernet(momentum=0.0)


def test_console_refuses_an_unknown_hessian_before_loading_data(tmp_path, capsys):
    """``--model.estimator.hessian foo`` in a second-order search fails while the model is built, in one line
    (``main`` is the console script's function)."""
    from darts_lightning.entry.cli import main

    status = main(["fit", "--config", str(REPO / "configs" / "darts_digits.yaml"),
                   "--model.estimator", "darts_lightning.SecondOrderGradient", "--model.estimator.hessian", "foo",
                   "--model.space.channels", "4", "--model.space.layers", "2",
                   "--trainer.default_root_dir", str(tmp_path / "run")])
    assert status == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert line.startswith("darts-lightning: error: hessian must be one of") and "finite_difference" in line
    assert not (tmp_path / "run").exists()
