"""How the command line runs one LightningCLI subcommand: :class:`DartsLightningCLI` and :func:`run_cli`,
shared by the ``darts-lightning`` console script (:mod:`darts_lightning.entry.cli`) and the evaluation
protocol (:mod:`darts_lightning.entry.protocol`), which runs many of them."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from darts_lightning.utils.files import atomic_write_text
from darts_lightning.utils.resume import check_resume, read_checkpoint
from darts_lightning.utils.threads import TorchThreads
from darts_lightning.utils.training import trainer_callbacks

__all__ = ["DartsLightningCLI", "AtomicSaveConfigCallback", "run_cli", "PROGRAM"]

PROGRAM = "darts-lightning"


class DartsLightningCLI(LightningCLI):
    """LightningCLI whose model takes its input shape and class count from the data module, which resumes the
    configured run instead of the checkpoint's, and which sets torch's threads."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults(
            {
                "model": {"class_path": "darts_lightning.DARTSSearch"},
                "data": {"class_path": "darts_lightning.SearchDataModule"},
            }
        )
        for attribute in ("in_channels", "num_classes", "image_size"):
            parser.link_arguments(f"data.{attribute}", f"model.init_args.{attribute}", apply_on="instantiate")
        parser.add_argument(
            "--threads", type=int | None, default=None,
            help="torch's intra-op threads per process (default: torch's, one per core; under CPU DDP the cores "
            "divided by the processes per node). Set it when several runs share a machine.",
        )

    def _parse_ckpt_path(self) -> None:
        """Read the checkpoint only to fail early and clearly on a file that is not one; never merge its
        hyperparameters into the configuration (plain LightningCLI does, silently replacing the config)."""
        self._checkpoint = None
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
            self._checkpoint = read_checkpoint(ckpt_path)

    def before_instantiate_classes(self) -> None:
        threads = self._get(self.config, "threads")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be a positive number of threads per process, got {threads}")
            TorchThreads.apply(threads)

    def after_instantiate_classes(self) -> None:
        trainer_callbacks(self.trainer).append(TorchThreads(self._get(self.config, "threads")))
        if self._checkpoint is not None:
            check_resume(
                self.model, self._checkpoint, path=self.config[self.subcommand]["ckpt_path"], datamodule=self.datamodule
            )


class AtomicSaveConfigCallback(SaveConfigCallback):
    """Write the run's ``config.yaml`` atomically (as every result file), so that a full disk never leaves a
    truncated configuration beside the checkpoints it describes."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks
        if trainer.is_global_zero and log_dir is not None:
            atomic_write_text(Path(log_dir) / self.config_filename, self.parser.dump(self.config, skip_none=False))
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


def run_cli(args: Sequence[str] | None = None) -> DartsLightningCLI:
    """Run a LightningCLI subcommand and return the CLI (its ``trainer``, ``model`` and ``datamodule``).

    ``args=None`` reads ``sys.argv``; an explicit list replaces it (LightningCLI's warning that
    ``sys.argv`` holds other arguments, e.g. those of ``darts-lightning protocol``, is silenced).
    Errors are raised (``jsonargparse.ArgumentError`` for a command line that does not parse).
    """
    with warnings.catch_warnings():
        if args is not None:
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return DartsLightningCLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=AtomicSaveConfigCallback,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
            args=None if args is None else list(args),
        )
