"""SLURM clusters: a run's tomograms shared by the tasks of one job array, submitted through submitit.

``bilayer segment … --out RUN --slurm partition=gpu,gpus_per_task=1,time=4:00:00,tasks=8`` runs
:func:`submit_segment`: every tomogram is checked here first (all problems before anything is
queued), the run is opened, and one job array of ``tasks`` tasks is submitted. Each task is a
worker (:func:`~bilayer.batch.workers.run_worker`) on its node's device, drawing the run's free
tomograms through the claims, so the array's size is independent of the number of tomograms and a
task that is cancelled or pre-empted loses only its current tomogram: a resubmission (the same
command) does what is left. The job id is printed and recorded in ``RUN/slurm_jobs.json``;
``bilayer status RUN`` shows the tomograms and the job's tasks (:func:`job_lines`). submitit keeps
its files and one log per task in ``RUN/slurm/``.

Settings (``key=value`` separated by commas, :func:`parse_slurm`) are submitit's SLURM parameters
(sbatch's, with ``_`` for ``-``): partition, time (minutes or ``[D-]HH:MM:SS``), gpus_per_task,
gpus_per_node, cpus_per_task, mem, mem_per_gpu, mem_per_cpu, account, qos, constraint, exclude,
nodelist, comment, job_name, array_parallelism; and ``tasks``, the array's size. A task uses a GPU
when GPUs are asked for, else the CPU with its ``cpus_per_task`` threads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bilayer.batch.inputs import BatchInput
from bilayer.batch.lock import folder_lock
from bilayer.batch.runner import BatchReport, prepare_batch
from bilayer.batch.workers import WorkerSpec, run_worker
from bilayer.errors import ConfigError, OutputError
from bilayer.io import atomic_open, ensure_output_dir

__all__ = ["JOBS_FILE", "SLURM_FOLDER", "Submitted", "job_lines", "parse_slurm", "run_task", "slurm_time",
           "submit_distributed", "submit_segment"]

#: submitit's files and the tasks' logs, inside the run folder.
SLURM_FOLDER = "slurm"
#: The jobs submitted for the run (id, tasks, time), for ``bilayer status``.
JOBS_FILE = "slurm_jobs.json"
_TEXT_KEYS = ("partition", "mem", "mem_per_gpu", "mem_per_cpu", "account", "qos", "constraint", "exclude",
              "nodelist", "comment", "job_name")
_INT_KEYS = ("gpus_per_task", "gpus_per_node", "cpus_per_task", "array_parallelism", "tasks", "nodes")
_KEYS = ("time", *_TEXT_KEYS, *_INT_KEYS)
_TIME = re.compile(r"(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?")
_DEFAULT_TASKS = 4


@dataclass(frozen=True)
class Submitted:
    """A submitted job array: ``job_id`` (``None`` when nothing was left to do), its ``tasks``, the
    number of tomograms it has ``to_do``, the report of the checks (``done_before``...), where the
    logs are, and submitit's job objects (``result()`` waits for a task)."""

    job_id: str | None
    tasks: int
    to_do: int
    report: BatchReport
    log_folder: Path
    jobs: tuple[Any, ...] = ()


