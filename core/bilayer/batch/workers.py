"""One node, many devices: a run shared by worker processes, one per GPU or per share of the CPU cores.

``bilayer segment … --devices cuda:0,cuda:1`` (or ``all``) or ``--workers N`` runs
:func:`run_workers`: this process checks every tomogram once (:func:`~bilayer.batch.runner.prepare_batch`,
all problems before any work), opens the run, then starts one worker process per device. Each
worker loads the model once onto its device and runs :func:`~bilayer.batch.runner.run_batch` on the
same list in the same run folder, so the per-tomogram claims share the tomograms out: no scheduler,
and a worker that finishes early takes the next free tomogram. Each worker reads its next tomogram
into the page cache while it segments the current one (:mod:`bilayer.batch.prefetch`).

Workers are started with ``spawn`` (a fresh interpreter: no CUDA state or threads inherited from
this process). CPU workers split the cores between them (``torch.set_num_threads``). Outcomes come
back over a queue, are printed as they arrive and summed into one :class:`BatchReport`. Ctrl-C or
SIGTERM stops every worker cleanly (claims released, no partial outputs); a worker that dies (killed,
out of memory) ends the report with a reason, and a rerun of the same command takes its tomogram again.

:func:`run_worker` is also what each task of a SLURM job array runs (:mod:`bilayer.batch.slurm`).
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queues
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bilayer.batch.inputs import BatchInput
from bilayer.batch.records import write_summary
from bilayer.batch.runner import BatchReport, Outcome, prepare_batch, run_batch
from bilayer.errors import BilayerError, ConfigError, OutputError
from bilayer.resources import cpu_count

__all__ = ["WorkerSpec", "cpu_count", "run_worker", "run_workers", "worker_devices"]

_JOIN_SECONDS = 30.0  # how long stopped workers get to release their claims before they are killed


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker needs, in plain values (it crosses to a fresh interpreter or a cluster node).

    Attributes:
        tomograms: (path, voxel size in Å or None, output folder) of each tomogram to do, in order.
        run_dir: the run folder.
        options: the segmentation options, flat (:meth:`SegmentOptions.to_dict`).
        device: the torch device this worker uses (``cpu``, ``cuda:1``).
        threads: CPU threads for torch; ``None``: torch's default.
        retry_failed, heartbeat, stale_after, prefetch: as :func:`~bilayer.batch.runner.run_batch`.
        name: how the worker is named in messages (``worker 2 (cuda:1)``).
    """

    tomograms: tuple[tuple[str, float | None, str], ...]
    run_dir: str
    options: dict[str, Any]
    device: str
    threads: int | None = None
    retry_failed: bool = False
    heartbeat: float = 30.0
    stale_after: float = 300.0
    prefetch: bool = True
    name: str = "worker"


def worker_devices(devices: str | None, workers: int | None, device: str = "auto") -> list[str]:
    """The device of each worker: ``devices`` (``cuda:0,cuda:1``; ``all``: every visible GPU; a
    device may repeat to run two workers on it), or ``workers`` copies of ``device`` (``auto``: the
    first GPU if there is one, else the CPU).

    Raises:
        ConfigError: both or a bad value given, ``all`` without GPUs, a GPU that is not there.
    """
    import torch

    from bilayer.device import resolve_device

    if devices is not None and workers is not None:
        raise ConfigError("give --devices (one worker per device) or --workers (workers on --device), not both")
    if devices is None:
        count = 1 if workers is None else workers
        if count < 1:
            raise ConfigError(f"--workers {count}: give at least 1")
        return [str(resolve_device(device))] * count
    text = devices.strip()
    if text == "all":
        if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
            raise ConfigError("--devices all: this machine has no usable CUDA GPU; use --workers N on the CPU")
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"--devices {devices!r} names no device; give e.g. cuda:0,cuda:1 or all")
    found = []
    for name in names:
        resolved = resolve_device(name)
        if resolved.type == "cuda":
            index = 0 if resolved.index is None else resolved.index
            if index >= torch.cuda.device_count():
                raise ConfigError(f"--devices: {name} is not there (this machine has {torch.cuda.device_count()} "
                                  f"GPU(s): cuda:0 to cuda:{torch.cuda.device_count() - 1})")
            found.append(f"cuda:{index}")
        else:
            found.append(str(resolved))
    return found


