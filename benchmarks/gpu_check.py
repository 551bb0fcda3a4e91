"""One command that checks darts_lightning on a GPU: every method runs there, how fast, how much memory.

    python benchmarks/gpu_check.py                      # all cases on CUDA, at most 5 minutes on one GPU
    python benchmarks/gpu_check.py --cases speed/darts  # a subset: a regular expression (or substring) on case names
    python benchmarks/gpu_check.py --cases compiled --time-budget 540   # rerun the compiled cases with more time
    python benchmarks/gpu_check.py --list               # the case names
    python benchmarks/gpu_check.py --device cpu --quick # the same cases at tiny sizes on a CPU (under 2 minutes on 2 cores)
    python benchmarks/gpu_check.py --reference-darts /tmp/darts   # also time the released DARTS code (below)

Every case runs in this one process, isolated: an exception fails that case only, and memory is freed
between cases (garbage collection, ``torch.cuda.empty_cache``, peak statistics reset). Each finished case
prints one JSON line (``case``, ``ok``, its configuration, and where measured ``seconds_per_step`` and
``peak_memory_mb``; ``error``, one line, when not ok), then a summary table follows; the exit status is 1
if any case failed (2 for a usage error). ``--json-out FILE`` also writes all results to FILE. What a
case's fit prints goes to stderr (with its traceback if it fails), so stdout holds only the JSON lines and
the summary. On CUDA the run stops after ``--time-budget`` (300 s; import time not counted): the case
then running fails with a ``CaseTimeout`` and later ones fail as ``CaseSkipped``, so the command never
overruns its slot; a case also fails after ``--case-timeout`` (240 s). The cases run in the order of
``--list``, the compiled ones last: compilation is the slowest and least predictable part.

**Smoke cases** (``smoke/...``): a few search steps on the device in fp32 and in bf16-mixed for every member
of the DARTS family, with its parts from ``configs/<method>_cifar10.yaml`` (DARTS first order; second order
with the finite-difference and the exact Hessian-vector product; PC-DARTS; GDAS with and without edge
normalisation; SNAS; DrNAS; DARTS-; β-DARTS over two one-batch epochs, so that its regulariser is on in the
second), the Hessian-eigenvalue diagnostic at an epoch end (the ``HessianEigenvalue`` callback) and the
NAS-Bench-201 space; then the retraining module (DARTS_V2 with auxiliary head and drop path, two one-batch
epochs so that drop path is on in the second), the discrete search scored by a weight-sharing supernet and
by training from scratch (NAS-Bench-201 space, 3 and 2 architectures, on the bundled digits), and a DARTS
search under ``strategy=DDPStrategy`` with one device (NCCL on CUDA, gloo on a CPU). Each also checks that
it ran where it should: every parameter and buffer is on the device at the end of training, the architecture
parameters (or the weights) moved, the loss is finite.

**Speed and memory cases** (``speed/...``) at the paper's search configuration (C=16, 8 cells, batch 64,
32×32 images): the median time of a search step (the architecture step plus the weight step, timed from
``on_train_batch_start`` to ``on_train_batch_end`` with ``torch.cuda.synchronize()``) over ``--steps`` steps
after ``--warmup`` untimed ones, and the peak of ``torch.cuda.max_memory_allocated`` (on a CPU: the peak
resident memory of this process, which only grows from case to case). Eager first order for darts, pcdarts,
gdas, snas, drnas, darts_minus and beta_darts, eager second-order DARTS, and DARTS first and second order
compiled (the ``CompileSupernet`` callback; ``compile_seconds`` is the time the warm-up steps took beyond as
many steady steps, ``first_step_seconds`` the first step's time). The compiled cases use torch's default
backend (inductor) unless ``--compile-backend`` names another; on a CPU the default is ``aot_eager``, which
traces the same graphs (dynamo and AOTAutograd) without generating C++ kernels: inductor spends over 5
minutes on 2 cores compiling even quick mode's supernet. DARTS first order also gets
``projected_50_epoch_minutes`` = seconds_per_step × 391 steps × 50 epochs / 60 (batch 64 on 25,000
search-train images), compared in the summary with the target of 30 minutes (about 92 ms per step).

**Beside the released DARTS code** (``reference/darts_order1``, ``reference/darts_order2``; only with
``--reference-darts DIR``): the search step of quark0/darts (commit
f276dd346a09ae3160f8e3aca5c7b193fda1da37, ``cnn/train_search.py``: ``architect.step``, then the weight
step with gradient clip 5; ``cudnn.benchmark = True`` as that script sets it) on the same random batches
and shape, timed the same way, with our DARTS step of the same order and its ratio (target: ours ≤ 0.25×
the released step). Prepare DIR outside this repository::

    git clone https://github.com/quark0/darts /tmp/darts && git -C /tmp/darts checkout f276dd3
    python benchmarks/gpu_check.py --cases 'reference|speed/darts_o' --reference-darts /tmp/darts

(The GPU machine has no network: prepare DIR elsewhere and copy it there; it is never part of this
repository.) If DIR is a git checkout, its commit is checked and recorded.

Only ``cnn/model_search.py`` and ``cnn/architect.py`` (and their imports ``operations.py`` and
``genotypes.py``) are imported; ``train_search.py`` itself is not (``.cuda(async=True)`` is a syntax error
since Python 3.7; ``Variable(..., volatile=True)``, ``loss.data[0]`` and ``clip_grad_norm`` are only used
there). On CUDA with torch 2 the two imported files run unchanged: ``Variable(...)`` now returns a
tensor, and the five calls of the deprecated ``(Number, Tensor)`` overloads in ``architect.py``
(``theta.sub(eta, ...)`` in ``_compute_unrolled_model``, ``g.data.sub_(eta, ...)`` in
``_backward_step_unrolled``, ``p.data.add_(R, v)`` twice and ``p.data.sub_(2*R, v)`` in
``_hessian_vector_product``) still work with a deprecation warning (their current spelling is
``x.sub(other, alpha=eta)``). For ``--device cpu``, also remove the four ``.cuda()`` calls: in
``model_search.py``, ``Network.new`` (``Network(...).cuda()``) and ``_initialize_alphas`` (two
``torch.randn(k, num_ops).cuda()``), and in ``architect.py``, ``_construct_model_from_theta`` (``return
model_new.cuda()`` becomes ``return model_new``)::

    sed -i 's/\\.cuda()//g' /tmp/darts/cnn/model_search.py /tmp/darts/cnn/architect.py

``--quick`` shrinks every size so that a CPU (2 cores, one thread) runs all the cases in under 2 minutes
and the smoke cases in about 20 seconds: C=4, 3 cells (two reduction cells and a normal one), batch 8,
8×8 images; smoke: 2 steps, with cells of 1 node (the eigenvalue's exact Hessian has a row per entry of
α: 32 instead of 224), NAS-Bench-201 with 1 cell per stage; speed: 1 warm-up and 2 timed steps with cells
of 4 nodes like the released code's (which cannot be shrunk), compiled with cells of 1 node. Its timings
only show that the measurement works.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import re
import resource
import signal
import statistics
import sys
import tempfile
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_step import RandomImages, method_arguments, replaced, with_order, with_shape

from darts_lightning import (
    BetaDecay,
    CompileSupernet,
    DARTSSearch,
    DiscreteSearch,
    GenotypeClassifier,
    HessianEigenvalue,
    NB201Space,
    SearchDataModule,
    SinglePathSupernet,
)

#: search steps per epoch at batch 64 on CIFAR-10's 25,000 search-train images, and the paper's 50 epochs
STEPS_PER_EPOCH, EPOCHS = 391, 50
TARGET_MINUTES = 30.0
#: ours ≤ this fraction of the released DARTS code's step time
TARGET_RATIO = 0.25
REFERENCE_COMMIT = "f276dd346a09ae3160f8e3aca5c7b193fda1da37"
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}


class CheckFailed(AssertionError):
    """A case ran but did not do what it should (wrong device, α still, non-finite loss)."""


class CaseTimeout(Exception):
    """A case ran past --case-timeout or the end of --time-budget."""


@dataclass(frozen=True)
class Shape:
    channels: int
    layers: int
    batch_size: int
    image_size: int
    nodes: int = 4  # intermediate nodes of a DARTS cell (and as many concatenated into its output)

    def as_config(self) -> dict[str, int]:
        return {"channels": self.channels, "layers": self.layers, "nodes": self.nodes, "batch_size": self.batch_size,
                "image_size": self.image_size}

    def shaped(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The DARTSSearch arguments ``kwargs`` with the space at this shape (C, cells, nodes of the DARTS cell)."""
        return with_shape(kwargs, self.channels, self.layers, self.nodes)


