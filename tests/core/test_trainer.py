"""bilayer.train.trainer: the loop learns, resumes after a kill, keeps time limits, runs under torchrun."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bilayer.data.patches import SyntheticPatches
from bilayer.data.synthetic import SynthConfig
from bilayer.errors import ConfigError
from bilayer.infer import InferenceConfig, Predictor, segment_volume
from bilayer.io import Volume
from bilayer.model import AxisOrder, load_checkpoint
from bilayer.train import TrainConfig, train
from tiny_training import FAST, TINY


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_a_tiny_network_overfits_one_patch(tmp_path):
    config = TrainConfig(**FAST, epochs=12, steps_per_epoch=12, augment=None, learning_rate=0.02, validate_every=12)
    patch = SyntheticPatches(SynthConfig(voxel_size=10.0), 1, 32, seed=4, fixed=True)
    assert float((patch[0]["label"] == 1).float().mean()) > 0.02  # there is membrane to learn
    result = train(config, patch, tmp_path / "run", val_data=patch, device="cpu")
    final = result.history[-1]
    assert final["val_dice"] > 0.9, final
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    for name in ("config.json", "metrics.csv", "curves.png", "state.pt", "last.bilayer.pt", "best.bilayer.pt"):
        assert (tmp_path / "run" / name).is_file()
    assert len(_rows(tmp_path / "run")) == 12
    model = load_checkpoint(result.best)
    assert model.info.network == TINY and model.info.voxel_size == 10.0 and model.info.training["epoch"] == 12


def test_a_finished_run_is_not_trained_again_and_other_settings_are_refused(tmp_path):
    config = TrainConfig(**FAST, epochs=1, steps_per_epoch=1, augment=None)
    data = SyntheticPatches(SynthConfig(voxel_size=10.0), 2, 32, seed=1)
    first = train(config, data, tmp_path, device="cpu")
    stamp = first.last.stat().st_mtime_ns
    again = train(config, data, tmp_path, device="cpu")
    assert again.history == first.history and first.last.stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="other settings.*learning_rate"):
        train(config.but(learning_rate=0.5), data, tmp_path, device="cpu")


def test_a_time_limit_ends_the_run_mid_epoch_with_the_rate_run_down_and_a_validated_checkpoint(tmp_path, monkeypatch):
    import types

    import bilayer.train.trainer as trainer_module

    clock = types.SimpleNamespace(now=0.0)

    def tick() -> float:  # the trainer's clock: 50 ms pass at each reading, whatever the machine's load
        clock.now += 0.05
        return clock.now

    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=tick))
    limit = 0.05  # minutes: 3 s of the trainer's clock, a few dozen readings
    config = TrainConfig(**FAST, epochs=3, steps_per_epoch=10**6, augment=None, learning_rate=0.01,
                         time_limit=limit)
    data = SyntheticPatches(SynthConfig(voxel_size=10.0), 4, 32, seed=3)
    result = train(config, data, tmp_path, val_data=data, device="cpu")
    (row,) = result.history  # the first epoch was cut short, and the run ended there
    assert 2 <= row["step"] < 10**6 and "val_loss" in row
    assert float(row["learning_rate"]) < 0.5 * config.learning_rate  # the schedule ran down with the time
    assert clock.now >= 60 * limit
    assert load_checkpoint(result.best).info.training["epoch"] == 1
    stamp = result.last.stat().st_mtime_ns
    again = train(config, data, tmp_path, val_data=data, device="cpu")  # its time is spent: nothing more to do
    assert again.history == result.history and result.last.stat().st_mtime_ns == stamp


def test_a_time_limit_longer_than_the_epochs_changes_nothing_but_the_clock(tmp_path):
    data = SyntheticPatches(SynthConfig(voxel_size=10.0), 4, 32, seed=3)
    plain = train(TrainConfig(**FAST, epochs=2, steps_per_epoch=2, augment=None), data, tmp_path / "plain",
                  device="cpu")
    timed = train(TrainConfig(**FAST, epochs=2, steps_per_epoch=2, augment=None, time_limit=600), data,
                  tmp_path / "timed", device="cpu")
    assert [r["step"] for r in timed.history] == [r["step"] for r in plain.history] == [2, 4]
    assert [r["learning_rate"] for r in plain.history] == pytest.approx([0.01, 0.01 * 0.5 ** 0.9])
    first, second = (r["learning_rate"] for r in timed.history)
    assert first == pytest.approx(0.01, rel=1e-3) and first < 0.01  # a few seconds of 600 minutes
    assert second == pytest.approx(0.01 * 0.5 ** 0.9)  # the epochs' schedule is further on: it rules


def _cli_train(out: Path, settings: Path, epochs: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "bilayer", "train", "--synthetic", "4", "--synthetic-val", "0", "--out", str(out),
            "--config", str(settings), "--epochs", str(epochs), "--device", "cpu"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _settings(tmp_path: Path, **extra) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({**FAST, "network": TINY.to_dict(), "steps_per_epoch": 3, **extra}))
    return path


def test_kill_and_resume_repeats_the_uninterrupted_run(tmp_path):
    settings = _settings(tmp_path)
    whole = _cli_train(tmp_path / "whole", settings, 3)
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    killed = _cli_train(tmp_path / "killed", settings, 3)
    deadline = time.monotonic() + 300
    while not (tmp_path / "killed" / "metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    done = len(_rows(tmp_path / "killed"))
    assert done < 3, "the run finished before it could be killed; make its epochs longer"
    resumed = _cli_train(tmp_path / "killed", settings, 3)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    expected, got = _rows(tmp_path / "whole"), _rows(tmp_path / "killed")
    assert [r["epoch"] for r in got] == ["1", "2", "3"]
    for a, b in zip(expected, got):
        assert a["train_loss"] == b["train_loss"] and a["learning_rate"] == b["learning_rate"]
    assert not list((tmp_path / "killed").glob(".*part"))  # no torn files left by the kill


@pytest.mark.timeout(600)
def test_two_process_gloo_ddp_trains_and_saves_one_checkpoint(tmp_path):
    settings = _settings(tmp_path, steps_per_epoch=2, num_workers=0)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "bilayer",
            "train", "--synthetic", "8", "--synthetic-val", "2", "--out", str(tmp_path / "ddp"), "--config",
            str(settings), "--epochs", "2", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(tmp_path / "ddp")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert [r["step"] for r in rows] == ["2", "4"]  # each process took 2 steps per epoch, counted once
    assert float(rows[-1]["val_dice"]) >= 0.0
    checkpoints = sorted(p.name for p in (tmp_path / "ddp").glob("*.bilayer.pt"))
    assert checkpoints == ["best.bilayer.pt", "last.bilayer.pt"]
    assert load_checkpoint(tmp_path / "ddp" / "last.bilayer.pt").info.network == TINY
    assert done.stdout.count("epoch 2/2") == 1  # only rank 0 reports


def test_finetuning_a_membrain_checkpoint_keeps_its_axes_and_feeds_the_predictor(tmp_path, membrain_tiny_ckpt):
    initial = load_checkpoint(membrain_tiny_ckpt)
    before = {k: v.clone() for k, v in initial.network.state_dict().items()}
    config = TrainConfig(patch_size=64, batch_size=1, epochs=1, steps_per_epoch=2, num_workers=0, augment=None,
                         learning_rate=1e-3, precision="float32", compile=False)  # 64: its six levels need 2³ voxels at the bottom
    data = SyntheticPatches(SynthConfig(voxel_size=10.0), 2, 64, seed=2)
    result = train(config, data, tmp_path, init=initial, device="cpu")
    tuned = load_checkpoint(result.last)
    assert tuned.info.axis_order is AxisOrder.XYZ and tuned.info.network == initial.info.network
    assert "finetune" in tuned.info.source
    changed = [k for k, v in tuned.network.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # the weights moved
    volume = Volume(np.random.default_rng(0).normal(size=(64, 64, 64)).astype(np.float32), 10.0)
    predictor = Predictor.from_checkpoint(result.last, InferenceConfig(window=64, tta=False))
    assert segment_volume(volume, predictor).mask.data.shape == (64, 64, 64)
