"""Single-path weight sharing: one op per edge, deterministic paths, supernet training, the two evaluators."""

from __future__ import annotations

import random

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from darts_lightning import DiscreteSearch, MixedEdge, SearchDataModule
from darts_lightning.discrete.evaluators import build_evaluator
from darts_lightning.discrete.scratch import ScratchEvaluator
from darts_lightning.discrete.weight_sharing import SinglePathRelaxation, SinglePathSupernet, WeightSharingEvaluator, sample_path
from darts_lightning.spaces import DartsSpace, NB201Space, SearchSpace, get_space
from darts_lightning.spaces.cell import Cell
from darts_lightning.spaces.ops import NB201_OPS
from darts_lightning.utils.resume import OutdatedCheckpointError
from darts_lightning.utils.training import NonFiniteLossError
from tests.conftest import quick_trainer

#: the smallest spaces for the 8×8 one-channel digits: 4 channels, 1 cell per stage (NB201) or 3 cells (DARTS)
TINY_SPACES: dict[str, SearchSpace] = {
    "nasbench201": NB201Space(channels=4, cells_per_stage=1),
    "darts": DartsSpace(channels=4, layers=3),
}


def tiny_supernet(space: str | SearchSpace = "nasbench201", **overrides) -> SinglePathSupernet:
    """A single-path supernet of a tiny space (:data:`TINY_SPACES`, or the space given) for the digits."""
    kwargs = dict(in_channels=1, num_classes=10, image_size=8)
    kwargs.update(overrides)
    return SinglePathSupernet(TINY_SPACES[space] if isinstance(space, str) else space, **kwargs)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _chosen_columns(model: SinglePathSupernet, arch) -> dict[MixedEdge, int | None]:
    """The α column each mixed edge must compute for ``arch`` (``None``: the edge is absent)."""
    rows = list(model.network.path(arch).values())  # one cell type (NB201) or normal and reduce (DARTS)
    chosen = {}
    for cell in model.network.modules():
        if not isinstance(cell, Cell):
            continue
        cell_rows = rows[1] if getattr(cell, "reduction", False) and len(rows) == 2 else rows[0]
        for k, edge in enumerate(cell.edges):
            chosen[edge] = int(cell_rows[k].argmax()) if cell_rows[k].any() else None
    return chosen


# --------------------------------------------------------------------------- one op per edge


@pytest.mark.parametrize("space", ["nasbench201", "darts"])
def test_a_single_path_step_runs_only_the_sampled_ops(space):
    torch.manual_seed(0)
    model = tiny_supernet(space)
    arch = model.path_at(3)
    chosen = _chosen_columns(model, arch)
    assert chosen and all(isinstance(e, MixedEdge) for e in chosen)
    ran: set[int] = set()

    def forbid(module, args):
        raise AssertionError("an op off the sampled path was called")

    def record(op):
        return lambda module, args: ran.add(id(op))

    expected = set()
    for edge, column in chosen.items():
        for op, index in zip(edge.ops, edge.op_indices):
            # Hooks on every layer: an op that begins with a ReLU is run layer by layer after a shared ReLU.
            for layer in op.modules():
                layer.register_forward_pre_hook(record(op) if index == column else forbid)
            if index == column:
                expected.add(id(op))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(10, (8,))
    F.cross_entropy(model(x, arch), y).backward()
    assert ran == expected and expected
    for edge, column in chosen.items():
        for op, index in zip(edge.ops, edge.op_indices):
            for p in op.parameters():
                assert (p.grad is None) == (index != column), "only the sampled ops receive gradients"
    assert all(a.grad is None and not a.requires_grad for a in model.network.arch_parameters())


