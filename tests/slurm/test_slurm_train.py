"""bilayer train --slurm on a real single-node SLURM cluster: one job of two data-parallel processes
(gloo on the CPU) trains, and only rank 0 writes the run."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("submitit", reason="submitit is the dist extra: pip install 'bilayer[dist]'")

TINY = {"filters": [8, 16, 32, 64], "strides": [1, 2, 2, 2]}


@pytest.mark.timeout(600)
def test_a_two_process_training_job_trains_once(idle_slurm_cluster, tmp_path):
    cluster = idle_slurm_cluster
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"network": TINY, "patch_size": 32, "batch_size": 2, "num_workers": 0,
                                    "precision": "float32", "compile": False, "steps_per_epoch": 2}))
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "bilayer", "train", "--synthetic", "8", "--synthetic-val", "2", "--out", str(out),
            "--config", str(settings), "--epochs", "2", "--device", "cpu",
            "--slurm", f"partition={cluster.partition},tasks=2,cpus_per_task=1,time=10"]
    submitted = subprocess.run(argv, capture_output=True, text=True, env=cluster.env, timeout=120, check=False)
    assert submitted.returncode == 0, submitted.stderr
    job_id = re.search(r"submitted SLURM job (\d+)", submitted.stdout).group(1)
    cluster.wait_idle(timeout=400)
    assert cluster.states(job_id) == {job_id: "COMPLETED"}, sorted((out / "slurm").glob("*"))
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert [r["step"] for r in rows] == ["2", "4"]  # two processes, each 2 steps an epoch, counted once
    assert sorted(p.name for p in out.glob("*.bilayer.pt")) == ["best.bilayer.pt", "last.bilayer.pt"]
    logs = [p.read_text() for p in sorted((out / "slurm").glob(f"{job_id}_*_log.out"))]
    assert len(logs) == 2 and sum(log.count("epoch 2/2") for log in logs) == 1  # only rank 0 reports
