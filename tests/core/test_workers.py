"""bilayer.batch.workers: worker processes share one run folder's tomograms through the claims; a
worker killed with kill -9 loses nothing (a sibling takes its tomogram); devices are chosen with
one-line errors. Real ``bilayer segment --workers`` processes on the CPU."""

from __future__ import annotations

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
from bilayer.batch.records import is_done, read_record, tomogram_key
from bilayer.batch.runner import open_existing_run
from bilayer.batch.workers import run_workers, worker_devices
from bilayer.errors import ConfigError
from bilayer.infer.config import SegmentOptions
from bilayer.io import read_volume, write_volume

SHAPE = (64, 64, 64)


def _tomograms(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_volume(folder / f"t{i}.mrc", np.random.default_rng(i).normal(size=SHAPE).astype(np.float32),
                         voxel_size=10.0) for i in range(count)]


def _options(ckpt: Path) -> SegmentOptions:
    return SegmentOptions.from_dict({"model": str(ckpt), "window": 64, "tta": False, "preview": False,
                                     "device": "cpu"})


def test_workers_on_the_cpu_are_as_many_as_asked_and_devices_are_checked(monkeypatch):
    assert worker_devices(None, 3, "cpu") == ["cpu", "cpu", "cpu"]
    assert worker_devices("cpu, cpu", None) == ["cpu", "cpu"]
    assert worker_devices(None, None, "cpu") == ["cpu"]
    with pytest.raises(ConfigError, match="not both"):
        worker_devices("cpu", 2)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no usable CUDA GPU"):
            worker_devices("all", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_devices("all", None) == ["cuda:0", "cuda:1"]
    assert worker_devices("cuda:1,cuda:1", None) == ["cuda:1", "cuda:1"]
    with pytest.raises(ConfigError, match=r"^--devices: cuda:2 is not there \(this machine has 2 GPU\(s\)"):
        worker_devices("cuda:0,cuda:2", None)
    with pytest.raises(ConfigError, match="names no device"):
        worker_devices(" , ", None)


def test_two_workers_do_every_tomogram_once_and_a_rerun_does_nothing(tmp_path, membrain_tiny_ckpt):
    tomograms = _tomograms(tmp_path / "in", 6)
    run_dir = tmp_path / "run"
    outcomes = []
    started = []
    report = run_workers(tomograms, run_dir, _options(membrain_tiny_ckpt), ["cpu", "cpu"],
                         on_start=lambda r, n: started.append(n), on_outcome=outcomes.append)
    assert started == [6]
    assert sorted(report.done) == tomograms and report.exit_status == 0
    assert not (report.failed or report.held or report.skipped or report.warnings)
    assert sorted(o.tomogram for o in outcomes) == tomograms  # each once, though both workers saw every one
    assert {o.worker for o in outcomes} == {"worker 1 (cpu)", "worker 2 (cpu)"}
    run = open_existing_run(run_dir)
    assert all(is_done(run, tomogram_key(t)) for t in tomograms)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row["status"] for row in summary["tomograms"]] == ["done"] * 6
    for t in tomograms:  # whole masks, with the tomogram's header
        mask = read_volume(run_dir / f"{t.stem}_seg.mrc")
        assert mask.shape == SHAPE and mask.voxel_size == (10.0, 10.0, 10.0)
    mtimes = {p: p.stat().st_mtime_ns for p in run_dir.glob("*_seg.mrc")}
    again = run_workers(tomograms, run_dir, _options(membrain_tiny_ckpt), ["cpu", "cpu"])
    assert sorted(again.done_before) == tomograms and again.done == []
    assert {p: p.stat().st_mtime_ns for p in run_dir.glob("*_seg.mrc")} == mtimes


def _claims(run_dir: Path) -> list[dict]:
    found = []
    for path in (run_dir / "claims").glob("*.claim") if (run_dir / "claims").is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("pid"):
            found.append(data)
    return found


@pytest.mark.timeout(300)
def test_a_worker_killed_with_kill_9_loses_nothing(tmp_path, membrain_tiny_ckpt):
    tomograms = _tomograms(tmp_path / "in", 5)
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "bilayer", "segment", *map(str, tomograms), "--out", str(run_dir), "--workers",
            "2", "--model", str(membrain_tiny_ckpt), "--window", "64", "--no-tta", "--no-preview", "--device", "cpu"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline and process.poll() is None:
        held = [c for c in _claims(run_dir) if c["pid"] != process.pid]
        victim = held[0]["pid"] if held else None
        time.sleep(0.05)
    assert victim is not None, "no worker claimed a tomogram"
    os.kill(victim, signal.SIGKILL)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err  # a replacement worker took the killed worker's tomogram over
    assert f"ended with exit code -{int(signal.SIGKILL)}" in err and "bilayer: warning:" in err
    run = open_existing_run(run_dir)
    assert all(is_done(run, tomogram_key(t)) for t in tomograms)
    assert not list((run_dir / "claims").glob("*.claim"))
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporary left visible
    hosts = {read_record(run, tomogram_key(t)).host for t in tomograms}
    assert len(hosts) == 1
    rerun = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0 and "5 done before, 0 to do" in rerun.stdout


def test_workers_die_with_their_parent(tmp_path, membrain_tiny_ckpt):
    tomograms = _tomograms(tmp_path / "in", 4)
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "bilayer", "segment", *map(str, tomograms), "--out", str(run_dir), "--workers",
            "2", "--model", str(membrain_tiny_ckpt), "--window", "64", "--no-tta", "--no-preview", "--device", "cpu"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while not workers and time.monotonic() < deadline:
        workers = [c["pid"] for c in _claims(run_dir) if c["pid"] != process.pid]
        time.sleep(0.05)
    assert workers, "no worker claimed a tomogram"
    process.kill()
    process.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
