"""The DARTS family as configurations of the one search module: each variant searches on the digits,
resumes exactly from a checkpoint, and derives a genotype that the retraining network loads."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from darts_lightning import DARTSSearch, Genotype, SearchDataModule, build_eval_network
from darts_lightning.differentiable.estimators import FirstOrderGradient
from darts_lightning.differentiable.legacy import convert_flat_settings
from darts_lightning.differentiable.optimizers import ArchOptimizer
from darts_lightning.differentiable.relaxations import build_relaxation
from darts_lightning.differentiable.remedies import AuxiliarySkip, BetaDecay
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.spaces.nasbench201 import NB201Space
from tests.conftest import quick_trainer
from tests.searches import checkpointing, last_ckpt, search_parts, tiny_search

# The options of configs/gdas_*.yaml and configs/snas_*.yaml that reproduce the released code.
GDAS_OPTIONS = dict(
    relaxation="gdas", genotype_rule="gdas", pool_batch_norm=False, last_activation=True, weight_step_first=True,
    grad_clip_includes_arch=True, weight_nesterov=True,
)
SNAS_OPTIONS = dict(
    relaxation="snas", relaxation_args={"tau_max": 1.0, "tau_min": 0.03, "schedule": "snas"}, arch_batch="train",
    joint_step=True, arch_optimizer="sgd", arch_weight_decay=0.0, arch_grad_clip=10.0, search_drop_path=0.3,
    genotype_rule="snas",
)

VARIANTS: dict[str, dict] = {
    # PC-DARTS: 1/K of the channels (K=2 for the 4-channel test supernet; 4 in the paper) and edge normalisation
    "pcdarts": dict(relaxation="pcdarts", relaxation_args={"partial_channels": 2}, edge_normalization=True),
    "gdas": GDAS_OPTIONS,
    "snas": SNAS_OPTIONS,
    "drnas": dict(relaxation="drnas", relaxation_args={"kl_weight": 1e-3}),
    "darts_minus": dict(auxiliary_skip=True),
    "beta_darts": dict(beta_decay_max=10.0),
}


def _fit(root, variant: str, max_epochs: int = 2, callbacks=(), ckpt_path=None, seed: int = 0, **overrides):
    pl.seed_everything(seed)
    model = tiny_search(**{**VARIANTS[variant], **overrides})
    trainer = quick_trainer(root, max_epochs=max_epochs, callbacks=list(callbacks))
    trainer.fit(model, SearchDataModule("digits", batch_size=16), ckpt_path=ckpt_path)
    return model, trainer


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted 2-epoch search per variant, shared by the tests that read it; it keeps the
    checkpoint of every epoch so that the resumption test can restart from the first."""
    runs: dict[str, tuple] = {}

    def get(variant: str):
        if variant not in runs:
            root = tmp_path_factory.mktemp(f"full_{variant}")
            every_epoch = pl.callbacks.ModelCheckpoint(save_top_k=-1, every_n_epochs=1, save_last=True)
            model, trainer = _fit(root, variant, callbacks=[every_epoch])
            runs[variant] = (model, trainer, root / "lightning_logs" / "version_0")
        return runs[variant]

    return get


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_searches_and_its_genotype_loads_into_the_retraining_network(full_run, variant):
    pl.seed_everything(0)
    before = {n: p.detach().clone() for n, p in tiny_search(**VARIANTS[variant]).network.named_arch_parameters().items()}
    model, trainer, run_dir = full_run(variant)
    assert trainer.global_step == 6
    for name, value in model.network.named_arch_parameters().items():
        assert not torch.equal(value.detach(), before[name]), f"{name} did not move"
    genotype = Genotype.load(run_dir / "genotype.json")
    assert genotype == model.genotype()
    network = build_eval_network(genotype, channels=4, layers=3, num_classes=10, in_channels=1, image_size=8, auxiliary=False)
    assert network(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    tags = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    if variant in ("gdas", "snas"):
        assert "arch/temperature" in tags
    if variant == "darts_minus":
        assert "arch/auxiliary_skip_weight" in tags
    if variant in ("drnas", "beta_darts"):
        assert "train/arch_regularizer" in tags


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_resumes_from_a_checkpoint_as_if_uninterrupted(tmp_path, full_run, variant):
    full, _, run_dir = full_run(variant)
    first_epoch = run_dir / "checkpoints" / "epoch=0-step=3.ckpt"
    assert torch.load(first_epoch, weights_only=True)["global_step"] == 3
    # A different torch seed for the resumed run: the samples must come from the checkpoint's sample seed.
    resumed, trainer = _fit(tmp_path / "resumed", variant, callbacks=checkpointing(), ckpt_path=first_epoch, seed=123)
    assert trainer.global_step == 6
    resumed_state = resumed.state_dict()
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed_state[key]), key
    assert resumed.genotype_history == full.genotype_history
    assert torch.load(last_ckpt(trainer), weights_only=True)["sample_seed"] == full._sample_seed


