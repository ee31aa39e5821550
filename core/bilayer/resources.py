"""What this process may use of the machine: CPU cores and memory (the one place that reads them).

Both respect what a container or a SLURM task allows, not only what the machine has: the cores of
the process's CPU affinity and the room left under a cgroup memory limit.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_memory", "cpu_count"]


def cpu_count() -> int:
    """CPU cores this process may use (its affinity: what a container or a SLURM task allows)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def available_memory(meminfo: Path = _MEMINFO, cgroup: Path = _CGROUP) -> int | None:
    """Bytes of memory this process can still take: the smaller of the machine's available memory
    and the room left under a cgroup (container, SLURM job) limit; ``None`` where unknown.

    ``meminfo`` and ``cgroup`` are where the kernel says so (other places only for tests)."""
    found = []
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text())
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None