def run_workers(sources: Sequence[str | os.PathLike | BatchInput], run_dir: str | os.PathLike, options: Any,
                devices: Sequence[str], *, folders: Sequence[str | os.PathLike] | None = None, redo: bool = False,
                retry_failed: bool = False, overwrite: bool = False,
                on_start: Callable[[BatchReport, int], None] | None = None,
                on_outcome: Callable[[Outcome], None] | None = None, heartbeat: float = 30.0,
                stale_after: float = 300.0, prefetch: bool = True) -> BatchReport:
    """:func:`~bilayer.batch.runner.run_batch` with one worker process per entry of ``devices`` (see
    the module docstring). Arguments as ``run_batch``; ``options`` is a
    :class:`~bilayer.infer.config.SegmentOptions` (its ``device`` is replaced by each worker's).

    The checks load the model on the CPU in this process. Memory: each CPU worker's tomogram must fit
    in its share of the available memory; with GPU workers the host-memory check is left out (the
    estimate is of a CPU run).

    Raises:
        PreflightError, ConfigError: as ``run_batch``, before any worker starts.
    """
    from bilayer.infer.predictor import Predictor
    from bilayer.infer.preflight import available_memory

    if not devices:
        raise ConfigError("no devices given for the workers")
    checker = Predictor.from_checkpoint(options.model, options.inference, "cpu")
    on_cpu = all(d == "cpu" for d in devices)
    memory = available_memory() if on_cpu else None
    prepared = prepare_batch(sources, run_dir, options, checker, folders=folders, redo=redo,
                             retry_failed=retry_failed, overwrite=overwrite,
                             memory=None if memory is None else memory // len(devices))
    del checker
    report = prepared.report
    if on_start is not None:
        on_start(report, len(prepared.plans))
    if not prepared.plans:
        return report
    tomograms = tuple((str(plan.source), plan.volume.isotropic_voxel_size, str(next(iter(plan.outputs.values())).parent))
                      for plan in prepared.plans)
    cpu_workers = sum(d == "cpu" for d in devices)
    threads = max(1, cpu_count() // cpu_workers) if cpu_workers else None
    specs = [WorkerSpec(tomograms, str(prepared.run.folder), options.to_dict(), device,
                        threads if device == "cpu" else None, retry_failed, heartbeat, stale_after, prefetch,
                        f"worker {i + 1} ({device})") for i, device in enumerate(devices)]
    _Pool(specs, report, on_outcome).run()
    write_summary(prepared.run)
    return report


def run_worker(spec: WorkerSpec, on_outcome: Callable[[Outcome], None] | None = None) -> BatchReport:
    """One worker: load the model on ``spec.device`` and take the run's free tomograms in turn.

    SIGTERM (``scancel``, a pre-empted job, the parent stopping) ends it as Ctrl-C does: the current
    tomogram's claim is released and its temporary files removed.
    """
    from bilayer.infer.config import SegmentOptions
    from bilayer.infer.predictor import Predictor

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    if spec.threads is not None:
        import torch

        torch.set_num_threads(spec.threads)
    options = replace(SegmentOptions.from_dict(spec.options), device=spec.device)
    predictor = Predictor.from_checkpoint(options.model, options.inference, options.device)
    items = [BatchInput(Path(path), Path(path).stem, size, spec.name) for path, size, _ in spec.tomograms]
    return run_batch(items, spec.run_dir, options, predictor, folders=[folder for *_, folder in spec.tomograms],
                     retry_failed=spec.retry_failed, overwrite=True, memory=None, on_outcome=on_outcome,
                     heartbeat=spec.heartbeat, stale_after=spec.stale_after, prefetch=spec.prefetch)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _worker_main(spec: WorkerSpec, index: int, messages: Any) -> None:
    """A worker process: :func:`run_worker`, each outcome and the end sent to the parent."""
    def send(outcome: Outcome) -> None:
        error = "" if outcome.error is None else str(outcome.error)
        messages.put(("outcome", index, str(outcome.tomogram), outcome.status, outcome.summary, error))

    _die_with_parent()
    try:
        run_worker(spec, send)
    except KeyboardInterrupt:
        messages.put(("stopped", index, "stopped"))
        raise SystemExit(130) from None
    except BilayerError as e:
        messages.put(("error", index, str(e)))
        raise SystemExit(2) from None
    except Exception as e:  # noqa: BLE001  (reported by the parent, with the worker's name)
        messages.put(("error", index, f"{type(e).__name__}: {e}"))
        raise SystemExit(1) from None
    messages.put(("end", index))


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (the parent killed with kill -9), so
    no orphaned worker goes on; elsewhere nothing is done."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


class _Pool:
    """The worker processes of one run and the report their messages fill."""

    def __init__(self, specs: Sequence[WorkerSpec], report: BatchReport,
                 on_outcome: Callable[[Outcome], None] | None) -> None:
        self.specs = list(specs)
        self.report = report
        self.on_outcome = on_outcome
        self.context = multiprocessing.get_context("spawn")
        self.messages = self.context.Queue()
        self.processes = [self.context.Process(target=_worker_main, args=(spec, i, self.messages),
                                               name=f"bilayer {spec.name}", daemon=False)
                          for i, spec in enumerate(self.specs)]
        self.ended: set[int] = set()
        self.lost: list[str] = []
        self.first = list(specs)
        self.replaced = 0
        self.held: dict[str, Path] = {}
        self.skipped: dict[str, Path] = {}
        self.finished: set[str] = set()

    def run(self) -> None:
        try:
            for process in self.processes:
                process.start()
            while len(self.ended) < len(self.processes):
                try:
                    self._handle(self.messages.get(timeout=1.0))
                except queues.Empty:
                    self._reap()
        except BaseException:
            self._stop()
            raise
        for process in self.processes:
            process.join()
        planned = {path for path, _, _ in self.specs[0].tomograms}
        if self.lost and planned - self.finished:
            self.report.stopped = BilayerError(self.lost[0])
        else:
            self.report.warnings.extend(self.lost)
        self.report.held.extend(p for key, p in self.held.items() if key not in self.finished)
        self.report.skipped.extend(p for key, p in self.skipped.items()
                                   if key not in self.finished and key not in self.held)

    def _handle(self, message: tuple) -> None:
        kind, index = message[0], message[1]
        if kind == "outcome":
            _, _, tomogram, status, summary, error = message
            path = Path(tomogram)
            if status in ("done", "failed"):
                self.finished.add(tomogram)
                (self.report.done if status == "done" else self.report.failed).append(path)
            elif status == "held":
                self.held.setdefault(tomogram, path)
            elif status == "skipped":
                self.skipped.setdefault(tomogram, path)
            elif status == "stopped":
                self.report.stopped = OutputError(error)
            if status in ("done", "failed", "stopped") and self.on_outcome is not None:
                self.on_outcome(Outcome(path, status, error=BilayerError(error) if error else None, summary=summary,
                                        worker=self.specs[index].name))
        elif kind == "end":
            self.ended.add(index)
        else:  # "error", "stopped": the worker ended early
            self.ended.add(index)
            if kind == "error":
                self.lost.append(f"{self.specs[index].name}: {message[2]}")

    def _reap(self) -> None:
        """Notice workers that died without saying so (killed, out of memory)."""
        for index, process in enumerate(self.processes):
            if index in self.ended or process.is_alive():
                continue
            try:  # a message sent just before it exited may still be on its way
                while True:
                    self._handle(self.messages.get(timeout=0.5))
            except queues.Empty:
                pass
            if index not in self.ended:
                self.ended.add(index)
                self.lost.append(f"{self.specs[index].name} ended with exit code {process.exitcode} before its work "
                                 "was done (killed, or out of memory); rerun the same command to finish what is left: "
                                 "finished tomograms are kept")
                self._replace(index)

    def _replace(self, index: int) -> None:
        """Start a new worker on a dead one's device, so its tomogram (its claim now stale: the pid is
        gone) is taken again; at most as many replacements as workers, so a tomogram that kills every
        worker (a crash in a library) cannot loop."""
        if self.replaced >= len(self.first) or not ({path for path, _, _ in self.specs[0].tomograms} - self.finished):
            return
        self.replaced += 1
        spec = replace(self.specs[index], name=f"{self.first[index % len(self.first)].name}, restarted")
        self.specs.append(spec)
        process = self.context.Process(target=_worker_main, args=(spec, len(self.processes), self.messages),
                                       name=f"bilayer {spec.name}", daemon=False)
        self.processes.append(process)
        process.start()

    def _stop(self) -> None:
        """Stop every worker as Ctrl-C would (claims released), killing those that do not end in time."""
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(_JOIN_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
