"""The test cluster itself (tests/slurm_cluster.py): real sbatch jobs, job arrays, scancel, submitit on it,
a clean stop; and submitit's local executor, which needs no cluster."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import submitit

from tests.slurm_cluster import SlurmCluster, start_cluster


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:g} s")
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_wrap_job_writes_its_file_and_completes(idle_slurm_cluster: SlurmCluster, tmp_path: Path):
    cluster = idle_slurm_cluster
    job_id = cluster.sbatch(f"--chdir={tmp_path}", f"--output={tmp_path}/%j.log",
                            "--wrap", "echo $SLURM_JOB_ID $SLURM_JOB_PARTITION > done.txt")
    cluster.wait_idle(60)
    assert (tmp_path / "done.txt").read_text() == f"{job_id} cpu\n"
    assert cluster.states(job_id) == {job_id: "COMPLETED"}


@pytest.mark.timeout(120)
def test_array_runs_each_index_once(idle_slurm_cluster: SlurmCluster, tmp_path: Path):
    cluster = idle_slurm_cluster
    job_id = cluster.sbatch("--array=0-2", f"--chdir={tmp_path}", f"--output={tmp_path}/%A_%a.log",
                            "--wrap", "echo $SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID >> index_$SLURM_ARRAY_TASK_ID.txt")
    cluster.wait_idle(60)
    written = {path.name: path.read_text() for path in tmp_path.glob("index_*.txt")}
    assert written == {f"index_{i}.txt": f"{job_id} {i}\n" for i in range(3)}
    assert cluster.states(job_id) == {f"{job_id}_{i}": "COMPLETED" for i in range(3)}


@pytest.mark.timeout(120)
def test_two_one_cpu_tasks_run_at_once(idle_slurm_cluster: SlurmCluster, tmp_path: Path):
    """CR_CPU: the node's CPUs are handed out one by one, so two one-CPU tasks meet (each waits for the other)."""
    cluster = idle_slurm_cluster
    if int(cluster.run("sinfo", "--noheader", "--format=%c").stdout.split()[0]) < 2:
        pytest.skip("the node has one CPU")
    script = ("touch here_$SLURM_ARRAY_TASK_ID; other=here_$((1 - SLURM_ARRAY_TASK_ID)); "
              "for i in $(seq 200); do [ -e $other ] && break; sleep 0.1; done; "
              "[ -e $other ] && echo met > result_$SLURM_ARRAY_TASK_ID || echo alone > result_$SLURM_ARRAY_TASK_ID")
    cluster.sbatch("--array=0-1", "--ntasks=1", "--cpus-per-task=1", f"--chdir={tmp_path}",
                   f"--output={tmp_path}/%A_%a.log", "--wrap", script)
    cluster.wait_idle(60)
    assert [(tmp_path / f"result_{i}").read_text() for i in range(2)] == ["met\n", "met\n"]


@pytest.mark.timeout(120)
def test_scancel_stops_a_running_task(idle_slurm_cluster: SlurmCluster, tmp_path: Path):
    cluster = idle_slurm_cluster
    marks = tmp_path / "marks.txt"
    job_id = cluster.sbatch("--array=0-1", f"--chdir={tmp_path}", f"--output={tmp_path}/%A_%a.log", "--wrap",
                            f"echo started $SLURM_ARRAY_TASK_ID >> {marks}; sleep 300; "
                            f"echo ended $SLURM_ARRAY_TASK_ID >> {marks}")
    _wait_for(lambda: marks.exists() and len(marks.read_text().splitlines()) == 2, 30, "both tasks started")
    states = cluster.states(job_id)
    task_ids = {task: cluster.run("squeue", "--noheader", f"--job={task}", "--format=%A").stdout.strip()
                for task in states}
    assert states == {f"{job_id}_0": "RUNNING", f"{job_id}_1": "RUNNING"}
    assert cluster.job_pids(task_ids[f"{job_id}_1"]), "the running task's processes are not found"

    cluster.scancel(f"{job_id}_1")
    _wait_for(lambda: cluster.states(job_id)[f"{job_id}_1"] == "CANCELLED", 30, "task 1 cancelled")
    _wait_for(lambda: not cluster.job_pids(task_ids[f"{job_id}_1"]), 30, "task 1's processes gone")
    assert cluster.states(job_id)[f"{job_id}_0"] == "RUNNING"
    assert sorted(marks.read_text().splitlines()) == ["started 0", "started 1"]


@pytest.mark.timeout(180)
def test_submitit_runs_functions_on_the_cluster(idle_slurm_cluster: SlurmCluster, tmp_path: Path):
    def where(x: int) -> tuple:
        import os

        env = os.environ
        return (x * x, env.get("SLURM_JOB_ID"), env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID"),
                env.get("SLURM_JOB_PARTITION"))

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition=idle_slurm_cluster.partition, timeout_min=5, cpus_per_task=1)
    single = executor.submit(where, 7)
    array = executor.map_array(where, [2, 3])
    _wait_for(lambda: all(job.done() for job in [single, *array]), 120, "submitit jobs done")

    assert single.result() == (49, single.job_id, None, None, "cpu")
    array_id = array[0].job_id.split("_")[0]
    assert [job.job_id for job in array] == [f"{array_id}_0", f"{array_id}_1"]
    assert [job.result()[0] for job in array] == [4, 9]
    assert [job.result()[2:] for job in array] == [(array_id, "0", "cpu"), (array_id, "1", "cpu")]


@pytest.mark.timeout(120)
def test_stop_cancels_jobs_and_ends_every_process(tmp_path: Path):
    """A second, short-lived cluster: stop() with a job running leaves no daemon, job process or run folder."""
    from tests.slurm_cluster import ClusterUnavailable

    try:
        cluster = start_cluster(tmp_path / "cluster")
    except ClusterUnavailable as e:
        pytest.skip(str(e))
    try:
        job_id = cluster.sbatch(f"--chdir={tmp_path}", f"--output={tmp_path}/%j.log", "--wrap", "sleep 300")
        _wait_for(lambda: bool(cluster.job_pids(job_id)), 30, "the job's processes running")
        assert cluster.running_daemons() == ["munged", "slurmctld", "slurmd"]
    finally:
        cluster.stop()
    assert cluster.running_daemons() == []
    assert cluster.job_pids(job_id) == []
    assert not cluster.run_dir.exists()
    assert (cluster.log_dir / "slurmctld.log").exists()


@pytest.mark.timeout(120)
def test_submitit_local_executor_runs_functions(tmp_path: Path):
    def square(x: int) -> tuple[int, int]:
        import os

        return x * x, os.getpid()

    executor = submitit.LocalExecutor(folder=tmp_path)
    executor.update_parameters(timeout_min=2)
    jobs = [executor.submit(square, 6), *executor.map_array(square, [2, 3])]
    results = [job.result() for job in jobs]
    assert [value for value, _ in results] == [36, 4, 9]
    assert os.getpid() not in {pid for _, pid in results}
    assert [job.state for job in jobs] == ["FINISHED"] * 3
