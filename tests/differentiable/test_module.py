"""The search LightningModule: a short fit, its logs and files, checkpoints, resume and errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.overrides import TorchFunctionMode
from torch.utils.data import TensorDataset

from darts_lightning import DARTSSearch, Genotype, NonFiniteLossError, SearchDataModule
from tests.conftest import quick_trainer
from tests.searches import checkpointing, flat_search, last_ckpt, tiny_search


def _copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.real_figures
def test_short_fit_changes_alpha_and_weights_and_writes_logs(tmp_path, digits):
    pl.seed_everything(0)
    model = tiny_search()
    before = _copy(model.network)
    trainer = quick_trainer(tmp_path)
    trainer.fit(model, digits)
    after = model.network.state_dict()
    assert trainer.global_step == 6, "one global step per search step (α and weight updates together)"
    assert not torch.equal(before["alpha_normal"], after["alpha_normal"])
    assert not torch.equal(before["alpha_reduce"], after["alpha_reduce"])
    assert not torch.equal(before["stem.0.weight"], after["stem.0.weight"])

    run_dir = Path(trainer.log_dir)
    genotype = Genotype.load(run_dir / "genotype.json")
    assert genotype == model.genotype()
    history = json.loads((run_dir / "genotype_history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert Genotype.from_dict(history[-1]["genotype"]) == genotype
    assert (run_dir / "genotype.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for op in model.network.op_names:
        assert f"alpha/normal/0-2/{op}" in scalars and f"alpha/reduce/2-3/{op}" in scalars
    for tag in ("arch/normal/entropy", "arch/reduce/entropy", "arch/normal/skip_connect", "arch/normal/margin",
                "val/acc", "val/loss", "train/loss_epoch", "train/acc", "lr/weights", "lr/arch"):
        assert tag in scalars, tag
    # softmax(α) of one edge sums to 1 over its ops at every logged epoch
    per_op = [events.Scalars(f"alpha/normal/1-3/{op}") for op in model.network.op_names]
    assert len(per_op[0]) == 2
    for epoch in range(2):
        assert sum(series[epoch].value for series in per_op) == pytest.approx(1.0, abs=1e-5)
    assert {"alpha/heatmap", "genotype/cells"} <= set(events.Tags()["images"])
    assert any(tag.startswith("genotype") for tag in events.Tags()["tensors"])


def test_weight_lr_follows_cosine_schedule(tmp_path, digits):
    model = tiny_search(weight_lr=0.1, weight_lr_min=0.01)
    trainer = quick_trainer(tmp_path, max_epochs=4, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, digits)
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(0.01, abs=1e-9), "after max_epochs the cosine schedule reaches weight_lr_min"


def test_architecture_step_leaves_weight_gradients_alone(digits):
    model = tiny_search()
    digits.setup()
    x, y = next(iter(torch.utils.data.DataLoader(digits.search_val, batch_size=8)))
    result = model.estimator.estimate(model.network, (x, y), (x, y))
    assert all(p.grad is None for p in model.weight_parameters())
    loss = torch.nn.functional.cross_entropy(model.network(x), y)
    expected = torch.autograd.grad(loss, model.arch_parameters())
    for got, want in zip(result.grads, expected):
        torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted 2-epoch search that keeps every epoch's checkpoint, shared by the resume tests."""
    root = tmp_path_factory.mktemp("uninterrupted")
    pl.seed_everything(0)
    model = tiny_search()
    every_epoch = pl.callbacks.ModelCheckpoint(save_top_k=-1, every_n_epochs=1, save_last=True)
    trainer = quick_trainer(root, max_epochs=2, callbacks=[every_epoch])
    trainer.fit(model, SearchDataModule("digits", batch_size=16))
    return model, trainer


def test_resume_from_epoch_checkpoint_equals_uninterrupted_run(tmp_path, uninterrupted):
    full, full_trainer = uninterrupted
    first_epoch = Path(full_trainer.checkpoint_callback.dirpath) / "epoch=0-step=3.ckpt"
    assert torch.load(first_epoch, weights_only=True)["global_step"] == 3
    pl.seed_everything(0)
    resumed = tiny_search()
    trainer = quick_trainer(tmp_path / "resumed", max_epochs=2, callbacks=checkpointing())
    trainer.fit(resumed, SearchDataModule("digits", batch_size=16), ckpt_path=first_epoch)
    assert trainer.global_step == 6
    resumed_state = resumed.state_dict()
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed_state[key]), key
    assert resumed.genotype_history == full.genotype_history
    for a, b in zip(full_trainer.optimizers, trainer.optimizers):
        for sa, sb in zip(a.state.values(), b.state.values()):
            for k in sa:
                assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k]))


