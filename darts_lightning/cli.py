"""The ``darts-lightning`` command line, built on LightningCLI.

``darts-lightning fit --config configs/darts_digits.yaml`` runs a search; every option of the model, data
and trainer can be overridden (``--model.init_args.arch_lr 3e-3``, ``--data.init_args.batch_size 32``,
``--trainer.max_epochs 5``) and ``--print_config`` shows the complete configuration.
``darts-lightning export-genotype CKPT`` writes the genotype of a search checkpoint.
``darts-lightning protocol`` runs the DARTS evaluation protocol (several searches, selection, final
evaluation over several seeds; see :mod:`darts_lightning.protocol`).
"""

from __future__ import annotations

import sys
import warnings
from typing import Sequence

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

__all__ = ["DartsLightningCLI", "main", "run_cli"]


class DartsLightningCLI(LightningCLI):
    """LightningCLI whose model takes its input shape and class count from the data module."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults(
            {
                "model": {"class_path": "darts_lightning.DARTSSearch"},
                "data": {"class_path": "darts_lightning.SearchDataModule"},
            }
        )
        for attribute in ("in_channels", "num_classes", "image_size"):
            parser.link_arguments(f"data.{attribute}", f"model.init_args.{attribute}", apply_on="instantiate")


def main(args: Sequence[str] | None = None) -> None:
    """The console script: ``darts-lightning {fit,validate,test,predict,export-genotype,protocol} ...``."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "export-genotype":
        from .export import export_main

        raise SystemExit(export_main(argv[1:]))
    if argv and argv[0] == "protocol":
        from .protocol import protocol_main

        raise SystemExit(protocol_main(argv[1:]))
    run_cli(args)


def run_cli(args: Sequence[str] | None = None) -> DartsLightningCLI:
    """Run a LightningCLI subcommand and return the CLI (its ``trainer``, ``model`` and ``datamodule``).

    ``args=None`` reads ``sys.argv``; an explicit list replaces it (LightningCLI's warning that
    ``sys.argv`` holds other arguments, e.g. those of ``darts-lightning protocol``, is silenced).
    """
    with warnings.catch_warnings():
        if args is not None:
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return DartsLightningCLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=None if args is None else list(args),
        )


if __name__ == "__main__":
    main()