def test_sampling_variants_draw_from_the_sample_seed(tmp_path):
    runs = [_fit(tmp_path / str(i), "gdas", max_epochs=1, sample_seed=s)[0] for i, s in enumerate((1, 1, 2))]
    same = [torch.equal(runs[0].network.alpha_normal, r.network.alpha_normal) for r in runs[1:]]
    assert same == [True, False]


def test_gdas_trains_only_the_sampled_ops(tmp_path, digits):
    pl.seed_everything(0)
    model = tiny_search(**VARIANTS["gdas"])
    trainer = quick_trainer(tmp_path, max_epochs=1, limit_train_batches=1, logger=False, enable_checkpointing=False)
    before = {n: p.detach().clone() for n, p in model.network.named_weight_parameters()}
    trainer.fit(model, digits)
    edge_params = [n for n in before if ".edges." in n and ".ops." in n]
    changed = [n for n in edge_params if not torch.equal(before[n], dict(model.network.named_weight_parameters())[n])]
    # one op of seven per edge is sampled: most op weights are untouched after one step
    assert 0 < len(changed) < len(edge_params) / 2


def test_gdas_under_plain_ddp_is_refused_with_advice():
    from pytorch_lightning.strategies import DDPStrategy

    model = tiny_search(relaxation="gdas")
    model._trainer = SimpleNamespace(strategy=DDPStrategy(), world_size=2)
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        model.setup("fit")
    soft = tiny_search(relaxation="snas")
    soft._trainer = SimpleNamespace(strategy=DDPStrategy(parallel_devices=[torch.device("cpu")] * 2), world_size=2)
    soft.setup("fit")  # soft samples use every op: plain DDP is fine


def test_variant_configuration_errors():
    with pytest.raises(ValueError, match="arch_batch must be one of val, train"):
        DARTSSearch(estimator=FirstOrderGradient(arch_batch="test"))
    with pytest.raises(ValueError, match="max_weight must be a non-negative number"):
        DARTSSearch(remedies=[BetaDecay(max_weight=-1.0)])
    with pytest.raises(ValueError, match="divisible by K"):
        tiny_search(relaxation="pcdarts", channels=6)
    with pytest.raises(ValueError, match="genotype_rule must be one of darts, gdas, snas"):
        DartsSpace(genotype_rule="best")
    with pytest.raises(ValueError, match=r"step_order 'joint' .*first-order estimator with arch_batch 'train'"):
        DARTSSearch(step_order="joint")
    with pytest.raises(ValueError, match="step_order must be one of arch_first, weight_first, joint"):
        DARTSSearch(step_order="weights_first")
    with pytest.raises(ValueError, match="name must be one of adam, sgd, got 'rmsprop'"):
        ArchOptimizer(name="rmsprop")
    with pytest.raises(ValueError, match=r"drop_path must be a number in \[0, 1\), got 1.0"):
        DartsSpace(drop_path=1.0)
    # The NAS-Bench-201 space has none of the DARTS cell's settings (edge normalisation, the derivation
    # rule, drop-path on the mixed edges) ...
    with pytest.raises(TypeError, match="edge_normalization"):
        NB201Space(channels=4, cells_per_stage=1, edge_normalization=True)
    # ... and flat settings that give them are refused, not dropped.
    for setting in (dict(edge_normalization=True), dict(genotype_rule="gdas"), dict(search_drop_path=0.3)):
        with pytest.raises(ValueError, match=f"{next(iter(setting))} applies to the DARTS cell.*use space='darts'"):
            convert_flat_settings(dict(space="nasbench201", **setting))
    with pytest.raises(ValueError, match="choose one"):
        convert_flat_settings(dict(joint_step=True, arch_batch="train", weight_step_first=True))