class _Crash(pl.Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


def test_run_interrupted_mid_epoch_resumes_from_last_checkpoint(tmp_path, uninterrupted):
    full, _ = uninterrupted

    pl.seed_everything(0)
    crashed = quick_trainer(tmp_path / "crash", max_epochs=2, callbacks=checkpointing() + [_Crash(at_step=4)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(tiny_search(), SearchDataModule("digits", batch_size=16))
    checkpoint = last_ckpt(crashed)
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 3

    pl.seed_everything(0)
    resumed = tiny_search()
    trainer = quick_trainer(tmp_path / "crash", max_epochs=2, callbacks=checkpointing())
    trainer.fit(resumed, SearchDataModule("digits", batch_size=16), ckpt_path=checkpoint)
    assert trainer.global_step == 6
    torch.testing.assert_close(resumed.network.alpha_normal, full.network.alpha_normal, rtol=0, atol=0)


def test_checkpoint_loads_with_weights_only_and_holds_search_state(tmp_path, digits):
    trainer = quick_trainer(tmp_path, max_epochs=1, callbacks=checkpointing())
    trainer.fit(tiny_search(), digits)
    checkpoint = torch.load(last_ckpt(trainer), weights_only=True)
    assert checkpoint["search_space"]["op_names"][0] == "none"
    assert len(checkpoint["genotype_history"]) == 1
    assert len(checkpoint["optimizer_states"]) == 2 and checkpoint["lr_schedulers"]


def _composed_searches() -> dict[str, DARTSSearch]:
    """A search of every part other than its default, given as instances, and one given as names."""
    from darts_lightning.differentiable.estimators import SecondOrderGradient
    from darts_lightning.differentiable.optimizers import ArchOptimizer, WeightOptimizer
    from darts_lightning.differentiable.relaxations import GDASRelaxation
    from darts_lightning.differentiable.remedies import ArchWarmup, AuxiliarySkip, BetaDecay
    from darts_lightning.spaces.darts.space import DartsSpace

    return {
        "instances": DARTSSearch(
            space=DartsSpace(ops=["none", "skip_connect", "sep_conv_3x3"], channels=4, layers=2, nodes=2, multiplier=2,
                             genotype_rule="gdas", last_activation=True, pool_batch_norm=False),
            relaxation=GDASRelaxation(tau_max=5.0, tau_min=0.5),
            estimator=SecondOrderGradient(hessian="exact", xi=0.01),
            weight_optimizer=WeightOptimizer(lr=0.05, nesterov=True, clip_includes_arch=True, lr_epoch_offset=1),
            arch_optimizer=ArchOptimizer(name="sgd", lr=0.1, betas=(0.9, 0.99), grad_clip=10.0),
            remedies=[ArchWarmup(epochs=1), AuxiliarySkip(), BetaDecay(max_weight=2.0)],
            step_order="weight_first", in_channels=1, num_classes=10, image_size=8, sample_seed=3, channels_last=False,
        ),
        "names": DARTSSearch(space="nasbench201", relaxation="snas", estimator="second_order",
                             remedies=["auxiliary_skip", "beta_decay"], in_channels=1, image_size=8),
    }


@pytest.mark.parametrize("given", ["instances", "names"])
def test_checkpoint_holds_plain_settings_and_load_from_checkpoint_rebuilds_equal_parts(tmp_path, given):
    """hparams are plain ``{"class_path", "init_args"}`` dictionaries: the checkpoint loads with
    ``weights_only=True`` and ``DARTSSearch.load_from_checkpoint`` rebuilds every part with its arguments."""
    model = _composed_searches()[given]
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    model.genotype_history = [{"epoch": 0, "step": 1, "genotype": model.space.to_record(model.genotype())}]
    path = tmp_path / "search.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"] == dict(model.hparams)
    loaded = DARTSSearch.load_from_checkpoint(path)
    for part in ("space", "relaxation", "estimator", "weight_optimizer", "arch_optimizer"):
        assert type(getattr(loaded, part)) is type(getattr(model, part)), part
        assert getattr(loaded, part).config() == getattr(model, part).config(), part
    assert [r.config() for r in loaded.remedies] == [r.config() for r in model.remedies]
    assert dict(loaded.hparams) == dict(model.hparams)
    assert loaded.step_order == model.step_order and loaded.genotype_history == model.genotype_history
    loaded_state = loaded.state_dict()
    assert all(torch.equal(value, loaded_state[key]) for key, value in model.state_dict().items())


def test_the_search_takes_at_most_twelve_arguments():
    """The search is composed of parts: its own arguments stay few (the flat search had some fifty)."""
    import inspect

    parameters = list(inspect.signature(DARTSSearch.__init__).parameters)[1:]
    assert len(parameters) <= 12, parameters
    assert parameters[:6] == ["space", "relaxation", "estimator", "weight_optimizer", "arch_optimizer", "remedies"]


def test_checkpoint_from_a_different_space_is_rejected(tmp_path, digits):
    trainer = quick_trainer(tmp_path, max_epochs=1, callbacks=checkpointing())
    trainer.fit(tiny_search(), digits)
    other = tiny_search(ops=["none", "skip_connect", "sep_conv_3x3"])
    with pytest.raises(ValueError, match=(
        r"different run than the configured one: model\.space\.ops: checkpoint \['none', 'max_pool_3x3'.*"
        r"configured \['none', 'skip_connect', 'sep_conv_3x3'\]"
    )):
        quick_trainer(tmp_path / "other", max_epochs=2).fit(other, digits, ckpt_path=last_ckpt(trainer))


class _NaNDigits(SearchDataModule):
    def training_set(self):
        x = torch.full((64, 1, 8, 8), float("nan"))
        return TensorDataset(x, torch.zeros(64, dtype=torch.long))


def test_nan_loss_stops_with_a_message_naming_the_step(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"global step 0 .*lower the learning rates"):
        quick_trainer(tmp_path).fit(tiny_search(), _NaNDigits("digits", batch_size=16))


def _poison(model: DARTSSearch, split: str, at_step: int) -> None:
    """Replace the ``split`` images of the batch of global step ``at_step`` by NaN."""
    step = model.training_step

    def poisoned(batch, batch_idx):
        if model.global_step == at_step:
            x, y = batch[split]
            batch = {**batch, split: (torch.full_like(x, float("nan")), y)}
        return step(batch, batch_idx)

    model.training_step = poisoned


@pytest.mark.parametrize(
    "split,found_at,trainer_args",
    [
        # the first logging step after the bad one (step 3: (3 + 1) % 4 == 0)
        ("train", 3, dict(limit_train_batches=6, log_every_n_steps=4)),
        # no logging step: the end of the epoch (its last batch, step 4)
        ("val", 4, dict(limit_train_batches=5, log_every_n_steps=50)),
        # the run ends between logging steps (max_steps)
        ("train", 2, dict(limit_train_batches=6, log_every_n_steps=50, max_steps=3)),
    ],
)
def test_a_nan_found_later_is_reported_at_the_first_bad_step(tmp_path, digits, split, found_at, trainer_args):
    """The loss is not read back at every step: a NaN at step 2 is found at a logging step, at the end of the
    epoch or at the end of training, and reported as step 2, with its epoch, batch and loss."""
    model = tiny_search()
    _poison(model, split, at_step=2)
    what = "weight (search-train)" if split == "train" else "architecture (search-val)"
    trainer = quick_trainer(tmp_path, max_epochs=2, limit_val_batches=0, **trainer_args)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.fit(model, digits)
    assert str(error.value) == (
        f"the {what} loss is nan at global step 2 (epoch 0, batch 2); the search diverged: lower the learning "
        "rates (model.weight_optimizer.lr, model.arch_optimizer.lr) or check the data"
    )
    assert model.global_step == found_at + 1, "found after the step it was checked at"
    assert model.genotype_history == [], "found before the epoch's genotype"


def test_a_diverged_search_saves_no_checkpoint(tmp_path, digits):
    model = tiny_search()
    _poison(model, "train", at_step=1)
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_train_steps=2, save_top_k=-1)
    trainer = quick_trainer(tmp_path, max_epochs=1, limit_train_batches=6, limit_val_batches=0, log_every_n_steps=50,
                            callbacks=[checkpoints])
    with pytest.raises(NonFiniteLossError, match=r"weight \(search-train\) loss is nan at global step 1 \(epoch 0, batch 1\)"):
        trainer.fit(model, digits)
    assert model.global_step == 2 and not list((tmp_path / "checkpoints").glob("*.ckpt"))


class _HostReads(TorchFunctionMode):
    """Records the torch calls that make the host wait for an accelerator when their tensor lives on one:
    reading values (``item``, ``bool``, ``float``, ``int``, ``tolist``, ...), copying to the host (``cpu``,
    ``numpy``), ops whose output size depends on the values (``nonzero``, ``unique``, ...) and tensors made
    from host data (``tensor``, ``as_tensor``: copied to the device, waiting for it).

    On a CPU-only machine every tensor is on the host, so the calls are recorded whatever the tensor, except
    for tensors that stay on the host on an accelerator too: those ``host()`` names (Adam's step counters)
    and the data pipeline's (calls made inside ``torch.utils.data``). Copies made with ``.to(device)`` cannot
    be told from no-ops here and are not recorded.
    """

    READS = {"__bool__", "__float__", "__int__", "__index__", "__format__", "item", "tolist", "numpy", "cpu",
             "nonzero", "argwhere", "unique", "unique_consecutive", "masked_select", "bincount", "repeat_interleave",
             "tensor", "as_tensor"}

    def __init__(self, host=lambda: set()) -> None:
        super().__init__()
        self.host = host
        self.step: int | None = None
        self.reads: list[tuple[int | None, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.READS and not self._on_host(args):
            self.reads.append((self.step, name))
        return func(*args, **(kwargs or {}))

    def _on_host(self, args) -> bool:
        if args and isinstance(args[0], torch.Tensor) and id(args[0]) in self.host():
            return True
        frame = sys._getframe(2)
        while frame is not None:
            if f"torch{os.sep}utils{os.sep}data" in frame.f_code.co_filename:
                return True
            frame = frame.f_back
        return False

    def at(self, step: int) -> list[str]:
        return [name for s, name in self.reads if s == step]


def test_the_host_read_recorder_sees_reads():
    from torchmetrics import MeanMetric

    with _HostReads() as recorder:
        if torch.isfinite(torch.ones(())):  # the per-step check the search used to make
            pass
        MeanMetric()(torch.ones(()), 4)  # turns the weight into a tensor and tests the value for NaN
    names = [name for _, name in recorder.reads]
    assert names[0] == "__bool__" and "as_tensor" in names and names.count("__bool__") >= 3


class _Steps(pl.Callback):
    """Tells the recorder the global step of the batch that starts: a read belongs to the step whose batch
    (training step, batch-end hooks, Lightning's end-of-batch bookkeeping) it happens in."""

    def __init__(self, recorder: _HostReads) -> None:
        self.recorder = recorder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.recorder.step = trainer.global_step


@pytest.mark.parametrize("overrides", [
    {},
    {"relaxation": "pcdarts", "relaxation_args": {"partial_channels": 2}, "edge_normalization": True,
     "auxiliary_skip": True, "beta_decay_max": 1.0, "arch_grad_clip": 10.0},
], ids=["darts", "pcdarts_edge_normalization_remedies"])
def test_a_search_batch_reads_nothing_back_between_logging_steps(tmp_path, overrides):
    """Between the steps Lightning logs, a search batch (its step, the batch-end hooks and Lightning's own
    bookkeeping, without a progress bar) queues its work and reads nothing back from the device; at the last
    batch of an epoch it reads the non-finite-loss record once and the epoch's work reads what it logs. The
    first batch of each epoch is left out: Lightning and Adam create their state at the first step, and
    Lightning the state of a value logged for the first time (β-DARTS's term, from the second epoch on).
    (The sampling relaxations draw on the host and read α there by design: see GumbelRelaxation.)"""
    model = tiny_search(layers=2, **overrides)
    recorder = _HostReads(lambda: {id(state["step"]) for optimizer in model.trainer.optimizers
                                   for state in optimizer.state.values() if "step" in state})
    trainer = quick_trainer(tmp_path, max_epochs=2, limit_train_batches=4, limit_val_batches=0, log_every_n_steps=50,
                            callbacks=[_Steps(recorder)])
    with recorder:
        trainer.fit(model, SearchDataModule("digits", batch_size=4))
    assert {s: recorder.at(s) for s in (1, 2, 5, 6)} == {s: [] for s in (1, 2, 5, 6)}
    assert recorder.at(3)[0] == recorder.at(7)[0] == "tolist", "first, the one read of the non-finite-loss record"


def test_bf16_mixed_precision_searches(tmp_path, digits):
    model = tiny_search()
    alpha = model.network.alpha_normal.detach().clone()
    trainer = quick_trainer(tmp_path, max_epochs=1, precision="bf16-mixed")
    trainer.fit(model, digits)
    assert model.network.alpha_normal.dtype == torch.float32
    assert not torch.equal(alpha, model.network.alpha_normal)
    assert torch.isfinite(model.network.alpha_normal).all()


def test_float16_mixed_precision_is_a_clear_error():
    # On a CPU, Lightning itself replaces 16-mixed by bf16-mixed; on a GPU the search refuses it at fit start.
    from darts_lightning.differentiable.module import check_precision

    with pytest.raises(ValueError, match="bf16-mixed"):
        check_precision("16-mixed")
    check_precision("bf16-mixed")
    check_precision("32-true")


def test_unknown_op_and_small_image_are_clear_errors():
    with pytest.raises(ValueError, match="unknown op 'sep_conv_9x9'.*sep_conv_3x3"):
        tiny_search(ops=["none", "sep_conv_9x9"])
    with pytest.raises(ValueError, match="too small for 2 reduction cells"):
        tiny_search(image_size=2)


def test_unknown_estimator_is_a_clear_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown architecture-gradient estimator 'third_order'; .*first_order, second_order"):
        DARTSSearch(estimator="third_order")
    with pytest.raises(ValueError, match=r"model\.estimator must be a ArchitectureGradient"):
        DARTSSearch(estimator=3)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_second_order_search_runs_and_moves_alpha(tmp_path, digits, precision):
    pl.seed_everything(0)
    model = tiny_search(order=2)
    alpha = model.network.alpha_normal.detach().clone()
    trainer = quick_trainer(tmp_path, max_epochs=1, precision=precision)
    trainer.fit(model, digits)
    assert trainer.global_step == 3
    assert torch.isfinite(model.network.alpha_normal).all()
    assert not torch.equal(alpha, model.network.alpha_normal)


def test_second_order_differs_from_first_order(tmp_path, digits):
    def alpha_after(order):
        pl.seed_everything(0)
        model = tiny_search(order=order)
        trainer = quick_trainer(tmp_path / str(order), max_epochs=1, limit_val_batches=0)
        trainer.fit(model, SearchDataModule("digits", batch_size=16))
        return model.network.alpha_normal.detach()

    assert not torch.allclose(alpha_after(1), alpha_after(2))


@pytest.mark.real_figures
@pytest.mark.parametrize("order", [1, 2])
def test_differentiable_search_on_the_nasbench201_space(tmp_path, digits, order):
    from darts_lightning.spaces.nasbench201 import NB201Arch

    pl.seed_everything(0)
    model = tiny_search(space="nasbench201", channels=4, layers=1, order=order)
    alpha = model.network.alpha.detach().clone()
    trainer = quick_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, digits)
    assert not torch.equal(alpha, model.network.alpha)
    arch = model.genotype()
    assert isinstance(arch, NB201Arch)
    assert NB201Arch.parse((Path(trainer.log_dir) / "arch.txt").read_text()) == arch
    diagnostics = model.architecture_diagnostics()
    assert diagnostics["arch/cell/skip_connect"] == list(arch.ops).count("skip_connect")
    assert sum(diagnostics[f"alpha/cell/0-1/{op}"] for op in model.network.op_names) == pytest.approx(1.0)


def test_export_command_reads_a_nasbench201_search_checkpoint(tmp_path, digits):
    from darts_lightning.entry.cli import main
    from darts_lightning.spaces.nasbench201 import NB201Arch

    model = tiny_search(space="nasbench201", channels=4, layers=1)
    trainer = quick_trainer(tmp_path, max_epochs=1, callbacks=checkpointing())
    trainer.fit(model, digits)
    out = tmp_path / "arch.txt"
    with pytest.raises(SystemExit):
        main(["export-genotype", str(last_ckpt(trainer)), "--out", str(out)])
    assert NB201Arch.parse(out.read_text()) == model.genotype()


def test_compile_compiles_the_supernet_in_place_once(tmp_path, digits, monkeypatch):
    """The trainer callback ``CompileSupernet`` compiles the supernet module itself (state dict and
    checkpoints unchanged) when the run is set up, once; the compiled run itself is exercised by
    benchmarks/gpu_check.py (compiling a supernet takes minutes on a CPU)."""
    from darts_lightning.differentiable.callbacks import CompileSupernet

    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    model = tiny_search()
    keys = set(model.state_dict())
    trainer = quick_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                            callbacks=[CompileSupernet()])
    trainer.fit(model, digits)
    assert compiled == [model.network]
    assert set(model.state_dict()) == keys


def test_compile_is_refused_for_a_relaxation_that_samples_a_subnetwork(tmp_path, digits):
    from darts_lightning.differentiable.callbacks import CompileSupernet

    model, callbacks = flat_search(compile=True, relaxation="gdas")
    assert [type(c) for c in callbacks] == [CompileSupernet]
    trainer = quick_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=callbacks)
    with pytest.raises(ValueError, match="compile cannot be used with the gdas relaxation: .*remove CompileSupernet"):
        trainer.fit(model, digits)