@dataclass
class Settings:
    device: str
    quick: bool
    warmup: int
    steps: int
    reference_darts: Path | None = None
    verbose: bool = False
    compile_backend: str = "inductor"

    @property
    def smoke_shape(self) -> Shape:
        # Three cells: the two reductions and one normal cell, so that both α tensors are used. Quick: cells
        # of 2 nodes (5 edges instead of 14), which makes the eigenvalue's Hessian 80 × 80 instead of 224 × 224.
        return Shape(4, 3, 8, 8, nodes=1) if self.quick else Shape(8, 5, 16, 32)

    @property
    def smoke_steps(self) -> int:
        return 2 if self.quick else 3

    @property
    def speed_shape(self) -> Shape:
        return Shape(4, 3, 8, 8) if self.quick else Shape(16, 8, 64, 32)  # the paper's search configuration

    @property
    def compiled_shape(self) -> Shape:
        # Compilation time grows with the traced graph: quick mode compiles cells of 1 node.
        return Shape(4, 3, 8, 8, nodes=1) if self.quick else self.speed_shape


@dataclass
class Context:
    """What a case gets: the settings, a scratch directory, and the results of the cases before it."""

    settings: Settings
    root: Path
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return self.settings.device


@dataclass
class Case:
    name: str
    run: Callable[[Context], dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- measuring and checking


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class StepTimer(pl.Callback):
    """Wall time of every training step, the device synchronised at both ends (as benchmarks/search_step.py)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter() - self._start)


class ProxyProbe(pl.Callback):
    """Records, for every proxy training of the scratch evaluator, the devices of its tensors and whether
    its weights moved: the model is built and dropped inside the evaluator."""

    def __init__(self) -> None:
        self.devices: list[set[str]] = []
        self.moved: list[bool] = []
        self._before: list[Tensor] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self._before = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_end(self, trainer, pl_module) -> None:
        self.devices.append({t.device.type for t in [*pl_module.parameters(), *pl_module.buffers()]})
        self.moved.append(any(not torch.equal(b, p.detach()) for b, p in zip(self._before, pl_module.parameters())))


def peak_memory(device: str) -> dict[str, Any]:
    if device == "cuda":
        return {"peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
                "memory_measure": "torch.cuda.max_memory_allocated"}
    return {"peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "memory_measure": "peak RSS of the process (cumulative over the cases)"}


def reset_peak_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def misplaced_tensors(module: nn.Module, device: str) -> list[str]:
    return [f"{name} ({t.device})" for name, t in [*module.named_parameters(), *module.named_buffers()]
            if t.device.type != device]


def check_on_device(module: nn.Module, device: str) -> None:
    """Every parameter and buffer of ``module`` lives on a ``device``-type device (for modules used outside a
    fit; after a fit Lightning has moved the module back to the CPU: see :class:`PlacementProbe`)."""
    misplaced = misplaced_tensors(module, device)
    if misplaced:
        raise CheckFailed(f"{len(misplaced)} tensors are not on {device}, e.g. {', '.join(misplaced[:3])}")


class PlacementProbe(pl.Callback):
    """Where the module's parameters and buffers were at the end of training. It is read there because the
    strategy's teardown moves the module back to the CPU when ``fit`` returns."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.misplaced: list[str] | None = None

    def on_train_end(self, trainer, pl_module) -> None:
        self.misplaced = misplaced_tensors(pl_module, self.device)


def check_fit_on_device(trainer: pl.Trainer) -> None:
    """Every parameter and buffer of the fitted module was on the device at the end of training."""
    probe = next(c for c in trainer.callbacks if isinstance(c, PlacementProbe))  # type: ignore[attr-defined]
    if probe.misplaced is None:
        raise CheckFailed("training never ended (no placement was recorded)")
    if probe.misplaced:
        raise CheckFailed(f"{len(probe.misplaced)} tensors were not on {probe.device} at the end of training, "
                          f"e.g. {', '.join(probe.misplaced[:3])}")


def snapshot(tensors: Sequence[Tensor]) -> list[Tensor]:
    return [t.detach().clone() for t in tensors]


def check_moved(before: Sequence[Tensor], after: Sequence[Tensor], what: str) -> int:
    """The number of tensors that changed; fails unless every one did."""
    moved = sum(not torch.equal(b.to(a.device), a.detach()) for b, a in zip(before, after))
    if not before or moved < len(before):
        raise CheckFailed(f"{what}: {moved} of {len(before)} tensors moved during the fit")
    return moved


def finite_loss(trainer: pl.Trainer, key: str = "train/loss") -> float:
    """The last logged training loss, which must be finite."""
    metrics = trainer.callback_metrics
    names = [k for k in (f"{key}_step", key, f"{key}_epoch") if k in metrics]
    if not names:
        raise CheckFailed(f"no {key} was logged (logged: {sorted(metrics)})")
    value = float(metrics[names[0]])
    if not math.isfinite(value):
        raise CheckFailed(f"{names[0]} is {value}")
    return value


@contextlib.contextmanager
def default_compile_backend(backend: str | None) -> Iterator[None]:
    """Make ``backend`` the default of ``torch.compile`` (which ``nn.Module.compile`` calls) for calls that
    name no backend, mode or options. ``None`` or ``inductor`` (torch's default): nothing changes.

    On a CPU, inductor generates and compiles C++ for every kernel of the supernet's forward and backward
    passes: over 5 minutes on 2 cores even for quick mode's cells of 1 node; ``aot_eager`` traces the same
    graphs (dynamo and AOTAutograd, where graph breaks and recompilations show) in about 20 seconds.
    """
    if backend is None or backend == "inductor":
        yield
        return
    compile_function = torch.compile

    def compile_with_backend(*args: Any, **kwargs: Any) -> Any:
        if all(kwargs.get(k) is None for k in ("backend", "mode", "options")):
            kwargs["backend"] = backend
        return compile_function(*args, **kwargs)

    torch.compile = compile_with_backend
    try:
        yield
    finally:
        torch.compile = compile_function


def trainer_for(ctx: Context, *, precision: str = "32-true", callbacks: Sequence[pl.Callback] = (), **overrides) -> pl.Trainer:
    kwargs: dict[str, Any] = dict(
        accelerator=ctx.device, devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, precision=precision, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=str(ctx.root), callbacks=[*callbacks, PlacementProbe(ctx.device)],
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)


# --------------------------------------------------------------------------- smoke cases


def search_smoke(kwargs: dict[str, Any], precision: str, *, epochs: int | None = None, ddp: bool = False,
                 eigenvalue: bool = False) -> Callable[[Context], dict[str, Any]]:
    """A few search steps of ``DARTSSearch(**kwargs)`` with its space at the smoke shape.

    ``epochs``: that many epochs of one batch each (the schedules that start at epoch 1); ``eigenvalue``:
    one epoch of two batches with the eigenvalue measured at its end (the ``HessianEigenvalue`` callback);
    ``ddp``: under DDPStrategy. The NAS-Bench-201 space takes 1 cell per stage (2 at full size) for the
    shape's cells.
    """

    def run(ctx: Context) -> dict[str, Any]:
        shape, steps = ctx.settings.smoke_shape, ctx.settings.smoke_steps
        if eigenvalue:
            # Cells of 1 node: the Hessian has a row (one double-backward pass) per entry of α, 32 instead of
            # 224; at 4 nodes the 224 passes took over 200 s on an H200 at this shape.
            shape = replace(shape, nodes=1)
        pl.seed_everything(0, verbose=False)
        nb201 = isinstance(kwargs.get("space"), NB201Space)
        if nb201:  # its cell is fixed; ``layers`` are cells per stage
            cells_per_stage = 1 if ctx.settings.quick else 2
            shaped = with_shape(kwargs, shape.channels, cells_per_stage)
        else:
            shaped = shape.shaped(kwargs)
        model = DARTSSearch(in_channels=3, num_classes=10, image_size=shape.image_size, **shaped)
        alphas = snapshot(model.arch_parameters())
        timer = StepTimer(ctx.device)
        eigenvalues = HessianEigenvalue(every=1) if eigenvalue else None
        callbacks: list[pl.Callback] = [timer, *([eigenvalues] if eigenvalues is not None else [])]
        overrides: dict[str, Any]
        if eigenvalue:
            overrides = {"max_epochs": 1, "limit_train_batches": 2}
            batches = 2
        elif epochs:
            overrides = {"max_epochs": epochs, "limit_train_batches": 1}
            batches = 1
        else:
            overrides = {"max_steps": steps}
            batches = steps + 1  # the epoch does not end inside the timed steps
        if ddp:
            from pytorch_lightning.strategies import DDPStrategy

            overrides["strategy"] = DDPStrategy(process_group_backend="nccl" if ctx.device == "cuda" else "gloo")
        trainer = trainer_for(ctx, precision=precision, callbacks=callbacks, **overrides)
        reset_peak_memory(ctx.device)
        trainer.fit(model, RandomImages(shape.batch_size, shape.image_size, batches))
        expected = 2 if eigenvalue else (epochs or steps)
        if len(timer.times) != expected:
            raise CheckFailed(f"{len(timer.times)} training steps ran, expected {expected}")
        check_fit_on_device(trainer)
        moved = check_moved(alphas, model.arch_parameters(), "architecture parameters")
        out: dict[str, Any] = {"loss": finite_loss(trainer), "arch_tensors_moved": moved,
                               "seconds_per_step": statistics.median(timer.times), **peak_memory(ctx.device)}
        if eigenvalue:
            out["nodes"] = shape.nodes
        if nb201:
            out.update({"layers": cells_per_stage, "layers_are": "cells per stage", "nodes": "the NAS-Bench-201 cell"})
        if eigenvalues is not None:
            values = [record["eigenvalue"] for record in eigenvalues.history]
            if len(values) != 1 or not math.isfinite(values[0]):
                raise CheckFailed(f"expected one finite Hessian eigenvalue at the epoch end, got {values}")
            out["hessian_eigenvalue"] = values[0]
        if epochs and any(isinstance(r, BetaDecay) for r in model.remedies):
            if "train/arch_regularizer" not in trainer.callback_metrics:
                raise CheckFailed("the β-decay regulariser was never applied")
        return out

    return run


def retrain_smoke(ctx: Context) -> dict[str, Any]:
    """GenotypeClassifier(DARTS_V2): two epochs of one batch, with the auxiliary head, drop path on in the second."""
    shape = ctx.settings.smoke_shape
    pl.seed_everything(0, verbose=False)
    model = GenotypeClassifier("DARTS_V2", 3, 10, shape.image_size, channels=shape.channels, layers=shape.layers,
                               auxiliary_weight=0.4, drop_path_prob=0.2)
    if model.network.auxiliary_head is None:
        raise CheckFailed("the network has no auxiliary head")
    weights = snapshot([*model.network.auxiliary_head.parameters(), *model.network.cells.parameters()])
    g = torch.Generator().manual_seed(0)
    n = 2 * shape.batch_size
    data = TensorDataset(torch.randn(n, 3, shape.image_size, shape.image_size, generator=g), torch.randint(10, (n,), generator=g))
    timer = StepTimer(ctx.device)
    trainer = trainer_for(ctx, callbacks=[timer], max_epochs=2, limit_train_batches=1, gradient_clip_val=5.0)
    reset_peak_memory(ctx.device)
    trainer.fit(model, train_dataloaders=DataLoader(data, shape.batch_size))
    check_fit_on_device(trainer)
    after = [*model.network.auxiliary_head.parameters(), *model.network.cells.parameters()]
    moved = sum(not torch.equal(b, a.detach()) for b, a in zip(weights, after))
    if moved == 0:
        raise CheckFailed("no weight of the cells or the auxiliary head moved")
    if not model.network.drop_path_prob > 0:
        raise CheckFailed(f"drop path was never on (drop_path_prob {model.network.drop_path_prob})")
    return {"loss": finite_loss(trainer), "weights_moved": moved, "drop_path_prob": model.network.drop_path_prob,
            "seconds_per_step": statistics.median(timer.times), **peak_memory(ctx.device)}


def discrete_weight_sharing_smoke(ctx: Context) -> dict[str, Any]:
    """Train a single-path NAS-Bench-201 supernet on the device, then a random search of 3 cells scored with it."""
    pl.seed_everything(0, verbose=False)
    data = {"dataset": "digits", "batch_size": 32, "seed": 0}
    supernet = SinglePathSupernet(NB201Space(channels=4, cells_per_stage=1), in_channels=1, num_classes=10, image_size=8)
    before = snapshot(supernet.weight_parameters())
    trainer = trainer_for(ctx, max_epochs=1, limit_train_batches=2)
    reset_peak_memory(ctx.device)
    trainer.fit(supernet, SearchDataModule(**data))
    check_fit_on_device(trainer)
    if not any(not torch.equal(b.to(a.device), a.detach()) for b, a in zip(before, supernet.weight_parameters())):
        raise CheckFailed("the supernet's weights did not move")
    checkpoint = ctx.root / "supernet.ckpt"
    trainer.save_checkpoint(checkpoint)
    search = DiscreteSearch("nasbench201", evaluator="weight_sharing", budget=3, checkpoint_every=None, evaluator_args={
        "supernet": str(checkpoint), "data": data, "batches": 1, "bn_batches": 1, "device": ctx.device})
    trainer_for(ctx, max_epochs=1).fit(search)
    check_on_device(search.evaluator.module, ctx.device)
    rewards = [h["reward"] for h in search.history]
    if len(rewards) != 3 or not all(math.isfinite(r) and 0 <= r <= 1 for r in rewards):
        raise CheckFailed(f"expected 3 accuracies in [0, 1], got {rewards}")
    return {"rewards": rewards, "supernet_loss": finite_loss(trainer), **peak_memory(ctx.device)}


def discrete_scratch_smoke(ctx: Context) -> dict[str, Any]:
    """A random search of 2 NAS-Bench-201 cells, each trained from scratch on the device (1 epoch of 2 batches)."""
    pl.seed_everything(0, verbose=False)
    probe = ProxyProbe()
    search = DiscreteSearch("nasbench201", evaluator="scratch", budget=2, checkpoint_every=None, evaluator_args={
        "epochs": 1, "channels": 4, "layers": 1, "data": {"dataset": "digits", "batch_size": 32},
        "accelerator": ctx.device, "trainer_args": {"limit_train_batches": 2, "callbacks": [probe]}})
    reset_peak_memory(ctx.device)
    trainer_for(ctx, max_epochs=1).fit(search)
    rewards = [h["reward"] for h in search.history]
    if len(rewards) != 2 or not all(math.isfinite(r) and 0 <= r <= 1 for r in rewards):
        raise CheckFailed(f"expected 2 accuracies in [0, 1], got {rewards}")
    if probe.devices != [{ctx.device}] * 2:
        raise CheckFailed(f"the proxy trainings ran on {probe.devices}, expected {ctx.device}")
    if not all(probe.moved):
        raise CheckFailed(f"a proxy training did not move its weights: {probe.moved}")
    return {"rewards": rewards, **peak_memory(ctx.device)}


def smoke_cases() -> list[Case]:
    darts, darts2, gdas = method_arguments("darts"), method_arguments("darts2"), method_arguments("gdas")
    variants: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("darts_o1", darts, {}),
        ("darts_o2_fd", {**darts2, "estimator": replaced(darts2["estimator"], hessian="finite_difference")}, {}),
        ("darts_o2_exact", {**darts2, "estimator": replaced(darts2["estimator"], hessian="exact")}, {}),
        ("pcdarts", method_arguments("pcdarts"), {}),
        ("gdas", gdas, {}),
        ("gdas_edge_norm", {**gdas, "space": replaced(gdas["space"], edge_normalization=True)}, {}),
        ("snas", method_arguments("snas"), {}),
        ("drnas", method_arguments("drnas"), {}),
        ("darts_minus", method_arguments("darts_minus"), {}),
        ("beta_darts", method_arguments("beta_darts"), {"epochs": 2}),
        ("hessian_eigenvalue", darts, {"eigenvalue": True}),
        ("nb201_o1", {**darts, "space": NB201Space()}, {}),
    ]
    cases = []
    for label, precision in PRECISIONS.items():
        for name, kwargs, options in variants:
            config = {"kind": "search", "precision": precision, "model": _config_text(kwargs), **_options_text(options)}
            cases.append(Case(f"smoke/{name}/{label}", search_smoke(kwargs, precision, **options), config))
    cases += [
        Case("smoke/retrain_darts_v2/fp32", retrain_smoke,
             {"kind": "retrain", "precision": "32-true", "genotype": "DARTS_V2", "auxiliary_weight": 0.4,
              "drop_path_prob": 0.2}),
        Case("smoke/discrete_weight_sharing/fp32", discrete_weight_sharing_smoke,
             {"kind": "discrete", "space": "nasbench201", "evaluator": "weight_sharing", "budget": 3, "data": "digits"}),
        Case("smoke/discrete_scratch/fp32", discrete_scratch_smoke,
             {"kind": "discrete", "space": "nasbench201", "evaluator": "scratch", "budget": 2, "data": "digits"}),
        Case("smoke/ddp_darts_o1/fp32", search_smoke(darts, "32-true", ddp=True),
             {"kind": "search", "precision": "32-true", "strategy": "ddp, devices=1 (nccl on cuda, gloo on cpu)"}),
    ]
    return cases


