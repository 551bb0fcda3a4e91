"""Training the network a genotype describes from scratch (DARTS, Liu et al., sec. 3.2 and A.2).

:class:`GenotypeClassifier` is an image classifier with standard (automatic) optimisation. Its defaults
are the paper's CIFAR-10 recipe: SGD with learning rate 0.025, momentum 0.9, weight decay 3·10⁻⁴,
cosine-annealed to 0 over the run; auxiliary head weight 0.4; drop-path probability rising linearly
from 0 to 0.2 over the epochs. (Batch 96, cutout 16 and gradient clip 5 live in the data module and the
trainer; see ``configs/retrain_cifar10.yaml``.)
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from .distributed import broadcast_
from .eval_network import EvalNetwork
from .layout import ChannelsLastMixin
from .genotype import Genotype, GenotypeError

__all__ = ["GenotypeClassifier", "export_network"]


class GenotypeClassifier(ChannelsLastMixin, pl.LightningModule):
    """Train and test the network of a genotype.

    Args:
        genotype: a published name (``DARTS_V2``), a ``genotype.json`` path or a DARTS repr string.
        in_channels, num_classes, image_size: from the data (the CLI links them to the data module).
        channels, layers: initial channels C and number of cells (CIFAR: 36 and 20).
        variant: ``cifar`` (3×3 stem) or ``imagenet`` (the DARTS mobile-setting stems).
        auxiliary_weight: weight of the auxiliary head's loss (0 removes the head).
        drop_path_prob: final drop-path probability, reached linearly over ``max_epochs``.
        lr, lr_min, momentum, weight_decay: SGD and its cosine schedule.
        channels_last: channels-last memory layout; ``None``: on a CPU only.
        drop_path_seed: seed of the drop-path masks. The masks of a step are drawn from torch's generator
            seeded with ``(drop_path_seed, global step, rank)``, not from its running global state, so that a
            run resumed from a checkpoint drops the paths an uninterrupted run would (``None``: drawn once
            from torch's seed on rank 0 and kept in the checkpoint).
    """

    def __init__(
        self,
        genotype: str = "DARTS_V2",
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 36,
        layers: int = 20,
        variant: str = "cifar",
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.2,
        lr: float = 0.025,
        lr_min: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        channels_last: bool | None = None,
        drop_path_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._drop_path_seed: int | None = drop_path_seed
        self.genotype = Genotype.resolve(genotype, allow_import_paths=True)
        self.network = EvalNetwork(
            self.genotype, channels=channels, layers=layers, num_classes=num_classes, in_channels=in_channels,
            variant=variant, auxiliary=auxiliary_weight > 0, image_size=image_size,
        )
        top_k = min(5, num_classes)
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
        self.test_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_top5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.network(self._layout(x))

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 600
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=hp.lr_min)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_fit_start(self) -> None:
        if self._drop_path_seed is None:
            seed = torch.tensor([torch.initial_seed() % (2**31)], dtype=torch.float64, device=self.device)
            broadcast_([seed])
            self._drop_path_seed = int(seed.item())

    def on_train_epoch_start(self) -> None:
        epochs = max(1, self.trainer.max_epochs or 1)
        self.network.set_drop_path_prob(self.hparams.drop_path_prob * self.current_epoch / epochs)
        self.log("train/drop_path_prob", self.network.drop_path_prob, on_step=False, on_epoch=True)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        with self._drop_path_randomness():
            logits, logits_aux = self.network.forward_with_auxiliary(self._layout(x))
        loss = F.cross_entropy(logits, y)
        if logits_aux is not None:
            loss = loss + self.hparams.auxiliary_weight * F.cross_entropy(logits_aux, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss is {loss.item()} at global step {self.global_step} (epoch {self.current_epoch}); "
                "lower the learning rate (model.lr) or check the data"
            )
        self.train_top1(logits.detach(), y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        self.log("train/acc", self.train_top1, on_step=False, on_epoch=True)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)
        return loss

    @contextmanager
    def _drop_path_randomness(self) -> Iterator[None]:
        """Draw this step's drop-path masks from torch's generator seeded with (seed, global step, rank); the
        global random state outside the step is left as it was."""
        if self.network.drop_path_prob <= 0.0:
            yield
            return
        seed = ((int(self._drop_path_seed or 0) * 1_000_003 + self.global_step) * 7919 + self.global_rank) % (2**63 - 1)
        on_gpu = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if on_gpu else [], device_type="cuda"):
            torch.manual_seed(seed)
            yield

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, top1: MulticlassAccuracy, top5: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        top1(logits, y)
        top5(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        self.log(f"{stage}/acc", top1, prog_bar=True)
        self.log(f"{stage}/acc_top5", top5)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_top1, self.val_top5)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_top1, self.test_top5)

    # ------------------------------------------------------------------ checkpoints and export

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["genotype"] = self.genotype.to_dict()
        checkpoint["drop_path_seed"] = self._drop_path_seed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("genotype")
        if saved is not None and Genotype.from_dict(saved, allow_import_paths=True) != self.genotype:
            raise GenotypeError(
                f"the checkpoint trained the genotype {saved.get('repr')}, but this model is configured with "
                f"{self.genotype!r}; configure the checkpoint's genotype (model.genotype) to resume it"
            )
        if checkpoint.get("drop_path_seed") is not None:
            self._drop_path_seed = int(checkpoint["drop_path_seed"])

    def on_fit_end(self) -> None:
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks
        if self.trainer.is_global_zero and log_dir:
            export_network(self, Path(log_dir) / "export")


def export_network(model: GenotypeClassifier, directory: str | Path) -> dict[str, Path]:
    """Write ``model.pt`` (state dict, genotype and build arguments, loadable with ``weights_only=True``),
    ``genotype.json``, and ``model.torchscript.pt`` where scripting succeeds. Returns the written paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    network = model.network
    hp = dict(model.hparams)
    written = {}
    written["state_dict"] = directory / "model.pt"
    torch.save(
        {
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()},
            "genotype": model.genotype.to_dict(),
            "build": {k: hp[k] for k in ("channels", "layers", "num_classes", "in_channels", "variant", "image_size")}
            | {"auxiliary": network.auxiliary_head is not None},
        },
        written["state_dict"],
    )
    written["genotype"] = model.genotype.save(directory / "genotype.json")
    was_training = network.training
    try:
        network.eval()
        example = torch.zeros(1, hp["in_channels"], hp["image_size"], hp["image_size"], device=next(network.parameters()).device)
        traced = torch.jit.trace(network, example, check_trace=False)
        path = directory / "model.torchscript.pt"
        traced.save(str(path))
        written["torchscript"] = path
    except Exception as error:  # noqa: BLE001 - TorchScript is best effort; the state dict is the export
        (directory / "torchscript_failed.txt").write_text(f"{type(error).__name__}: {error}\n")
    finally:
        network.train(was_training)
    return written