def slurm_time(text: str) -> int:
    """Minutes from SLURM's time forms: ``90`` (minutes), ``1:30:00``, ``2-00:00:00`` or ``1:30`` (h:mm).

    Raises:
        ConfigError: anything else.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _TIME.fullmatch(text)
    if match is None:
        raise ConfigError(f"--slurm time={text!r} is not a time; give minutes (90) or [D-]HH:MM[:SS] (4:00:00)")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return max(1, days * 1440 + hours * 60 + minutes + (1 if seconds else 0))


def parse_slurm(text: str) -> dict[str, Any]:
    """The settings of ``--slurm key=value,key=value`` (see the module docstring), typed.

    Raises:
        ConfigError: a part that is not key=value, an unknown key (the known ones listed), a bad number.
    """
    settings: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise ConfigError(f"--slurm: {part!r} is not key=value; e.g. --slurm partition=gpu,gpus_per_task=1,"
                              "time=4:00:00,tasks=8")
        if key not in _KEYS:
            raise ConfigError(f"--slurm: unknown setting {key!r}; known ones: {', '.join(sorted(_KEYS))}")
        value = value.strip()
        if key == "time":
            settings[key] = slurm_time(value)
        elif key in _INT_KEYS:
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"--slurm: {key}={value!r} must be a whole number of at least 1")
            settings[key] = int(value)
        else:
            settings[key] = value
    return settings


def submit_segment(sources: Sequence[str | os.PathLike | BatchInput], run_dir: str | os.PathLike, options: Any,
                   slurm: dict[str, Any], *, redo: bool = False, retry_failed: bool = False, overwrite: bool = False,
                   heartbeat: float = 30.0, stale_after: float = 300.0, executor: Any = None) -> Submitted:
    """Check, open the run, and submit one job array for the tomograms left to do (module docstring).

    Args:
        sources, run_dir, options, redo, retry_failed, overwrite, heartbeat, stale_after: as
            :func:`~bilayer.batch.runner.run_batch`.
        slurm: :func:`parse_slurm`'s settings (``tasks``: the array's size, default up to 4).
        executor: a configured submitit executor to use instead of SLURM's (tests: ``LocalExecutor``).

    Raises:
        PreflightError, ConfigError: as ``run_batch``, before anything is queued; ConfigError also
            when submitit is missing (the ``dist`` extra) or sbatch refuses the job.
    """
    from bilayer.infer.predictor import Predictor

    submitit = _submitit()
    settings = dict(slurm)
    tasks_wanted = settings.pop("tasks", None)
    checker = Predictor.from_checkpoint(options.model, options.inference, "cpu")
    prepared = prepare_batch(sources, run_dir, options, checker, redo=redo, retry_failed=retry_failed,
                             overwrite=overwrite, memory=None)  # the nodes' memory is not this machine's
    del checker
    folder = prepared.run.folder
    logs = folder / SLURM_FOLDER
    if not prepared.plans:
        return Submitted(None, 0, 0, prepared.report, logs)
    tasks = int(tasks_wanted or min(len(prepared.plans), _DEFAULT_TASKS))
    gpus = settings.get("gpus_per_task") or settings.get("gpus_per_node")
    device = "cuda" if gpus else "cpu"
    threads = settings.get("cpus_per_task") if device == "cpu" else None
    tomograms = tuple((str(plan.source), plan.volume.isotropic_voxel_size,
                       str(next(iter(plan.outputs.values())).parent)) for plan in prepared.plans)
    specs = [WorkerSpec(tomograms, str(folder), options.to_dict(), device, threads, retry_failed, heartbeat,
                        stale_after, True, f"task {i}") for i in range(tasks)]
    if executor is None:
        executor = submitit.SlurmExecutor(folder=logs)
        settings.setdefault("job_name", f"bilayer-{folder.name}")
        executor.update_parameters(**settings)
    try:
        jobs = executor.map_array(run_task, specs)
    except Exception as e:  # sbatch's refusal (e.g. an unknown partition), in its own words
        raise ConfigError(f"SLURM refused the job for {folder}: {' '.join(str(e).split())[-400:]}; check the "
                          "--slurm settings (partition, time, GPUs) with sinfo") from e
    job_id = str(jobs[0].job_id).split("_")[0]
    _remember_job(folder, {"job_id": job_id, "tasks": tasks, "tomograms": len(tomograms),
                           "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "logs": str(logs)})
    return Submitted(job_id, tasks, len(tomograms), prepared.report, logs, tuple(jobs))


def run_task(spec: WorkerSpec) -> dict[str, int]:
    """One task of the array (on a cluster node): a worker over the run's tomograms; returns its counts."""
    report = run_worker(spec, _print_outcome)
    counts = {"done": len(report.done), "failed": len(report.failed), "skipped": len(report.skipped),
              "held": len(report.held)}
    print(f"{spec.name}: {counts}", flush=True)
    return counts


