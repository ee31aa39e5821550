"""bilayer.resources: the cores and memory a process may use, as the kernel reports them."""

from __future__ import annotations

import os

import pytest

from bilayer.resources import available_memory, cpu_count

MEMINFO = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n"


def test_cpu_count_follows_the_process_affinity():
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        pytest.skip("one core: no narrower affinity to set")
    try:
        os.sched_setaffinity(0, {min(before)})
        assert cpu_count() == 1
    finally:
        os.sched_setaffinity(0, before)
    assert cpu_count() == len(before)


def test_available_memory_is_meminfo_without_a_cgroup_limit(tmp_path):
    (tmp_path / "meminfo").write_text(MEMINFO)
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory(tmp_path / "meminfo", cgroup) == 8000000 * 1024


def test_a_cgroup_limit_leaves_only_its_room(tmp_path):
    (tmp_path / "meminfo").write_text(MEMINFO)
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{4 * 2**30}\n")
    (cgroup / "memory.current").write_text(f"{3 * 2**30}\n")
    assert available_memory(tmp_path / "meminfo", cgroup) == 2**30


def test_unknown_memory_is_none(tmp_path):
    assert available_memory(tmp_path / "absent", tmp_path / "absent_cgroup") is None


def test_this_machine_reports_some_memory():
    found = available_memory()
    assert found is not None and found > 0