@pytest.mark.parametrize("variant", ["darts", "gdas"])
def test_search_runs_channels_last_on_the_cpu_by_default(tmp_path, digits, variant):
    model = tiny_search(**VARIANTS.get(variant, {}))
    layouts = []
    model.network.cells[0].register_forward_hook(
        lambda m, i, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous())
    )
    quick_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(model, digits)
    assert model._channels_last
    assert layouts and all(layouts)


@pytest.mark.parametrize("relaxation", ["pcdarts", "gdas", "snas", "drnas"])
def test_every_relaxation_searches_the_nasbench201_space(tmp_path, digits, relaxation):
    pl.seed_everything(0)
    args = {"partial_channels": 2} if relaxation == "pcdarts" else {}
    model = DARTSSearch(
        space=NB201Space(channels=4, cells_per_stage=1), relaxation=build_relaxation(relaxation, **args),
        arch_optimizer=ArchOptimizer(lr=3e-2), remedies=[AuxiliarySkip()], in_channels=1, image_size=8,
    )
    before = model.network.alpha.detach().clone()
    quick_trainer(tmp_path, max_epochs=1).fit(model, digits)
    assert not torch.equal(before, model.network.alpha.detach())
    assert (tmp_path / "lightning_logs" / "version_0" / "arch.txt").read_text().strip() == str(model.genotype())


def test_remedies_combine_with_a_sampling_relaxation_and_second_order(tmp_path, digits):
    pl.seed_everything(0)
    model = tiny_search(relaxation="gdas", order=2, auxiliary_skip=True, beta_decay_max=10.0, arch_warmup_epochs=1)
    start = model.network.alpha_normal.detach().clone()
    after_warmup = {}

    class AfterFirstEpoch(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            after_warmup.setdefault("alpha", pl_module.network.alpha_normal.detach().clone())

    quick_trainer(tmp_path, max_epochs=2, callbacks=[AfterFirstEpoch()]).fit(model, digits)
    assert torch.equal(after_warmup["alpha"], start), "alpha is frozen during the warm-up epoch"
    assert not torch.equal(model.network.alpha_normal.detach(), start)
    assert model.network.auxiliary_skip_weight == 0.5 and model.relaxation.tau == pytest.approx(0.1)


# ----------------------------------------------------------------------------- the released GDAS and SNAS loops

GDAS_RELEASED = dict(
    GDAS_OPTIONS, weight_decay=5e-4, arch_lr=3e-4, grad_clip=5.0, sample_seed=0, channels_last=False,
)


def gdas_batches() -> list[dict]:
    """Two fixed search steps of 8 random 8×8 one-channel images (search-train and search-val)."""
    generator = torch.Generator().manual_seed(1)

    def batch():
        return torch.randn(8, 1, 8, 8, generator=generator), torch.randint(0, 10, (8,), generator=generator)

    return [{"train": batch(), "val": batch()} for _ in range(2)]


def _fit_on(model, batches, root, **overrides):
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer = quick_trainer(root, max_epochs=1, limit_train_batches=len(batches), logger=False,
                            enable_checkpointing=False, **overrides)
    trainer.fit(model, train_dataloaders=loader)
    return trainer


def test_gdas_weight_step_clips_with_the_stale_architecture_gradient_as_released(tmp_path, monkeypatch):
    """GDAS's loop (AutoDL-Projects f46486e, exps/NAS-Bench-201-algos/GDAS.py, lines 49-69) clips the weight
    step with ``clip_grad_norm_(network.parameters(), 5)``: α's gradient, never cleared after the previous
    architecture step, adds ∇α L_train and counts in the norm.

    Golden norms: ``python /tmp/h2/golden/gdas_clip.py`` (torch 2.14.1, CPU), a script that writes out those
    lines of GDAS.py one for one on this supernet (built as below, seed 0) and these two batches, with the
    sample keys the search uses (weight step phase 1, architecture step phase 0), and prints the norm
    ``clip_grad_norm_`` returns at each step.
    """
    golden = [2.7977042198181152, 2.232611894607544]
    norms = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: norms.append(float(clip(*a, **k))) or norms[-1])
    torch.manual_seed(0)
    model = tiny_search(layers=2, nodes=4, multiplier=4, **GDAS_RELEASED)  # the golden script's supernet
    _fit_on(model, gdas_batches(), tmp_path)
    assert norms == pytest.approx(golden, rel=1e-5)


