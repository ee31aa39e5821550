"""Membranes worked on side by side: one process per CPU core, as many as memory allows.

Meshing a membrane and measuring it are independent of the other membranes, and most of the work
is NumPy, SciPy and C++ code that holds the interpreter lock, so :func:`map_membranes` runs them in
worker processes (``spawn``: fresh interpreters, no threads or GPU state inherited; ``fork`` could
deadlock in a process that runs threads, a notebook with torch loaded for one). Each task carries
only its own crop of the volume, so a worker's memory is that of its membrane. The largest tasks
start first, so the two big sheets of a tomogram do not end up one after the other at the end.
"""

from __future__ import annotations

import multiprocessing
import pickle
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from bilayer import checks
from bilayer.errors import BilayerWarning

__all__ = ["map_membranes", "plan_workers"]

T = TypeVar("T")
_MEMORY_SHARE = 0.7  # of the available memory, for the tasks running at once
_MIN_PARALLEL_BYTES = 200 * 2**20  # less work than this (tasks' peak memory, summed) stays in this process:
# starting a worker costs about a second, meshing this much about five


def plan_workers(workers: int | None, task_bytes: Sequence[int]) -> int:
    """How many processes to run ``task_bytes`` (each task's peak memory) with: ``workers``
    (``None``: every core this process may use, or one for little work), no more than there are
    tasks, and only as many as fit in memory with the largest tasks running together."""
    from bilayer.resources import available_memory, cpu_count

    if workers is None:
        wanted = cpu_count() if sum(task_bytes) >= _MIN_PARALLEL_BYTES else 1
    else:
        wanted = int(checks.number("workers", workers, 1, integer=True))
    count = max(1, min(wanted, len(task_bytes)))
    memory = available_memory()
    if memory is not None:
        largest = sorted(task_bytes, reverse=True)
        while count > 1 and sum(largest[:count]) > _MEMORY_SHARE * memory:
            count -= 1
    return count


def map_membranes(function: Callable[..., T], tasks: Sequence[tuple[Any, ...]], *, workers: int | None = None,
                  task_bytes: Sequence[int] | None = None, shared: dict[str, Any] | None = None) -> list[T]:
    """``[function(*task, **shared) for task in tasks]``, computed by :func:`plan_workers` processes
    (in this process when that is one). ``function`` must be importable (a module-level function),
    the tasks and ``shared`` picklable; ``shared`` (what every task needs, such as every membrane's
    surface) is sent to each process once (through a temporary file), not with each task.
    ``task_bytes`` (each task's peak memory, default equal) orders the work largest first and bounds
    how many run at once. An exception in a task is raised here, the others cancelled; if the
    processes cannot start or die (a script without a ``__main__`` guard, the memory exhausted), the
    work is done here instead, with a :class:`~bilayer.errors.BilayerWarning`."""
    sizes = list(task_bytes) if task_bytes is not None else [1] * len(tasks)
    shared = shared or {}

    def here() -> list[T]:  # every task in this process
        return [function(*task, **shared) for task in tasks]

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # a worker starting up is running a script again that has no ``if __name__ == "__main__":`` guard
        # (spawn imports the main module): end it quietly; the caller below does the work in its own process
        raise SystemExit(1)
    count = plan_workers(workers, sizes)
    if count <= 1:
        return here()
    order = sorted(range(len(tasks)), key=lambda k: -sizes[k])
    results: list[Any] = [None] * len(tasks)
    # what every worker needs goes through a file, not the spawn pipe: a worker that ends while starting
    # (an unguarded script) leaves a parent writing a big payload into that pipe for ever
    folder = None
    try:
        folder = tempfile.TemporaryDirectory(prefix="bilayer-shared-")
        shared_path = Path(folder.name) / "shared.pickle"
        with open(shared_path, "wb") as f:
            pickle.dump(shared, f, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as e:
        if folder is not None:
            folder.cleanup()
        warnings.warn(BilayerWarning(
            f"the worker processes' shared data could not be written to {tempfile.gettempdir()} ({e}); working on "
            "the membranes one after the other in this process instead (TMPDIR names a folder with more room)"),
            stacklevel=2)
        return here()
    with folder:
        try:
            with ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_keep, initargs=(str(shared_path),)) as pool:
                futures = {k: pool.submit(_call, function, tasks[k]) for k in order}
                try:
                    for k in order:
                        results[k] = futures[k].result()
                except BaseException:
                    for future in futures.values():
                        future.cancel()
                    raise
        except BrokenProcessPool:
            warnings.warn(BilayerWarning(
                "worker processes could not start or died (a script without `if __name__ == \"__main__\":` around "
                "its work, or out of memory); working on the membranes one after the other in this process instead"),
                stacklevel=2)
            return here()
    return results


_SHARED: dict[str, Any] = {}  # in a worker process: what map_membranes sent it once


def _keep(shared_path: str) -> None:
    with open(shared_path, "rb") as f:
        shared = pickle.load(f)
    _SHARED.clear()
    _SHARED.update(shared)


def _call(function: Callable[..., T], task: tuple[Any, ...]) -> T:
    return function(*task, **_SHARED)
