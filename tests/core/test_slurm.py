"""bilayer.batch.slurm: --slurm settings typed with one-line errors; a job array's tasks share a run
through the claims (run here by submitit's local executor: real processes, no cluster); the run's
jobs listed by bilayer status. The real SLURM cluster test is tests/slurm/."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bilayer.batch import slurm as slurm_module
from bilayer.batch.records import is_done, tomogram_key
from bilayer.batch.runner import open_existing_run
from bilayer.batch.slurm import JOBS_FILE, job_lines, parse_slurm, slurm_time, submit_segment
from bilayer.errors import ConfigError
from bilayer.infer.config import SegmentOptions
from bilayer.io import write_volume

submitit = pytest.importorskip("submitit", reason="submitit is the dist extra: pip install 'bilayer[dist]'")


@pytest.mark.parametrize(("text", "minutes"), [("90", 90), ("1:30", 90), ("1:30:00", 90), ("2-00:00:00", 2880),
                                               ("0:00:30", 1), ("10:05:01", 606)])
def test_slurm_times_are_minutes(text, minutes):
    assert slurm_time(text) == minutes


def test_settings_are_typed_and_bad_ones_refused_in_one_line():
    assert parse_slurm("partition=gpu, gpus-per-task=1,time=4:00:00,tasks=8,mem=32G") == {
        "partition": "gpu", "gpus_per_task": 1, "time": 240, "tasks": 8, "mem": "32G"}
    with pytest.raises(ConfigError, match="^--slurm: unknown setting 'gpu'; known ones: account, "):
        parse_slurm("gpu=1")
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_slurm("partition")
    with pytest.raises(ConfigError, match="tasks='0' must be a whole number of at least 1"):
        parse_slurm("tasks=0")
    with pytest.raises(ConfigError, match="time='soon' is not a time"):
        parse_slurm("time=soon")


def _tomograms(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    return [write_volume(folder / f"t{i}.mrc", np.random.default_rng(i).normal(size=(64, 64, 64)).astype(np.float32),
                         voxel_size=10.0) for i in range(count)]


@pytest.mark.timeout(300)
def test_an_array_of_two_tasks_does_every_tomogram_once_and_a_resubmission_nothing(tmp_path, membrain_tiny_ckpt):
    tomograms = _tomograms(tmp_path / "in", 5)
    run_dir = tmp_path / "run"
    options = SegmentOptions.from_dict({"model": str(membrain_tiny_ckpt), "window": 64, "tta": False,
                                        "preview": False})
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=10)
    submitted = submit_segment(tomograms, run_dir, options, {"tasks": 2}, executor=executor)
    assert (submitted.tasks, submitted.to_do) == (2, 5) and submitted.job_id
    counts = [job.result() for job in submitted.jobs]
    assert sum(c["done"] for c in counts) == 5  # each tomogram by exactly one task
    run = open_existing_run(run_dir)
    assert all(is_done(run, tomogram_key(t)) for t in tomograms)
    assert json.loads((run_dir / JOBS_FILE).read_text())["jobs"][0]["job_id"] == submitted.job_id
    again = submit_segment(tomograms, run_dir, options, {"tasks": 2}, executor=executor)
    assert again.job_id is None and sorted(again.report.done_before) == tomograms


def test_status_lines_say_when_slurm_cannot_be_asked(tmp_path, monkeypatch):
    assert job_lines(tmp_path) == []
    (tmp_path / JOBS_FILE).write_text(json.dumps({"jobs": [{"job_id": "42", "tasks": 3, "submitted": "today",
                                                            "logs": "run/slurm"}]}))
    monkeypatch.setattr(slurm_module.shutil, "which", lambda name: None)
    assert job_lines(tmp_path) == [("SLURM job 42 (3 task(s), submitted today, logs run/slurm): squeue not found "
                                    "here, so its state is unknown")]


@pytest.mark.timeout(300)
def test_a_distributed_job_gives_each_process_its_rank_and_they_join_one_group(tmp_path):
    from bilayer.train.distributed import join_cluster

    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=5, tasks_per_node=2)
    job = slurm_module.submit_distributed(join_cluster, ("cpu",), {}, tmp_path / "train", executor=executor)
    clusters = job.results()
    assert sorted((c.rank, c.world_size) for c in clusters) == [(0, 2), (1, 2)]  # gloo joined: both ranks returned
    assert json.loads((tmp_path / "train" / JOBS_FILE).read_text())["jobs"][0]["job_id"] == str(job.job_id)