def _config_text(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The settings that tell the cases apart (the shared optimiser settings are the configs')."""
    space, estimator = kwargs["space"], kwargs.get("estimator")
    out: dict[str, Any] = {"space": space.name, "relaxation": kwargs["relaxation"].name if kwargs.get("relaxation") else "darts",
                           "order": estimator.order if estimator is not None else 1}
    if out["order"] == 2:
        out["hessian"] = estimator.hessian
    if estimator is not None and estimator.arch_batch != "val":
        out["arch_batch"] = estimator.arch_batch
    if getattr(space, "edge_normalization", False):
        out["edge_normalization"] = True
    if kwargs.get("remedies"):
        out["remedies"] = [type(r).__name__ for r in kwargs["remedies"]]
    if kwargs.get("step_order", "arch_first") != "arch_first":
        out["step_order"] = kwargs["step_order"]
    return out


def _options_text(options: dict[str, Any]) -> dict[str, Any]:
    out = {}
    if options.get("epochs"):
        out["schedule"] = f"{options['epochs']} epochs of 1 batch"
    if options.get("eigenvalue"):
        out["schedule"] = "1 epoch of 2 batches, eigenvalue at its end"
        out["callbacks"] = ["HessianEigenvalue(every=1)"]
    return out


# --------------------------------------------------------------------------- speed and memory cases


def search_speed(method: str, order: int, compiled: bool) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        settings = ctx.settings
        shape, warmup, steps = settings.compiled_shape if compiled else settings.speed_shape, settings.warmup, settings.steps
        kwargs = shape.shaped(with_order(method_arguments("darts2" if order == 2 else method), order))
        pl.seed_everything(0, verbose=False)
        model = DARTSSearch(in_channels=3, num_classes=10, image_size=shape.image_size, **kwargs)
        timer = StepTimer(ctx.device)
        # The supernet is compiled when the fit sets up, inside the backend's context below.
        callbacks = [timer, *([CompileSupernet()] if compiled else [])]
        trainer = trainer_for(ctx, callbacks=callbacks, max_steps=warmup + steps)
        reset_peak_memory(ctx.device)
        # One batch more than the steps: the epoch (and its end-of-epoch work) does not end inside them.
        with default_compile_backend(settings.compile_backend if compiled else None):
            trainer.fit(model, RandomImages(shape.batch_size, shape.image_size, warmup + steps + 1))
        if len(timer.times) != warmup + steps:
            raise CheckFailed(f"{len(timer.times)} steps ran, expected {warmup + steps}")
        check_fit_on_device(trainer)
        timed = timer.times[warmup:]
        median = statistics.median(timed)
        out: dict[str, Any] = {
            "seconds_per_step": median, "step_times": [round(t, 4) for t in timed],
            "warmup_step_times": [round(t, 4) for t in timer.times[:warmup]], "loss": finite_loss(trainer),
            **peak_memory(ctx.device),
        }
        if compiled:
            out["compile_seconds"] = round(sum(t - median for t in timer.times[:warmup]), 3)
            out["first_step_seconds"] = round(timer.times[0], 3)
        if method == "darts" and order == 1:
            out["projected_50_epoch_minutes"] = round(median * STEPS_PER_EPOCH * EPOCHS / 60, 2)
        return out

    return run


def speed_cases() -> list[Case]:
    cases = []
    for method in ("darts", "pcdarts", "gdas", "snas", "drnas", "darts_minus", "beta_darts"):
        cases.append(Case(f"speed/{method}_o1/eager", search_speed(method, 1, False),
                          {"kind": "speed", "method": method, "order": 1, "compile": False, "precision": "32-true"}))
    cases.append(Case("speed/darts_o2/eager", search_speed("darts", 2, False),
                      {"kind": "speed", "method": "darts", "order": 2, "compile": False, "precision": "32-true"}))
    return cases


def compiled_cases() -> list[Case]:
    return [Case(f"speed/darts_o{order}/compiled", search_speed("darts", order, True),
                 {"kind": "speed", "method": "darts", "order": order, "compile": True, "precision": "32-true"})
            for order in (1, 2)]


# --------------------------------------------------------------------------- the released DARTS code


def reference_speed(unrolled: bool) -> Callable[[Context], dict[str, Any]]:
    """One search step of quark0/darts's train_search.py (lines 150-160 at f276dd3), timed like ours."""

    def run(ctx: Context) -> dict[str, Any]:
        directory = ctx.settings.reference_darts / "cnn"
        device = torch.device(ctx.device)
        if ctx.device == "cpu":
            calls = [f.name for f in (directory / "model_search.py", directory / "architect.py") if ".cuda()" in f.read_text()]
            if calls:
                raise RuntimeError(
                    f"{' and '.join(calls)} in {directory} still call .cuda(): remove those calls for --device cpu "
                    "(see the docstring of benchmarks/gpu_check.py)"
                )
        commit = _reference_commit(directory.parent)
        model_search, architect = _import_reference(directory)
        shape, warmup, steps = ctx.settings.speed_shape, ctx.settings.warmup, ctx.settings.steps
        torch.manual_seed(0)
        criterion = nn.CrossEntropyLoss().to(device)
        model = model_search.Network(shape.channels, 10, shape.layers, criterion).to(device)
        optimizer = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        args = types.SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4, arch_weight_decay=1e-3,
                                     unrolled=unrolled)
        search = architect.Architect(model, args)
        alphas = snapshot(model.arch_parameters())
        data = RandomImages(shape.batch_size, shape.image_size, warmup + steps + 1)  # the batches ours get
        b = shape.batch_size
        batches = [tuple(t[i * b:(i + 1) * b].to(device) for t in (*data.train.tensors, *data.val.tensors))
                   for i in range(warmup + steps)]
        lr = 0.025  # the first epoch's rate of the cosine schedule
        times = []
        reset_peak_memory(ctx.device)
        for x, y, x_search, y_search in batches:
            model.train()
            synchronize(ctx.device)
            start = time.perf_counter()
            search.step(x, y, x_search, y_search, lr, optimizer, unrolled=unrolled)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            synchronize(ctx.device)
            times.append(time.perf_counter() - start)
            if not math.isfinite(float(loss)):
                raise CheckFailed(f"the released code's loss is {float(loss)}")
        check_on_device(model, ctx.device)
        for alpha in model.arch_parameters():
            if alpha.device.type != ctx.device:
                raise CheckFailed(f"the released code's α is on {alpha.device}")
        check_moved(alphas, model.arch_parameters(), "the released code's α")
        median = statistics.median(times[warmup:])
        out: dict[str, Any] = {
            "seconds_per_step": median, "step_times": [round(t, 4) for t in times[warmup:]], "loss": float(loss),
            **peak_memory(ctx.device),
        }
        out["reference_commit"] = commit
        if ctx.device == "cuda":
            out["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        order = 2 if unrolled else 1
        for variant in ("eager", "compiled"):
            ours = ctx.results.get(f"speed/darts_o{order}/{variant}", {})
            if ours.get("ok") and ours.get("nodes") == shape.nodes:
                out[f"ours_{variant}_seconds_per_step"] = ours["seconds_per_step"]
                out[f"ratio_ours_{variant}"] = round(ours["seconds_per_step"] / median, 3)
        return out

    return run


def _reference_commit(checkout: Path) -> str:
    """The commit of a git checkout of the released code (it must be f276dd3), or a note that it is not one."""
    import subprocess

    if not (checkout / ".git").exists():
        return "unknown (not a git checkout)"
    try:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    if commit != REFERENCE_COMMIT:
        raise RuntimeError(f"{checkout} is at commit {commit}; the comparison is with quark0/darts at {REFERENCE_COMMIT}: "
                           f"git -C {checkout} checkout {REFERENCE_COMMIT[:7]}")
    return commit


def _import_reference(directory: Path) -> tuple[types.ModuleType, types.ModuleType]:
    if not (directory / "model_search.py").is_file() or not (directory / "architect.py").is_file():
        raise FileNotFoundError(f"no cnn/model_search.py and cnn/architect.py under {directory.parent}: "
                                "--reference-darts must be a checkout of quark0/darts")
    # Their modules have generic names (operations, genotypes, utils): import them fresh from this directory.
    for name in ("model_search", "architect", "operations", "genotypes"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(directory))
    try:
        import architect  # type: ignore[import-not-found]
        import model_search  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(directory))
    return model_search, architect


def reference_cases() -> list[Case]:
    return [Case(f"reference/darts_order{order}", reference_speed(order == 2),
                 {"kind": "reference", "code": f"quark0/darts@{REFERENCE_COMMIT[:7]}", "order": order,
                  "unrolled": order == 2})
            for order in (1, 2)]


# --------------------------------------------------------------------------- running


def build_cases(settings: Settings) -> list[Case]:
    """Every case, in running order: the smoke cases, eager speed, the released code, compiled speed last
    (compilation is the slowest and least certain part)."""
    cases = smoke_cases() + speed_cases()
    if settings.reference_darts is not None:
        cases += reference_cases()
    return cases + compiled_cases()


def select(cases: Sequence[Case], pattern: str | None) -> list[Case]:
    """The cases whose names match ``pattern``: a regular expression searched in the name, or, if it is not
    a valid one, a substring."""
    if not pattern:
        return list(cases)
    try:
        regex = re.compile(pattern)
        return [c for c in cases if regex.search(c.name)]
    except re.error:
        return [c for c in cases if pattern in c.name]


def one_line(error: BaseException) -> str:
    """``Type: message`` on one line, at most 800 characters of message; a time-out wrapped by another
    exception (torch's compiler re-raises what interrupts it) is reported as the time-out."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, CaseTimeout):
            error = cause
            break
        cause = cause.__cause__ or cause.__context__
    message = " ".join(str(error).split())
    if len(message) > 800:
        message = message[:800] + " ..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout inside the case after ``seconds`` (0: no limit; POSIX, main thread only)."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise CaseTimeout(f"the case ran past its time limit of {seconds:.0f} s (--case-timeout, --time-budget)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def isolated(settings: Settings) -> Iterator[Path]:
    """A scratch directory, the environment and cuDNN setting restored, fit output on stderr, memory freed after."""
    environment = dict(os.environ)
    benchmark = torch.backends.cudnn.benchmark
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as root, warnings.catch_warnings():
        if not settings.verbose:
            for logger in loggers:
                logger.setLevel(logging.WARNING)
            warnings.simplefilter("ignore")
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield Path(root)
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
            os.environ.clear()
            os.environ.update(environment)
            torch.backends.cudnn.benchmark = benchmark
            torch.set_grad_enabled(True)
            with contextlib.suppress(Exception):
                torch._dynamo.reset()
            gc.collect()
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()


class CaseSkipped(Exception):
    """A case that did not run (the time budget was spent)."""


def skipped(reason: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        raise CaseSkipped(reason)

    return run


def run_case(case: Case, settings: Settings, results: dict[str, dict[str, Any]] | None = None,
             case_timeout: float = 0) -> dict[str, Any]:
    """Run one case; any exception makes it ``ok: false`` with the error in one line (traceback on stderr)."""
    record: dict[str, Any] = {"case": case.name, "ok": False, "device": settings.device, "quick": settings.quick}
    if case.name.startswith("smoke/"):
        record.update(settings.smoke_shape.as_config())
        record["steps"] = settings.smoke_steps
    elif case.name.startswith(("speed/", "reference/")):
        compiled = bool(case.config.get("compile"))
        record.update((settings.compiled_shape if compiled else settings.speed_shape).as_config())
        record.update({"warmup": settings.warmup, "steps": settings.steps})
        if compiled:
            record["compile_backend"] = settings.compile_backend
    record.update(case.config)
    start = time.perf_counter()
    try:
        with isolated(settings) as root, time_limit(case_timeout):
            if case.name.startswith("reference/") and settings.device == "cuda":
                torch.backends.cudnn.benchmark = True  # as train_search.py sets it
            measured = case.run(Context(settings, root, results if results is not None else {}))
        record.update(measured)
        record["ok"] = True
    except Exception as error:  # noqa: BLE001 - a failing case is a result, not the end of the run
        record["error"] = one_line(error)
        print(f"--- {case.name} failed:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
    record["wall_seconds"] = round(time.perf_counter() - start, 2)
    return record


def _milliseconds(value: Any) -> str:
    return f"{1000 * value:.1f} ms" if isinstance(value, (int, float)) else "-"


def _shape_of(record: dict[str, Any]) -> str:
    return "C={channels}, {layers} cells of {nodes} nodes, batch {batch_size}, {image_size}x{image_size}".format(**record)


def summary(results: Sequence[dict[str, Any]], settings: Settings) -> str:
    rows = []
    for r in results:
        notes = []
        if not r["ok"]:
            notes.append(r["error"][:100])
        for key, label in (("compile_seconds", "compile {:.1f} s"), ("projected_50_epoch_minutes", "50 epochs {:.1f} min"),
                           ("ratio_ours_eager", "ours eager {:.2f}x"), ("ratio_ours_compiled", "ours compiled {:.2f}x")):
            if key in r:
                notes.append(label.format(r[key]))
        peak = r.get("peak_memory_mb")
        rows.append((r["case"], "ok" if r["ok"] else "FAIL", _milliseconds(r.get("seconds_per_step")),
                     f"{peak:.0f}" if isinstance(peak, (int, float)) else "-", "; ".join(notes)))
    widths = [max(len(row[i]) for row in rows + [("case", "ok", "s/step", "peak MB", "notes")]) for i in range(4)]
    name = torch.cuda.get_device_name() if settings.device == "cuda" else "cpu"
    memory = "torch.cuda.max_memory_allocated" if settings.device == "cuda" else "peak RSS of the process, cumulative"
    lines = [f"summary: {sum(r['ok'] for r in results)}/{len(results)} cases ok on {name} "
             f"({'quick sizes, ' if settings.quick else ''}torch {torch.__version__}, lightning {pl.__version__}; "
             f"peak MB: {memory})"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(("case", "ok", "s/step", "peak MB"), widths)) + "  notes")
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[4])
    by_name = {r["case"]: r for r in results}
    target_step = TARGET_MINUTES * 60 / (STEPS_PER_EPOCH * EPOCHS)
    for variant in ("eager", "compiled"):
        r = by_name.get(f"speed/darts_o1/{variant}")
        if r and r["ok"]:
            verdict = "meets" if r["projected_50_epoch_minutes"] <= TARGET_MINUTES else "misses"
            lines.append(f"DARTS first order, {variant}: {_milliseconds(r['seconds_per_step'])} per step -> "
                         f"{r['projected_50_epoch_minutes']:.1f} min for 50 epochs of {STEPS_PER_EPOCH} steps; {verdict} the "
                         f"target of {TARGET_MINUTES:.0f} min ({_milliseconds(target_step)} per step)"
                         + (" [quick sizes: not the paper's configuration]" if settings.quick else ""))
    for order in (1, 2):
        reference = by_name.get(f"reference/darts_order{order}")
        if not reference or not reference["ok"]:
            continue
        for variant in ("eager", "compiled"):
            ours = by_name.get(f"speed/darts_o{order}/{variant}")
            if ours and not ours["ok"]:
                lines.append(f"order {order}, ours {variant}: failed ({ours['error'][:100]})")
            elif ours and _shape_of(ours) != _shape_of(reference):
                lines.append(f"order {order}, ours {variant}: not compared, measured at another shape ({_shape_of(ours)} "
                             f"against {_shape_of(reference)}: quick mode compiles smaller cells)")
            elif ours:
                ratio = ours["seconds_per_step"] / reference["seconds_per_step"]
                verdict = "meets" if ratio <= TARGET_RATIO else "misses"
                lines.append(f"order {order}, ours {variant} {_milliseconds(ours['seconds_per_step'])} vs the released code "
                             f"{_milliseconds(reference['seconds_per_step'])}: {ratio:.2f}x; {verdict} the target "
                             f"of {TARGET_RATIO:.2f}x")
            else:
                lines.append(f"order {order}, ours {variant}: not measured in this run (add speed/darts_o{order}/{variant} "
                             "to --cases)")
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="default: cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (C=4, 3 cells, batch 8, 8x8, 2 steps)")
    parser.add_argument("--cases", metavar="PATTERN", default=None,
                        help="run only the cases whose names match PATTERN (a regular expression, or a substring)")
    parser.add_argument("--list", action="store_true", help="print the selected case names and exit")
    parser.add_argument("--steps", type=int, default=None, help="timed steps of a speed case (default 10; quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before them (default 3; quick 1)")
    parser.add_argument("--reference-darts", metavar="DIR", type=Path, default=None,
                        help="a checkout of quark0/darts at f276dd3 prepared as the docstring says")
    parser.add_argument("--case-timeout", type=float, default=240.0, metavar="SECONDS",
                        help="fail a case that runs longer than this (default 240; 0: no limit)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="stop the run after this long: the case then running fails, later ones are skipped as "
                             "failed (default: 300 on cuda, none on cpu; 0: none)")
    parser.add_argument("--compile-backend", choices=["inductor", "aot_eager", "eager"], default=None,
                        help="the backend of the compiled cases, where the model names none (default: inductor, "
                             "torch's own, on cuda; aot_eager on cpu, where inductor takes minutes)")
    parser.add_argument("--json-out", metavar="FILE", type=Path, default=None, help="also write all results to FILE")
    parser.add_argument("--verbose", action="store_true", help="keep Lightning's messages and warnings")
    return parser.parse_args(argv), parser


def main(argv: Sequence[str] | None = None) -> int:
    args, parser = parse_arguments(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available here (torch.cuda.is_available() is False): run on "
                     "the GPU machine, or pass --device cpu (with --quick for tiny sizes)")
    for name in ("case_timeout", "time_budget"):
        if (getattr(args, name) or 0) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 (no limit) or a number of seconds, got {getattr(args, name)}")
    for name in ("steps", "warmup"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "steps" else 0):
            parser.error(f"--{name} must be at least {1 if name == 'steps' else 0}, got {value}")
    if args.reference_darts is not None and not (args.reference_darts / "cnn" / "architect.py").is_file():
        parser.error(f"--reference-darts {args.reference_darts}: no cnn/architect.py there; it must be a checkout of "
                     "quark0/darts (see the docstring)")
    settings = Settings(
        device=args.device, quick=args.quick,
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 3),
        steps=args.steps if args.steps is not None else (2 if args.quick else 10),
        reference_darts=args.reference_darts.resolve() if args.reference_darts else None, verbose=args.verbose,
        compile_backend=args.compile_backend or ("inductor" if args.device == "cuda" else "aot_eager"),
    )
    budget = args.time_budget if args.time_budget is not None else (300.0 if args.device == "cuda" else 0.0)
    cases = select(build_cases(settings), args.cases)
    if not cases:
        names = ", ".join(c.name for c in build_cases(settings))
        hint = " (the reference/ cases need --reference-darts DIR)" if settings.reference_darts is None else ""
        parser.error(f"--cases {args.cases!r} matches no case{hint}; the cases are: {names}")
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    # The objects of the imports are permanent: the collection between cases then only walks what the cases
    # made (a full collection of torch's and Lightning's objects takes a quarter of a second each time).
    gc.collect()
    gc.freeze()
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + budget if budget else math.inf
    try:
        for case in cases:
            remaining = deadline - time.monotonic()
            if remaining < 1:
                case = Case(case.name, skipped(f"the --time-budget of {budget:g} s was spent before this case; rerun it "
                                               f"with --cases '{case.name}'"), case.config)
            limit = min(args.case_timeout or math.inf, remaining)
            record = run_case(case, settings, results, 0 if limit == math.inf else max(limit, 1))
            results[case.name] = record
            print(json.dumps(record), flush=True)
    finally:
        gc.unfreeze()
    print(summary(list(results.values()), settings), flush=True)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(list(results.values()), indent=1) + "\n")
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
