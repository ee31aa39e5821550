"""Shared helpers of the benchmark scripts: MemBrain-seg's virtualenv and measured child processes.

MemBrain-seg 0.0.10 lives in its own virtualenv beside the project (``bench/.venvs/``), so its
pins (numpy, monai, Lightning) never touch Bilayer's environment. It is built on first use with
``pip install -c <torch pin> membrain-seg==0.0.10 click``: the pin keeps pip on the local CPU
build of torch (an unpinned resolve would pull gigabytes of CUDA wheels), and ``click`` is
imported by membrain-seg without being declared.

Every child process runs with its stdout and stderr in a log file, and is measured: wall time
with ``time.perf_counter`` and peak resident memory from ``os.wait4``, which returns the
rusage of exactly that child (``ru_maxrss``, KiB on Linux: the largest resident set of the
child or of any descendant it waited for).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "BENCH_DIR",
    "CACHE_DIR",
    "MEMBRAIN_VERSION",
    "BenchError",
    "Measured",
    "ensure_membrain_venv",
    "membrain_python",
    "run_measured",
]

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
MEMBRAIN_VERSION = "0.0.10"
TORCH_PIN = "torch==2.13.0"  # the local CPU wheel; see the module docstring
VENV_DIR = BENCH_DIR / ".venvs" / f"membrain-{MEMBRAIN_VERSION}"
_CHECK = (
    "import importlib.metadata as m, click, torch, pytorch_lightning, membrain_seg.segmentation.segment; "
    "print(m.version('membrain-seg'), torch.__version__, pytorch_lightning.__version__)"
)


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which, where its log is, and what to do."""


@dataclass(frozen=True)
class Measured:
    """One finished child process.

    Attributes:
        argv: the command.
        returncode: its exit status (negative: killed by that signal).
        wall_s: wall time from start to exit, seconds.
        peak_rss_mb: peak resident set size of the child, MiB (``ru_maxrss`` from ``wait4``).
        user_s: CPU time in user mode, seconds.
        system_s: CPU time in kernel mode, seconds.
        log: the file holding its stdout and stderr.
        load_before: 1-, 5- and 15-minute load averages when it started (other work on the CPU).
        load_after: the same when it ended.
    """

    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float
    user_s: float
    system_s: float
    log: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    def to_dict(self) -> dict:
        """Plain JSON-able values."""
        return asdict(self)

    def check(self, what: str) -> Measured:
        """``self`` if the child succeeded.

        Raises:
            BenchError: it failed; the message names the log and its last lines.
        """
        if self.returncode != 0:
            raise BenchError(f"{what} failed with exit status {self.returncode}; see {self.log}:\n{tail(self.log)}")
        return self


def tail(path: str | os.PathLike, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file (for error messages)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def run_measured(
    argv: Sequence[str], log: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None, echo: bool = False
) -> Measured:
    """Run ``argv`` with stdout and stderr appended to ``log``; time it and take its peak RSS.

    Args:
        argv: the command.
        log: log file (created, or appended to with a header line).
        cwd: working directory of the child.
        env: extra environment variables for the child.
        echo: also copy the log to this process's stderr when the child ends.

    Returns:
        The measurements; a non-zero exit status is returned, not raised (see :meth:`Measured.check`).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    child_env = dict(os.environ, **(env or {}))
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(map(str, argv))}\n".encode())
        out.flush()
        load_before = os.getloadavg()
        started = time.perf_counter()
        proc = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=child_env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # wait4 reaped it; tell Popen
    if echo:
        sys.stderr.write(Path(log).read_text(errors="replace"))
    return Measured(
        argv=[str(a) for a in argv],
        returncode=proc.returncode,
        wall_s=wall,
        peak_rss_mb=usage.ru_maxrss / 1024.0,
        user_s=usage.ru_utime,
        system_s=usage.ru_stime,
        log=str(log),
        load_before=load_before,
        load_after=os.getloadavg(),
    )


def membrain_python() -> Path:
    """The interpreter of MemBrain-seg's virtualenv (it may not exist yet)."""
    return VENV_DIR / "bin" / "python"


def ensure_membrain_venv(log_dir: Path) -> dict[str, str]:
    """Build MemBrain-seg's virtualenv unless it already works; return its versions.

    Args:
        log_dir: where ``membrain_venv.log`` (the venv and pip output) is written.

    Returns:
        ``{"membrain_seg": ..., "torch": ..., "pytorch_lightning": ..., "python": path}``.

    Raises:
        BenchError: the venv could not be created, pip failed, or membrain-seg does not import;
            the message names the log and how to start over.
    """
    log = log_dir / "membrain_venv.log"
    python = membrain_python()
    if not (python.exists() and _import_check(python, log).returncode == 0):
        _build(python, log)
        _import_check(python, log).check(f"importing membrain-seg in {VENV_DIR} (remove that folder to rebuild it)")
    membrain, torch, lightning = _versions(python).split()
    return {"membrain_seg": membrain, "torch": torch, "pytorch_lightning": lightning, "python": str(python)}


def _build(python: Path, log: Path) -> None:
    VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
    print(f"building MemBrain-seg {MEMBRAIN_VERSION}'s virtualenv in {VENV_DIR} (log: {log}) ...", file=sys.stderr)
    run_measured([sys.executable, "-m", "venv", "--clear", VENV_DIR], log).check(
        f"creating the virtualenv {VENV_DIR} (is the venv module installed? e.g. apt-get install python3-venv)"
    )
    constraints = VENV_DIR / "constraints.txt"
    constraints.write_text(TORCH_PIN + "\n")
    install = [python, "-m", "pip", "install", "-c", constraints, f"membrain-seg=={MEMBRAIN_VERSION}", "click"]
    run_measured(install, log).check(
        f"pip install of membrain-seg=={MEMBRAIN_VERSION} with {TORCH_PIN} (check that PyPI is reachable and "
        f"that a CPU wheel of {TORCH_PIN} is available; remove {VENV_DIR} to start over)"
    )


def _import_check(python: Path, log: Path) -> Measured:
    return run_measured([python, "-c", _CHECK], log)


def _versions(python: Path) -> str:
    """The import check's output line: membrain-seg, torch and Lightning versions."""
    done = subprocess.run([str(python), "-c", _CHECK], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(
            f"membrain-seg in {VENV_DIR} does not import; remove that folder to rebuild it:\n{done.stderr[-2000:]}"
        )
    return done.stdout.strip().splitlines()[-1]
