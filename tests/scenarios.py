"""Distributed scenarios run by :mod:`tests.multiprocess`: one per search method and setting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch

from darts_lightning import DARTSSearch, SearchDataModule
from darts_lightning.differentiable.remedies import AdversarialPerturbation, RandomSmoothing, Remedy

from .differentiable.test_variants import GDAS_OPTIONS, SNAS_OPTIONS
from .multiprocess import scenario
from .searches import search_parts, tiny_search


def state_snapshot(model: pl.LightningModule, trainer: pl.Trainer) -> dict:
    """Everything that must agree across ranks: α, weights, buffers and both optimizers' states."""
    snapshot = {f"param/{n}": p.detach().clone() for n, p in model.named_parameters()}
    snapshot.update({f"buffer/{n}": b.detach().clone() for n, b in model.named_buffers()})
    for i, optimizer in enumerate(trainer.optimizers):
        for j, state in enumerate(optimizer.state_dict()["state"].values()):
            for key, value in state.items():
                if torch.is_tensor(value):
                    snapshot[f"optimizer{i}/{j}/{key}"] = value.detach().clone()
    return snapshot


class StepChecksums(pl.Callback):
    """After every search step, a float64 checksum of α, weights and optimizer state."""

    def __init__(self) -> None:
        self.checksums: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        total = sum(p.detach().double().sum() for p in pl_module.parameters())
        for optimizer in trainer.optimizers:
            for state in optimizer.state.values():
                total = total + sum(v.double().sum() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())
        self.checksums.append(float(total))


def _ddp_trainer(workdir: Path, callbacks: list, strategy: str = "ddp", **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", devices=2, strategy=strategy, max_epochs=2, limit_train_batches=3, limit_val_batches=2,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(workdir), callbacks=callbacks, **kwargs,
    )


def _darts_run(workdir: Path, order: int) -> dict:
    # A different seed per rank: DDP must still leave every rank with the same model.
    pl.seed_everything(torch.distributed.get_rank())
    data = SearchDataModule("digits", batch_size=16)
    model = tiny_search(layers=2, order=order)
    checksums = StepChecksums()
    trainer = _ddp_trainer(workdir, [checksums])
    trainer.fit(model, data)
    return {"state": state_snapshot(model, trainer), "checksums": checksums.checksums,
            "first_batch": list(trainer.train_dataloader["train"].sampler)[:16],
            "global_step": trainer.global_step}


@scenario("darts_first_order")
def darts_first_order(workdir: Path) -> dict:
    return _darts_run(workdir, order=1)


@scenario("darts_second_order")
def darts_second_order(workdir: Path) -> dict:
    return _darts_run(workdir, order=2)


class _BatchNormInEval(pl.Callback):
    """Batch norm from running statistics, so that the loss of a batch is the mean of per-sample losses."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for m in pl_module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


class _UnionBatches(pl.LightningDataModule):
    """The same fixed batches for every rank count: rank r of N gets rows r::N of each union batch."""

    def __init__(self, rank: int, world_size: int, steps: int = 3, union_batch: int = 16) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        n = steps * union_batch
        x_train, y_train = torch.randn(n, 1, 8, 8, generator=g), torch.randint(10, (n,), generator=g)
        x_val, y_val = torch.randn(n, 1, 8, 8, generator=g), torch.randint(10, (n,), generator=g)
        per_rank = union_batch // world_size
        rows = torch.cat([torch.arange(s * union_batch, (s + 1) * union_batch)[rank::world_size] for s in range(steps)])
        self.train = torch.utils.data.TensorDataset(x_train[rows], y_train[rows])
        self.val = torch.utils.data.TensorDataset(x_val[rows], y_val[rows])
        self.per_rank = per_rank

    def train_dataloader(self):
        from pytorch_lightning.utilities import CombinedLoader
        from torch.utils.data import DataLoader

        return CombinedLoader({"train": DataLoader(self.train, self.per_rank), "val": DataLoader(self.val, self.per_rank)})


def union_batch_run(devices: int, rank: int, workdir: Path) -> dict:
    """First-order search for 3 steps on fixed union batches, split over ``devices`` ranks."""
    pl.seed_everything(0)
    model = tiny_search(layers=2, order=1, channels_last=False)
    trainer = pl.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=3,
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(workdir), callbacks=[_BatchNormInEval()],
        use_distributed_sampler=False,
    )
    trainer.fit(model, _UnionBatches(rank, devices))
    return {"alpha": [a.detach().clone() for a in model.arch_parameters()],
            "weights": [w.detach().clone() for w in model.weight_parameters()]}


@scenario("first_order_union_batch")
def first_order_union_batch(workdir: Path) -> dict:
    return union_batch_run(2, torch.distributed.get_rank(), workdir)


@scenario("retrain")
def retrain(workdir: Path) -> dict:
    from darts_lightning import ClassificationDataModule, GenotypeClassifier
    from darts_lightning.retrain.module import ExportNetwork

    pl.seed_everything(torch.distributed.get_rank())
    data = ClassificationDataModule("digits", batch_size=16, cutout_length=0)
    model = GenotypeClassifier("DARTS_V2", in_channels=1, num_classes=10, image_size=8, channels=4, layers=3)
    checksums = StepChecksums()
    trainer = _ddp_trainer(workdir, [checksums, ExportNetwork(deployable=False)], gradient_clip_val=5.0)
    trainer.fit(model, data)
    return {"state": state_snapshot(model, trainer), "checksums": checksums.checksums,
            "global_step": trainer.global_step}


class _PathsAndStart(pl.Callback):
    """The path of every step, and the parameters as training starts (after DDP's broadcast from rank 0)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.start: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.paths.append(pl_module.last_path)


@scenario("single_path_weight_sharing")
def single_path_weight_sharing(workdir: Path) -> dict:
    from darts_lightning.discrete.weight_sharing import SinglePathSupernet
    from darts_lightning.spaces.edges import MixedEdge
    from darts_lightning.spaces.nasbench201 import NB201Space

    # A different seed per rank: DDP must still leave every rank with the same model.
    pl.seed_everything(torch.distributed.get_rank())
    data = SearchDataModule("digits", batch_size=16)
    model = SinglePathSupernet(NB201Space(channels=4, cells_per_stage=1), in_channels=1, num_classes=10, image_size=8)
    checksums, recorder = StepChecksums(), _PathsAndStart()
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_find_unused_parameters_true", max_epochs=2,
        limit_train_batches=3, limit_val_batches=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(workdir),
        callbacks=[checksums, recorder],
    )
    trainer.fit(model, data)
    # For every weight of a mixed-edge op: was its op on some trained path at its edge, and did it move?
    sampled = [model.space.parse(p) for p in recorder.paths]
    final = dict(model.named_parameters())
    op_weights = {}
    for name, edge in model.network.named_modules():
        if isinstance(edge, MixedEdge):
            k = int(name.rsplit(".", 1)[1])
            for j, index in enumerate(edge.op_indices):
                on_a_path = any(a.ops[k] == edge.op_names[index] for a in sampled)
                for pname, _ in edge.ops[j].named_parameters():
                    key = f"network.{name}.ops.{j}.{pname}"
                    op_weights[key] = (on_a_path, not torch.equal(recorder.start[key], final[key]))
    return {"state": state_snapshot(model, trainer), "checksums": checksums.checksums, "paths": recorder.paths,
            "expected_paths": [model.space.format(model.path_at(s)) for s in range(trainer.global_step)],
            "op_weights": op_weights, "first_batch": list(trainer.train_dataloader["train"].sampler)[:16],
            "global_step": trainer.global_step}