def test_weight_step_first_runs_the_weight_step_before_the_architecture_step(tmp_path):
    order = []
    for weight_step_first in (False, True):
        torch.manual_seed(0)
        model = tiny_search(layers=2, relaxation="gdas", weight_step_first=weight_step_first)
        estimate = model.estimator.estimate
        model.estimator.estimate = lambda *a, estimate=estimate, **k: order.append("arch") or estimate(*a, **k)
        model.configure_optimizers = _recording(model.configure_optimizers, order)
        _fit_on(model, gdas_batches()[:1], tmp_path / str(weight_step_first))
        order.append("|")
    assert order == ["arch", "weight", "|", "weight", "arch", "|"]


def _recording(configure_optimizers, order):
    def configure():
        (weights, arch), schedulers = configure_optimizers()
        weights.register_step_pre_hook(lambda *_: order.append("weight"))
        return [weights, arch], schedulers
    return configure


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_released_learning_rate_schedules():
    """GDAS: AutoDL's cosine scheduler, updated before every step with the fraction of the epoch done,
    reads the epoch only when there is no warm-up (xautodl/procedures/optimizers.py, lines 81-107): the
    rate is annealed per epoch, as here. Golden: ``python /tmp/h2/golden/gdas_lr.py`` (AutoDL-Projects
    f46486e), which drives that scheduler class as GDAS.py does for 4 epochs of 3 steps (0.025 → 0.001).

    ``weight_lr_epoch_offset: 1``: a CosineAnnealingLR stepped at the start of every epoch under PyTorch
    >= 1.1 (whose constructor already takes the first step), so that epoch e trains at the rate of epoch
    e + 1 (β-DARTS's code; SNAS's ran on PyTorch 0.4, whose constructor resets ``last_epoch``, so it
    keeps offset 0). Golden: ``python /tmp/h2/golden/snas_schedules.py``, which runs that call order over
    150 epochs, 0.025 → 0.001, with torch 2.14.1.
    """
    gdas_golden = [0.025, 0.02148528137423857, 0.013000000000000001, 0.0045147186257614305]
    offset_golden = {0: 0.024997368201698147, 1: 0.024989473961186302, 2: 0.02497632074113926, 74: 0.012999999999999994,
                   148: 0.001002631798301854, 149: 0.001}
    for options, epochs, golden in (
        (dict(weight_lr_min=0.001, weight_decay=5e-4, weight_nesterov=True), 4, dict(enumerate(gdas_golden))),
        (dict(weight_lr_min=0.001, weight_lr_epoch_offset=1), 150, offset_golden),
    ):
        model = tiny_search(weight_lr=0.025, **options)
        model._trainer = SimpleNamespace(max_epochs=epochs)
        (optimizer, _), (scheduler,) = model.configure_optimizers()
        rates = []
        for _ in range(epochs):
            rates.append(optimizer.param_groups[0]["lr"])
            scheduler["scheduler"].step()
        assert [rates[e] for e in golden] == pytest.approx(list(golden.values()), rel=1e-12)
    assert optimizer.defaults["nesterov"] is False and model.configure_optimizers()[0][1].__class__.__name__ == "Adam"
    nesterov = tiny_search(weight_nesterov=True, arch_optimizer="sgd")
    nesterov._trainer = SimpleNamespace(max_epochs=4)
    (weights, arch), _ = nesterov.configure_optimizers()
    assert weights.defaults["nesterov"] is True and type(arch) is torch.optim.SGD and arch.defaults["momentum"] == 0


