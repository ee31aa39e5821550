"""The default model's recipes in the repository stay runnable: every training config is valid for
the network it trains, and the scripts that chain them parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bilayer.model import NetworkConfig
from bilayer.train import training_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("default_train*.yaml"))
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


def test_there_are_recipes_to_check():
    assert {p.name for p in CONFIGS} >= {"default_train.yaml", "default_train_gpu.yaml"}
    assert {p.name for p in SCRIPTS} >= {"train_default_model.sh", "gpu_finetune_default.sh"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_each_training_config_fits_the_network_it_trains(path):
    from_scratch = "network" in yaml.safe_load(path.read_text())
    config = training_config(path, finetune=not from_scratch)
    network = config.network if from_scratch else _default_network()
    assert config.patch_size % network.size_multiple == 0
    assert config.voxel_size == 10.0  # the default model's voxel size


def test_the_gpu_recipe_is_bounded_by_time_not_epochs():
    config = training_config(ROOT / "configs" / "default_train_gpu.yaml", finetune=True)
    assert config.epochs * config.steps_per_epoch >= 10**6  # epochs only cap it; --time-limit ends it
    script = (ROOT / "scripts" / "gpu_finetune_default.sh").read_text()
    assert "--time-limit" in script and "default_train_gpu.yaml" in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_each_script_parses(path):
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def _default_network() -> NetworkConfig:
    from bilayer.model import default_model_path, read_checkpoint

    return read_checkpoint(default_model_path())[0].network