class _Samples(pl.Callback):
    """The ops the sampling relaxation picks for the weight step of every step (argmax of each edge's weights)."""

    def __init__(self) -> None:
        self.samples: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pl_module.sample(phase=1)
        mixing = pl_module.network.mixing(detach=True)
        self.samples.append(torch.cat([mixing["normal"].weights, mixing["reduce"].weights]).float().argmax(-1).tolist())


FAMILY = {
    "pcdarts": dict(relaxation="pcdarts", relaxation_args={"partial_channels": 2}, edge_normalization=True),
    # GDAS and SNAS with the released code's options: the stale-α clip and the joint step all-reduce α's
    # gradient inside the weight step.
    "gdas": GDAS_OPTIONS,
    "snas": SNAS_OPTIONS,
    "drnas": dict(relaxation="drnas", relaxation_args={"kl_weight": 1e-3}),
    "darts_minus_beta_decay": dict(auxiliary_skip=True, beta_decay_max=10.0),
    # SDARTS on DARTS: the remedies of FAMILY_REMEDIES perturb the weight step
    "sdarts_rs": {},
    "sdarts_adv": {},
}

#: Remedies added to the flat settings of FAMILY (which have none for SDARTS). Two PGD steps instead of 7 keep
#: the attack, its all-reduced gradient and its keep-or-revert test, at a third of the cost.
FAMILY_REMEDIES: dict[str, Callable[[], Remedy]] = {
    "sdarts_rs": RandomSmoothing,
    "sdarts_adv": lambda: AdversarialPerturbation(steps=2),
}


class _Perturbations(pl.Callback):
    """``(unperturbed, perturbed)`` mixing weights (all cells, flattened) of every weight step that a remedy
    perturbs (SDARTS). DDP averages the weight gradients, so ranks that drew different noise would still end
    with the same weights and α: only the perturbations themselves show it."""

    def __init__(self) -> None:
        self.perturbations: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        for remedy in pl_module.remedies:
            if remedy.perturbs_weight_step:
                remedy.perturbed = self._recording(remedy.perturbed)

    def _recording(self, perturbed: Callable[..., list[torch.Tensor]]) -> Callable[..., list[torch.Tensor]]:
        def record(supernet, batch, weights, *args, **kwargs) -> list[torch.Tensor]:
            result = perturbed(supernet, batch, weights, *args, **kwargs)
            flat = [torch.cat([w.detach().flatten().cpu() for w in ws]) for ws in (weights, result)]
            self.perturbations.append((flat[0], flat[1]))
            return result

        return record


def _family_run(workdir: Path, variant: str) -> dict:
    # A different seed per rank: the sample seed is broadcast from rank 0, the samples must agree.
    pl.seed_everything(torch.distributed.get_rank())
    data = SearchDataModule("digits", batch_size=16)
    if variant in FAMILY_REMEDIES:
        parts, _ = search_parts(layers=2, **FAMILY[variant])
        model = DARTSSearch(**{**parts, "remedies": [*parts["remedies"], FAMILY_REMEDIES[variant]()]})
    else:
        model = tiny_search(layers=2, **FAMILY[variant])
    checksums, samples, perturbations = StepChecksums(), _Samples(), _Perturbations()
    strategy = "ddp_find_unused_parameters_true" if model.network.relaxation.computes_subset else "ddp"
    trainer = _ddp_trainer(workdir, [checksums, samples, perturbations], strategy=strategy)
    trainer.fit(model, data)
    return {"state": state_snapshot(model, trainer), "checksums": checksums.checksums, "samples": samples.samples,
            "perturbations": perturbations.perturbations,
            "first_batch": list(trainer.train_dataloader["train"].sampler)[:16], "global_step": trainer.global_step}


for _variant in FAMILY:
    scenario(f"family_{_variant}")(lambda workdir, _variant=_variant: _family_run(workdir, _variant))