def submit_distributed(function: Callable[..., Any], args: Sequence[Any], slurm: dict[str, Any],
                       folder: str | os.PathLike, *, executor: Any = None) -> Any:
    """Submit ``function(*args)`` as one SLURM job of ``nodes`` × ``tasks`` processes (``tasks``
    per node: default one per GPU of ``gpus_per_node``, else 1), each with torch.distributed's
    variables set (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), which
    is what :func:`bilayer.train.distributed.join_cluster` reads: the DDP training of ``torchrun``,
    on a cluster. The job is recorded in ``folder`` (:data:`JOBS_FILE`), its logs in ``folder/slurm``;
    returns submitit's job.

    Raises:
        ConfigError: submitit is missing, or sbatch refuses the job.
    """
    submitit = _submitit()
    folder = ensure_output_dir(folder)
    settings = dict(slurm)
    tasks = int(settings.pop("tasks", None) or settings.get("gpus_per_node") or 1)
    logs = folder / SLURM_FOLDER
    if executor is None:
        executor = submitit.SlurmExecutor(folder=logs)
        settings.setdefault("job_name", f"bilayer-train-{folder.name}")
        executor.update_parameters(ntasks_per_node=tasks, **settings)
    try:
        job = executor.submit(_distributed_task, function, tuple(args))
    except Exception as e:  # sbatch's refusal (e.g. an unknown partition), in its own words
        raise ConfigError(f"SLURM refused the job for {folder}: {' '.join(str(e).split())[-400:]}; check the "
                          "--slurm settings (partition, time, GPUs) with sinfo") from e
    job_id = str(job.job_id)
    _remember_job(folder, {"job_id": job_id, "tasks": tasks * int(settings.get("nodes", 1)),
                           "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "logs": str(logs)})
    return job


def _distributed_task(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """One process of a :func:`submit_distributed` job: export torch.distributed's variables, then run."""
    import submitit

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return function(*args)


def _print_outcome(outcome: Any) -> None:
    line = outcome.summary if outcome.status == "done" else f"{outcome.tomogram}: {outcome.status}" + (
        f": {outcome.error}" if outcome.error is not None else "")
    print(line, flush=True)


def job_lines(run_dir: str | os.PathLike) -> list[str]:
    """One line per SLURM job of the run: its tasks by state from ``squeue`` (a job no longer queued
    has finished), for ``bilayer status``."""
    jobs = _read_jobs(Path(run_dir))
    if not jobs:
        return []
    squeue = shutil.which("squeue")
    lines = []
    for job in jobs:
        head = f"SLURM job {job['job_id']} ({job['tasks']} task(s), submitted {job['submitted']}, logs {job['logs']})"
        if squeue is None:
            lines.append(f"{head}: squeue not found here, so its state is unknown")
            continue
        found = subprocess.run([squeue, "-h", "-j", str(job["job_id"]), "-r", "-o", "%T"], capture_output=True,
                               text=True, timeout=30, check=False)
        if found.returncode != 0 and "Invalid job id" not in found.stderr:
            lines.append(f"{head}: squeue failed ({' '.join(found.stderr.split())})")
            continue
        states: dict[str, int] = {}
        for state in found.stdout.split():
            states[state.lower()] = states.get(state.lower(), 0) + 1
        lines.append(f"{head}: " + (", ".join(f"{n} {s}" for s, n in sorted(states.items())) if states
                                    else "no longer queued"))
    return lines


def _read_jobs(folder: Path) -> list[dict[str, Any]]:
    path = folder / JOBS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path} ({e}); delete it to forget the run's SLURM jobs") from e
    return list(data.get("jobs", [])) if isinstance(data, dict) else []


def _remember_job(folder: Path, job: dict[str, Any]) -> None:
    try:
        with folder_lock(folder):  # two submissions at once must not drop each other's job
            jobs = [*_read_jobs(folder), job]
            with atomic_open(folder / JOBS_FILE, overwrite=True) as f:
                f.write(json.dumps({"jobs": jobs}, indent=2).encode())
    except OSError as e:
        raise OutputError(f"cannot write {folder / JOBS_FILE}: {e}; job {job['job_id']} was submitted") from e


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as e:
        raise ConfigError("--slurm needs submitit: pip install 'bilayer[dist]' (or pip install submitit)") from e
    return submitit