def test_single_path_mix_is_the_chosen_op_none_is_zero_and_an_absent_edge_is_disconnected():
    torch.manual_seed(0)
    relaxation = SinglePathRelaxation()
    edge = MixedEdge(NB201_OPS, 4, 1, relaxation).eval()
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    for column, name in enumerate(NB201_OPS):
        weights = F.one_hot(torch.tensor(column), len(NB201_OPS)).float()
        out = relaxation.mix(edge, x, weights)
        if name == "none":
            assert torch.equal(out, torch.zeros_like(x)) and out.requires_grad
        else:
            torch.testing.assert_close(out, edge.ops[edge.op_indices.index(column)](x))
    absent = relaxation.mix(edge, x, torch.zeros(len(NB201_OPS)))
    assert torch.equal(absent, torch.zeros_like(x)) and not absent.requires_grad
    with pytest.raises(RuntimeError, match=r"network\(x, path=network.path\(arch\)\)"):
        relaxation.mixing(torch.zeros(6, 5), None)


# --------------------------------------------------------------------------- sampling


def test_paths_are_a_function_of_seed_and_step_only():
    space = get_space("nasbench201")
    first = [space.format(sample_path(space, 7, step)) for step in range(200)]
    random.seed(123)
    torch.manual_seed(123)  # global random state plays no part
    assert first == [space.format(sample_path(space, 7, step)) for step in range(200)]
    assert first != [space.format(sample_path(space, 8, step)) for step in range(200)]
    assert len(set(first)) > 190, "a fresh uniform draw every step"
    for edge in range(6):  # every op of every edge is drawn
        assert {space.parse(a).ops[edge] for a in first} == set(NB201_OPS)
    a, b = tiny_supernet(seed=7), tiny_supernet(seed=7)
    assert [a.space.format(a.path_at(s)) for s in range(5)] == first[:5] == [b.space.format(b.path_at(s)) for s in range(5)]
    darts = get_space("darts")
    assert sample_path(darts, 0, 3) == sample_path(darts, 0, 3) != sample_path(darts, 0, 4)


# --------------------------------------------------------------------------- supernet training and scoring


