"""Every shipped configuration of the differentiable search parses and builds its search: the parts it names,
with the data's input shape linked in, and its trainer callbacks. Nothing is trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from darts_lightning import DARTSSearch, HessianEigenvalue
from darts_lightning.entry.runner import DartsLightningCLI

REPO = Path(__file__).resolve().parents[2]
SEARCH_CONFIGS = sorted(
    p.name for p in (REPO / "configs").glob("*.yaml") if "class_path: darts_lightning.DARTSSearch" in p.read_text()
)


def test_the_search_configs_are_found():
    assert len(SEARCH_CONFIGS) >= 19 and {"darts_digits.yaml", "rdarts_es_cifar10.yaml"} <= set(SEARCH_CONFIGS)


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
@pytest.mark.parametrize("config", SEARCH_CONFIGS)
def test_every_search_config_builds_its_search(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' run folders are relative
    text = (REPO / "configs" / config).read_text()
    assert text.startswith("# "), "a shipped config opens with the comments that explain it"
    cli = DartsLightningCLI(
        pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False,
        save_config_callback=None, parser_kwargs={"exit_on_error": False},
        args=["--config", str(REPO / "configs" / config), "--trainer.logger", "false"],
    )
    model = cli.model
    assert isinstance(model, DARTSSearch)
    digits = "digits" in config
    assert (model.hparams["in_channels"], model.hparams["image_size"]) == ((1, 8) if digits else (3, 32))
    # The saved settings are the parts the config names (class paths as the parts record them).
    for part in ("space", "relaxation", "estimator", "weight_optimizer", "arch_optimizer"):
        assert model.hparams[part]["class_path"].startswith("darts_lightning.")
    assert model.hparams["space"]["class_path"].endswith("NB201Space" if "nb201" in config else "DartsSpace")
    if config.startswith("beta_darts"):  # the authors pair the regulariser with SDARTS-RS
        assert [type(r).__name__ for r in model.remedies] == ["BetaDecay", "RandomSmoothing"]
    eigenvalue = [c for c in cli.trainer.callbacks if isinstance(c, HessianEigenvalue)]
    assert len(eigenvalue) == (1 if config.startswith("rdarts_es") else 0)
    if eigenvalue:
        assert eigenvalue[0].rule is not None  # early stopping on
