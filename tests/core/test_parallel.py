"""bilayer.surfaces.parallel: membranes worked on in spawned processes give what one process gives,
in the tasks' order; failures come back; memory and the amount of work bound the processes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from bilayer.errors import BilayerWarning, ConfigError
from bilayer.surfaces import parallel
from bilayer.surfaces.extract import MeshOptions, membrane_meshes


def _pid_and_square(value: int) -> tuple[int, int]:
    return os.getpid(), value * value


def _fails(value: int) -> int:
    if value == 3:
        raise ValueError(f"task {value} failed")
    return value


def test_tasks_come_back_in_order_from_other_processes():
    found = parallel.map_membranes(_pid_and_square, [(k,) for k in range(6)], workers=2,
                                   task_bytes=[1, 50, 2, 40, 3, 30])  # largest first, results in task order
    assert [square for _, square in found] == [k * k for k in range(6)]
    assert os.getpid() not in {pid for pid, _ in found}


def test_one_worker_or_little_work_stays_in_this_process(monkeypatch):
    assert {pid for pid, _ in parallel.map_membranes(_pid_and_square, [(1,), (2,)], workers=1)} == {os.getpid()}
    monkeypatch.setattr("bilayer.resources.cpu_count", lambda: 8)
    assert parallel.plan_workers(None, [1000, 1000]) == 1  # too little work to start a process for
    assert parallel.plan_workers(None, [300 * 2**20] * 3) == 3  # no more than the tasks
    assert parallel.plan_workers(2, [1, 1, 1]) == 2


def test_memory_bounds_how_many_run_at_once(monkeypatch):
    monkeypatch.setattr("bilayer.resources.cpu_count", lambda: 8)
    monkeypatch.setattr("bilayer.resources.available_memory", lambda: 10 * 2**30)
    big = [3 * 2**30] * 6  # 3 GiB each: two fit in 70 % of 10 GiB, three do not
    assert parallel.plan_workers(None, big) == 2
    assert parallel.plan_workers(8, big) == 2
    assert parallel.plan_workers(8, [20 * 2**30]) == 1  # one too large still runs, alone
    with pytest.raises(ConfigError, match="workers"):
        parallel.plan_workers(0, big)


def test_a_failed_task_is_raised_here():
    with pytest.raises(ValueError, match="task 3 failed"):
        parallel.map_membranes(_fails, [(k,) for k in range(5)], workers=2)


def test_meshes_made_by_two_processes_are_those_made_by_one():
    labels = np.zeros((48, 48, 48), dtype=np.uint8)
    z, y, x = np.indices(labels.shape)
    labels[np.abs(np.sqrt((z - 24) ** 2 + (y - 24) ** 2 + (x - 24) ** 2) - 14) <= 1.5] = 1  # a vesicle
    labels[8:11, 4:44, 4:44] = 2  # a sheet
    one = membrane_meshes(labels, 10.0, options=MeshOptions(), workers=1)
    two = membrane_meshes(labels, 10.0, options=MeshOptions(), workers=2)
    assert [m.label for m in two] == [m.label for m in one] == [1, 2]
    for a, b in zip(one, two):
        assert a.closed == b.closed and np.array_equal(a.faces, b.faces) and np.array_equal(a.vertices, b.vertices)


def _run_unguarded(folder, code: str):
    """Run ``code`` as a script (no ``__main__`` guard) in a fresh interpreter; a hang fails the test."""
    import subprocess
    import sys

    script = folder / "unguarded.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=folder)
    assert done.returncode == 0, done.stderr
    return done


def test_a_script_without_a_main_guard_still_gets_its_meshes(tmp_path):
    """spawn imports the main script again in each worker: without ``if __name__ == "__main__":`` the
    workers end quietly and the script's own process does the work, with a warning saying why."""
    done = _run_unguarded(tmp_path, "import numpy as np\n"
                                    "from bilayer.surfaces.extract import membrane_meshes\n"
                                    "labels = np.zeros((40, 40, 40), dtype=np.uint8)\n"
                                    "labels[8:11, 4:36, 4:36] = 1\n"
                                    "labels[26:29, 4:36, 4:36] = 2\n"
                                    "meshes = membrane_meshes(labels, 10.0, workers=2)\n"
                                    "print('MESHES', [m.label for m in meshes])\n")
    assert done.stdout.count("MESHES [1, 2]") == 1  # once: the workers ended before printing
    assert "if __name__ == \"__main__\":" in done.stderr and "one after the other" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unguarded_script_with_much_shared_data_does_not_hang(tmp_path):
    """A worker ending while it starts must not leave the parent writing ``shared`` (here 16 MB,
    far above a pipe's buffer) into a pipe nobody reads: the shared data goes through a file."""
    done = _run_unguarded(tmp_path, "import numpy as np\n"
                                    "from bilayer.surfaces.parallel import map_membranes\n"
                                    "big = np.arange(2_000_000, dtype=np.float64)\n"
                                    "found = map_membranes(dict, [(), ()], workers=2, shared={'big': big})\n"
                                    "print('SUMS', [float(d['big'].sum()) for d in found])\n")
    total = float(np.arange(2_000_000, dtype=np.float64).sum())
    assert done.stdout.count(f"SUMS [{total}, {total}]") == 1
    assert "one after the other" in done.stderr


def test_shared_data_reaches_every_worker_and_its_file_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    big = np.arange(300_000, dtype=np.float64)
    found = parallel.map_membranes(dict, [(), (), ()], workers=2, shared={"big": big})
    assert all(np.array_equal(d["big"], big) for d in found)
    assert list(tmp_path.iterdir()) == []


def test_no_room_for_the_shared_data_leaves_the_work_to_this_process(monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(parallel.pickle, "dump", full)
    with pytest.warns(BilayerWarning, match="could not be written .*No space left.*TMPDIR"):
        found = parallel.map_membranes(_pid_and_square, [(k,) for k in range(4)], workers=2, shared={})
    assert found == [(os.getpid(), k * k) for k in range(4)]