class _Paths(pl.Callback):
    def __init__(self) -> None:
        self.paths: list[str] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.paths.append(pl_module.last_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A NAS-Bench-201 supernet after 2 epochs of 3 steps on the digits, its checkpoint and its history."""
    root = tmp_path_factory.mktemp("supernet")
    pl.seed_everything(0)
    model = tiny_supernet()
    before = _state(model)
    paths = _Paths()
    trainer = quick_trainer(root, callbacks=[paths])
    trainer.fit(model, SearchDataModule("digits", batch_size=16))
    return {"model": model, "before": before, "paths": paths.paths, "trainer": trainer,
            "checkpoint": trainer.checkpoint_callback.best_model_path}


def test_a_short_supernet_fit_trains_the_sampled_paths_only(trained):
    model, before, trainer = trained["model"], trained["before"], trained["trainer"]
    after = model.state_dict()
    assert trainer.global_step == 6
    assert trained["paths"] == [model.space.format(model.path_at(s)) for s in range(6)]
    assert not torch.equal(before["network.stem.0.weight"], after["network.stem.0.weight"])
    assert not torch.equal(before["network.classifier.weight"], after["network.classifier.weight"])
    assert torch.equal(before["network.alpha"], after["network.alpha"])
    sampled = [model.space.parse(p) for p in trained["paths"]]
    moved = unmoved = 0
    for name, edge in model.network.named_modules():
        if not isinstance(edge, MixedEdge):
            continue
        k = int(name.rsplit(".", 1)[1])
        for j, index in enumerate(edge.op_indices):
            on_a_path = any(a.ops[k] == NB201_OPS[index] for a in sampled)
            for pname, _ in edge.ops[j].named_parameters():
                key = f"network.{name}.ops.{j}.{pname}"
                if on_a_path:
                    moved += not torch.equal(before[key], after[key])
                else:
                    unmoved += 1
                    assert torch.equal(before[key], after[key]), f"{key} is on no sampled path but moved"
    assert moved > 0 and unmoved > 0
    assert {"train/loss_epoch", "val/acc"} <= set(trainer.callback_metrics)


def test_weight_sharing_evaluator_scores_without_changing_the_supernet(trained):
    model = trained["model"]
    model.train()
    before = _state(model)
    evaluator = WeightSharingEvaluator("nasbench201", model, data=SearchDataModule("digits", batch_size=32),
                                       batches=2, reestimate_bn=True, bn_batches=2)
    generator = random.Random(0)
    archs = [model.space.sample(generator) for _ in range(3)]
    results = [evaluator.evaluate(a) for a in archs]
    for r in results:
        assert 0.0 <= r.reward <= 1.0 and r.cost > 0 and r.metrics["images"] == 64
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), f"{key} changed"
    assert model.training
    assert evaluator.evaluate(archs[0]).reward == results[0].reward
    plain = WeightSharingEvaluator("nasbench201", model, data={"dataset": "digits", "batch_size": 32}, batches=2)
    assert 0.0 <= plain.evaluate(archs[0]).reward <= 1.0
    with pytest.raises(ValueError, match="darts space"):
        WeightSharingEvaluator("darts", model, data=SearchDataModule("digits"))
    # the evaluator's space is any of the supernet's kind: its size is the supernet's own
    assert WeightSharingEvaluator(NB201Space(), model, data=SearchDataModule("digits"), batches=1).module is model


def test_a_discrete_search_scored_by_a_supernet_checkpoint(trained, tmp_path):
    checkpoint = trained["checkpoint"]
    recorded = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["space"]
    assert recorded == TINY_SPACES["nasbench201"].config()  # plain data, from which the supernet is rebuilt
    evaluator = build_evaluator("weight_sharing", "nasbench201", supernet=checkpoint, batches=1, reestimate_bn=False)
    assert evaluator.data.batch_size == 16, "the data module recorded in the checkpoint"
    arch = trained["model"].path_at(0)
    trained["model"].eval()
    with torch.no_grad():
        x, y = evaluator.val_batches[0]
        expected = (trained["model"](x, arch).argmax(-1) == y).float().mean().item()
    assert evaluator.evaluate(arch).reward == pytest.approx(expected)

    # A checkpoint of an earlier version, which recorded the size beside the space's name, is refused with
    # what to configure instead of failing on mismatched weights.
    earlier = torch.load(checkpoint, weights_only=True)
    earlier["hyper_parameters"].update(space="nasbench201", channels=4, layers=1)
    earlier_path = tmp_path / "earlier.ckpt"
    torch.save(earlier, earlier_path)
    with pytest.raises(OutdatedCheckpointError, match=r"earlier version of SinglePathSupernet.*channels 4, layers 1.*"
                                                      r"darts_lightning.NB201Space with channels and cells_per_stage"):
        build_evaluator("weight_sharing", "nasbench201", supernet=earlier_path, batches=1)

    search = DiscreteSearch("nasbench201", evaluator="weight_sharing",
                            evaluator_args={"supernet": checkpoint, "batches": 1}, budget=3)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(search)
    assert len(search.history) == 3 and all(0.0 <= h["reward"] <= 1.0 for h in search.history)


@pytest.mark.parametrize("space,layers", [("nasbench201", 1), ("darts", 3)])
def test_scratch_evaluator_trains_a_tiny_network_on_the_holdout_split(space, layers):
    evaluator = build_evaluator("scratch", TINY_SPACES[space], epochs=1, channels=4, layers=layers,
                                data={"dataset": "digits", "batch_size": 32}, trainer_args={"limit_train_batches": 3})
    assert isinstance(evaluator, ScratchEvaluator) and evaluator.data.holdout
    arch = get_space(space).sample(random.Random(1))
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    result = evaluator.evaluate(arch)
    assert torch.equal(torch.rand(3), expected_next), "the caller's random state is untouched"
    assert 0.0 <= result.reward <= 1.0 and result.cost > 0
    assert result.metrics["steps"] == 3 and result.metrics["parameters"] > 0
    if space == "nasbench201":
        assert evaluator.evaluate(arch).reward == result.reward, "seeded: equal cells, equal rewards"


def test_edge_normalization_on_a_single_path_is_a_clear_error():
    """A path runs its ops unscaled; β would only multiply the host-side path rows by device-side weights."""
    message = "edge_normalization .* single path does not use .*: set the space's edge_normalization to false"
    with pytest.raises(ValueError, match=message):
        tiny_supernet(DartsSpace(channels=4, layers=3, edge_normalization=True))


def test_plain_ddp_is_refused_with_advice():
    """Without find_unused_parameters, DDP would fail at the second step; setup says what to use instead."""
    from types import SimpleNamespace

    from pytorch_lightning.strategies import DDPStrategy

    model = tiny_supernet()
    model._trainer = SimpleNamespace(strategy=DDPStrategy(), world_size=2)
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        model.setup("fit")


def test_weight_sharing_reward_can_be_any_torchmetrics_metric(trained):
    model = trained["model"]
    arch = model.space.sample(random.Random(3))
    data = SearchDataModule("digits", batch_size=32)
    accuracy = WeightSharingEvaluator("nasbench201", model, data=data, batches=2).evaluate(arch)
    f1 = WeightSharingEvaluator(
        "nasbench201", model, data=data, batches=2,
        metric="torchmetrics.classification.MulticlassF1Score", metric_args={"num_classes": 10, "average": "macro"},
    ).evaluate(arch)
    assert f1.reward == f1.metrics["metric"] and 0.0 <= f1.reward <= 1.0
    assert f1.metrics["accuracy"] == accuracy.reward
    with pytest.raises(ValueError, match="importable torchmetrics class path"):
        WeightSharingEvaluator("nasbench201", model, data=data, metric="torchmetrics.NoSuchMetric")


def test_a_darts_supernet_whose_cells_concatenate_fewer_nodes_runs_the_sampled_paths():
    model = tiny_supernet(DartsSpace(channels=4, layers=3, nodes=3, multiplier=2))
    for step in range(3):
        assert model(torch.randn(2, 1, 8, 8), model.path_at(step)).shape == (2, 10)


def test_a_non_finite_loss_stops_the_supernet_training_naming_its_step(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    images = torch.full((8, 1, 8, 8), float("nan"))
    loader = DataLoader(TensorDataset(images, torch.zeros(8, dtype=torch.long)), batch_size=4)
    trainer = quick_trainer(tmp_path, max_epochs=1, log_every_n_steps=50, logger=False, enable_checkpointing=False)
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at global step 0 \(epoch 0, batch 0\); .*model\.lr"):
        trainer.fit(tiny_supernet(), train_dataloaders=loader)


def test_scratch_training_of_a_darts_cell_is_the_retraining_without_its_extras(tmp_path):
    """The generic scratch training computes what the DARTS retraining computes with its auxiliary head and
    drop-path off: the same weights after the same steps."""
    from torch.utils.data import DataLoader

    from darts_lightning import ClassificationDataModule, Genotype, GenotypeClassifier
    from darts_lightning.discrete.scratch import ScratchClassifier
    from darts_lightning.retrain.module import ExportNetwork, NetworkClassifier

    space = DartsSpace()
    arch = Genotype.published("DARTS_V2")
    data = ClassificationDataModule("digits", batch_size=32, cutout_length=0, holdout=True)
    data.setup("fit")

    def train(build) -> dict[str, torch.Tensor]:
        torch.manual_seed(3)
        model = build()
        trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=0,
                             num_sanity_val_steps=0, gradient_clip_val=5.0, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                             callbacks=[ExportNetwork(deployable=False)] if isinstance(model, NetworkClassifier) else [])
        trainer.fit(model, train_dataloaders=DataLoader(data.train_set, batch_size=32))
        return _state(model.network)

    scratch = train(lambda: ScratchClassifier(
        space.build_network(arch, num_classes=10, in_channels=1, image_size=8, channels=4, layers=3)))
    retrained = train(lambda: GenotypeClassifier(
        genotype=space.format(arch), in_channels=1, num_classes=10, image_size=8, channels=4, layers=3,
        auxiliary_weight=0.0, drop_path_prob=0.0))
    assert scratch.keys() == retrained.keys()
    for key, value in scratch.items():
        assert torch.equal(value, retrained[key]), key