def test_joint_step_takes_both_gradients_from_one_pass_and_steps_alpha_by_sgd(tmp_path):
    """SNAS (SNAS-Series 9a43adb, SNAS/train_search.py, lines 489-513, single-GPU path): one forward and
    backward on the batch; the weights are clipped and stepped, α is clipped to norm 10 and stepped by plain
    SGD at the architecture rate."""
    torch.manual_seed(0)
    model = tiny_search(layers=2, nodes=4, multiplier=4, arch_lr=0.5, sample_seed=0, channels_last=False,
                        **{**SNAS_OPTIONS, "arch_grad_clip": 1e-3})
    batches = gdas_batches()[:1]
    reference = copy.deepcopy(model.network).train()
    forwards = []
    model.network.register_forward_hook(lambda *_: forwards.append(1))
    _fit_on(model, batches, tmp_path)
    assert len(forwards) == 1

    reference.relaxation.update_schedule(0, 1)
    reference.set_sample_key(0, 0, 0)
    x, y = batches[0]["train"]
    loss = torch.nn.functional.cross_entropy(reference(x), y)
    grads = torch.autograd.grad(loss, reference.arch_parameters(), allow_unused=True)  # both cells reduce
    grads = [torch.zeros_like(a) if g is None else g for a, g in zip(reference.arch_parameters(), grads)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert norm > 1e-3  # the clip is active
    for after, before, grad in zip(model.network.arch_parameters(), reference.arch_parameters(), grads):
        torch.testing.assert_close(after.detach(), before.detach() - 0.5 * grad * (1e-3 / (norm + 1e-6)))


def test_arch_grad_clip_bounds_the_architecture_step(tmp_path):
    torch.manual_seed(0)
    model = DARTSSearch(
        space=DartsSpace(channels=4, layers=2, nodes=2, multiplier=2),
        arch_optimizer=ArchOptimizer(name="sgd", lr=1.0, weight_decay=0.0, grad_clip=1e-4),
        in_channels=1, image_size=8, channels_last=False,
    )
    before = [a.detach().clone() for a in model.network.arch_parameters()]
    _fit_on(model, gdas_batches()[:1], tmp_path)
    steps = [a.detach() - b for a, b in zip(model.network.arch_parameters(), before)]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in steps]))
    assert float(total) == pytest.approx(1e-4, rel=1e-3)  # lr 1 · a gradient clipped to norm 1e-4


@pytest.mark.parametrize(("remedy", "variant"), [
    ("random_smoothing", None), ("adversarial_perturbation", None),
    ("random_smoothing", "drnas"), ("adversarial_perturbation", "gdas"),
])
def test_sdarts_search_resumes_from_a_checkpoint_as_if_uninterrupted(tmp_path, remedy, variant):
    """SDARTS's noise comes from the step's sample key: a search resumed from its first epoch's checkpoint
    (under another torch seed) perturbs as the uninterrupted one did, with either step order and with a
    sampling relaxation."""
    def fit(root, callbacks, ckpt_path=None, seed=0):
        pl.seed_everything(seed)
        parts, _ = search_parts(**(VARIANTS[variant] if variant else {}))
        model = DARTSSearch(**{**parts, "remedies": [*parts["remedies"], remedy]})
        trainer = quick_trainer(root, max_epochs=2, callbacks=callbacks)
        trainer.fit(model, SearchDataModule("digits", batch_size=16), ckpt_path=ckpt_path)
        return model, trainer

    every_epoch = pl.callbacks.ModelCheckpoint(save_top_k=-1, every_n_epochs=1)
    full, _ = fit(tmp_path / "full", [every_epoch])
    first_epoch = tmp_path / "full" / "lightning_logs" / "version_0" / "checkpoints" / "epoch=0-step=3.ckpt"
    resumed, trainer = fit(tmp_path / "resumed", checkpointing(), ckpt_path=first_epoch, seed=123)
    assert trainer.global_step == 6
    resumed_state = resumed.state_dict()
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed_state[key]), key
    assert resumed.genotype_history == full.genotype_history
    # The perturbation acts: the same search without it ends elsewhere.
    pl.seed_everything(0)
    parts, _ = search_parts(**(VARIANTS[variant] if variant else {}))
    plain = DARTSSearch(**parts)
    quick_trainer(tmp_path / "plain", max_epochs=2, logger=False, enable_checkpointing=False).fit(
        plain, SearchDataModule("digits", batch_size=16))
    assert not torch.equal(plain.network.stem[0].weight, full.network.stem[0].weight)
