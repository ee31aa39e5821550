"""bilayer segment --slurm on a real single-node SLURM cluster: a 6-tomogram job array whose task is
cancelled mid-run (scancel) and resubmitted completes every tomogram exactly once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bilayer.batch.records import is_done, tomogram_key
from bilayer.batch.runner import open_existing_run
from bilayer.io import write_volume

pytest.importorskip("submitit", reason="submitit is the dist extra: pip install 'bilayer[dist]'")

SHAPE = (64, 128, 128)


def _records(run_dir: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["finished"] for p in (run_dir / "records").glob("*.json")}


def _live_claims(run_dir: Path) -> int:
    count = 0
    for path in (run_dir / "claims").glob("*.claim") if (run_dir / "claims").is_dir() else []:
        try:
            count += bool(json.loads(path.read_text()).get("pid"))
        except (OSError, ValueError):
            pass
    return count


@pytest.mark.timeout(600)
def test_a_cancelled_task_is_redone_once_by_a_resubmission(idle_slurm_cluster, tmp_path, membrain_tiny_ckpt):
    cluster = idle_slurm_cluster
    tomograms = [write_volume(tmp_path / f"ts_{i:02d}.mrc",
                              np.random.default_rng(i).normal(size=SHAPE).astype(np.float32), voxel_size=10.0)
                 for i in range(6)]
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "bilayer", "segment", str(tmp_path / "ts_*.mrc"), "--out", str(run_dir),
            "--model", str(membrain_tiny_ckpt), "--window", "64", "--tta", "--no-preview",
            "--slurm", f"partition={cluster.partition},cpus_per_task=1,time=10,tasks=2"]
    started = time.monotonic()
    first = subprocess.run(argv, capture_output=True, text=True, env=cluster.env, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    job = re.search(r"submitted SLURM job (\d+): 2 task\(s\) for 6 tomogram\(s\)", first.stdout)
    assert job, first.stdout
    job_id = job.group(1)
    status = subprocess.run([sys.executable, "-m", "bilayer", "status", str(run_dir)], capture_output=True,
                            text=True, env=cluster.env, timeout=60, check=False)
    assert f"SLURM job {job_id} (2 task(s)" in status.stdout

    deadline = time.monotonic() + 180
    while _live_claims(run_dir) < 2 and time.monotonic() < deadline:  # both tasks mid-tomogram
        time.sleep(0.05)
    assert _live_claims(run_dir) == 2, f"the tasks never both worked; logs in {run_dir / 'slurm'}"
    cluster.scancel(f"{job_id}_0")
    cluster.wait_idle(timeout=240)
    assert cluster.states(job_id)[f"{job_id}_0"] == "CANCELLED"
    after_first = _records(run_dir)
    left = [t for t in tomograms if tomogram_key(t) not in after_first]
    assert len(left) <= 1  # only the tomogram the cancelled task held (task 1 may have taken it over)
    assert not list((run_dir / "claims").glob("*.claim"))  # SIGTERM released the cancelled task's claim

    second = subprocess.run(argv, capture_output=True, text=True, env=cluster.env, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    assert f"{6 - len(left)} done before, {len(left)} to do" in second.stdout or (
        not left and "nothing to do" in second.stdout)
    cluster.wait_idle(timeout=240)
    wall = time.monotonic() - started
    final = _records(run_dir)
    run = open_existing_run(run_dir)
    assert all(is_done(run, tomogram_key(t)) for t in tomograms)
    redone = [key for key, finished in after_first.items() if final[key] != finished]
    assert redone == []  # nothing finished was done again
    logs = sorted(p.name for p in (run_dir / "slurm").glob(f"{job_id}_*_log.out"))
    assert logs == [f"{job_id}_0_0_log.out", f"{job_id}_1_0_log.out"]
    print(f"\nSLURM test: 6 tomograms {SHAPE}, 2 one-CPU tasks, task 0 cancelled mid-run: "
          f"{len(left)} tomogram(s) left for the resubmission, {len(redone)} finished one(s) redone, "
          f"wall {wall:.1f} s")
