"""The DARTS family as configurations of the one search module: each variant searches on the digits,
resumes exactly from a checkpoint, and derives a genotype that the retraining network loads."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from darts_lightning import DARTSSearch, Genotype, SearchDataModule, build_eval_network

from .conftest import quick_trainer, tiny_search
from .test_search import _StopAfterFirstEpoch, _checkpointing, _last_ckpt

VARIANTS: dict[str, dict] = {
    # PC-DARTS: 1/K of the channels (K=2 for the 4-channel test supernet; 4 in the paper) and edge normalisation
    "pcdarts": dict(relaxation="pcdarts", relaxation_args={"partial_channels": 2}, edge_normalization=True),
    "gdas": dict(relaxation="gdas", genotype_rule="gdas"),
    "snas": dict(relaxation="snas", relaxation_args={"tau_max": 1.0, "tau_min": 0.03}, arch_batch="train"),
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


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_searches_and_its_genotype_loads_into_the_retraining_network(tmp_path, variant):
    pl.seed_everything(0)
    before = {n: p.detach().clone() for n, p in tiny_search(**VARIANTS[variant]).network.named_arch_parameters().items()}
    model, trainer = _fit(tmp_path, variant)
    assert trainer.global_step == 6
    for name, value in model.network.named_arch_parameters().items():
        assert not torch.equal(value.detach(), before[name]), f"{name} did not move"
    run_dir = tmp_path / "lightning_logs" / "version_0"
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
def test_variant_resumes_from_a_checkpoint_as_if_uninterrupted(tmp_path, variant):
    full, _ = _fit(tmp_path / "full", variant)
    _, first = _fit(tmp_path / "part", variant, callbacks=_checkpointing() + [_StopAfterFirstEpoch()])
    assert first.global_step == 3
    # A different torch seed for the resumed run: the samples must come from the checkpoint's sample seed.
    resumed, trainer = _fit(tmp_path / "resumed", variant, callbacks=_checkpointing(), ckpt_path=_last_ckpt(first), seed=123)
    assert trainer.global_step == 6
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert resumed.genotype_history == full.genotype_history
    assert torch.load(_last_ckpt(trainer), weights_only=True)["sample_seed"] == full._sample_seed


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


def test_darts_minus_schedule_and_beta_darts_term():
    model = tiny_search(auxiliary_skip=True, beta_decay_max=10.0)
    model._trainer = SimpleNamespace(max_epochs=4)
    assert [model.auxiliary_skip_weight(e) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert [model.beta_decay_weight(e) for e in range(4)] == [0.0, 2.5, 5.0, 7.5]
    assert tiny_search().auxiliary_skip_weight(0) == 0.0

    # β-DARTS (Ye et al., CVPR 2022): λ_t · Σ_cells mean_edges logsumexp(α_edge), whose gradient with respect
    # to α is λ_t · softmax(α) / #edges: the β-decay that keeps softmax weights from saturating.
    model.trainer.current_epoch = 2
    with torch.no_grad():
        for alpha in model.network.arch_parameters():
            alpha.normal_()
    alphas = model.network.alphas()
    term = model.architecture_regularizer()
    expected = 5.0 * sum(torch.logsumexp(a, -1).mean() for a in alphas.values())
    assert torch.allclose(term, expected)
    grads = torch.autograd.grad(term, list(alphas.values()))
    for g, a in zip(grads, alphas.values()):
        assert torch.allclose(g, 5.0 * torch.softmax(a.detach(), -1) / a.shape[0], atol=1e-6)


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
    with pytest.raises(ValueError, match="arch_batch"):
        tiny_search(arch_batch="test")
    with pytest.raises(ValueError, match="beta_decay_max"):
        tiny_search(beta_decay_max=-1.0)
    with pytest.raises(ValueError, match="edge_normalization .*space='darts'"):
        DARTSSearch(1, 10, 8, channels=4, layers=1, space="nasbench201", edge_normalization=True)
    with pytest.raises(ValueError, match="divisible by K"):
        tiny_search(relaxation="pcdarts", channels=6)
    with pytest.raises(ValueError, match="valid rules are: darts, gdas"):
        tiny_search(genotype_rule="best")
    with pytest.raises(ValueError, match="genotype_rule applies to the DARTS cell"):
        DARTSSearch(1, 10, 8, channels=4, layers=1, space="nasbench201", genotype_rule="gdas")


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
    model = DARTSSearch(1, 10, 8, channels=4, layers=1, space="nasbench201", arch_lr=3e-2, relaxation=relaxation,
                        relaxation_args=args, auxiliary_skip=True)
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
    assert model.relaxation.auxiliary_skip_weight == 0.5 and model.relaxation.tau == pytest.approx(0.1)
