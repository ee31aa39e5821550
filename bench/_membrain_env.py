"""Shared helpers of the benchmark scripts: MemBrain-seg's virtualenv and measured child processes.

MemBrain-seg 0.0.10 lives in its own virtualenv beside the project (``bench/.venvs/``), so its
pins (numpy, monai, Lightning) never touch Bilayer's environment. It is built on first use with
``pip install -c <torch pin> membrain-seg==0.0.10 click``: the pin keeps pip on the local CPU
build of torch (an unpinned resolve would pull gigabytes of CUDA wheels), and ``click`` is
imported by membrain-seg without being declared.

Every child process runs with its stdout and stderr in a log file, and is measured by a small guard
interpreter (:data:`_GUARD`) that forks the command itself: wall time with ``time.perf_counter``, and
CPU time and peak resident memory from ``os.wait4`` on the command (``ru_maxrss``, KiB on Linux: the
largest resident set of the command or of any descendant it waited for). The guard is needed because
a child started directly from the benchmark process reports at least that process's own peak: Python
starts children with ``vfork``/``fork``, and ``exec`` keeps the old memory's high-water mark in the
child's ``ru_maxrss`` (after the parent had touched 500 MB, ``/bin/true`` was reported at 535 MB). The
guard's interpreter is small (about 6 MB, the floor of every figure), so the figure is the command's.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
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
#: Runs and measures a command: ``python -I -S -c _GUARD LIMIT REPORT CMD...``. It sets an address-space
#: limit of LIMIT bytes (0: none), forks CMD (looked up on PATH), and writes CMD's exit status (negative:
#: killed by that signal), wall time, ``wait4`` rusage and the peak memory of CMD and all its
#: descendants together, sampled every 50 ms, to the JSON file REPORT: the memory of a command that
#: works in several processes at once. Each process's private memory (resident minus file-backed pages,
#: from ``/proc/PID/statm``) is summed and the largest file-backed share (the libraries, mapped by every
#: process) added once: close to the summed PSS, which ``smaps_rollup`` gives only by walking every page
#: table, too slow to sample while the command runs on the same cores.
_GUARD = """
import json, os, resource, sys, time
limit, report, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
if limit:
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

page = os.sysconf('SC_PAGE_SIZE') / 2**20

def tree_memory(root):
    parents = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open(f'/proc/{name}/stat') as f:
                    parents[int(name)] = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree, todo = set(), [root]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, q in parents.items() if q == p and c not in tree]
    private, shared = 0, 0
    for p in tree:
        try:
            with open(f'/proc/{p}/statm') as f:
                resident, files = (int(x) for x in f.read().split()[1:3])
        except (OSError, ValueError):
            continue
        private += resident - files
        shared = max(shared, files)
    return (private + shared) * page

started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        os.write(2, f"cannot run {argv[0]}: {e}\\n".encode())
    os._exit(127)
peak_tree = 0.0
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    peak_tree = max(peak_tree, tree_memory(pid))
    time.sleep(0.05)
wall = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(report, "w") as f:
    json.dump({"returncode": code, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
               "user_s": usage.ru_utime, "system_s": usage.ru_stime, "peak_tree_mb": peak_tree}, f)
sys.exit(code if code >= 0 else 128 - code)
"""

class BenchError(RuntimeError):
    """A benchmark step failed; the message says which, where its log is, and what to do."""


@dataclass(frozen=True)
class Measured:
    """One finished child process.

    Attributes:
        argv: the command.
        returncode: its exit status (negative: killed by that signal).
        wall_s: wall time from start to exit, seconds.
        peak_rss_mb: peak resident set size of the child, MiB (``ru_maxrss`` from the guard's ``wait4``;
            NaN, as are the times, if the guard itself failed).
        user_s: CPU time in user mode, seconds.
        system_s: CPU time in kernel mode, seconds.
        log: the file holding its stdout and stderr.
        load_before: 1-, 5- and 15-minute load averages when it started (other work on the CPU).
        load_after: the same when it ended.
        peak_tree_mb: peak memory of the child and all its descendants (worker processes) together,
            MiB: private memory summed, shared libraries once (see :data:`_GUARD`); sampled every 50 ms,
            so a peak shorter than that can be missed; NaN in older results.
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
    peak_tree_mb: float = math.nan

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
    argv: Sequence[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    echo: bool = False,
    limit_mb: float | None = None,
) -> Measured:
    """Run ``argv`` with stdout and stderr appended to ``log``; time it and take its own peak RSS.

    The command is started by the guard (:data:`_GUARD`), which measures it (see the module docstring).

    Args:
        argv: the command (its first word looked up on ``PATH`` as a shell would).
        log: log file (created, or appended to with a header line).
        cwd: working directory of the child.
        env: extra environment variables for the child.
        echo: also copy the log to this process's stderr when the child ends.
        limit_mb: address-space limit of the child, MiB (a ``MemoryError`` in it instead of a full
            machine); ``None``: no limit.

    Returns:
        The measurements; a non-zero exit status is returned, not raised (see :meth:`Measured.check`).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(a) for a in argv]
    child_env = dict(os.environ, **(env or {}))
    handle, report = tempfile.mkstemp(prefix=f".{log.name}.", suffix=".rusage.json", dir=log.parent.resolve())
    os.close(handle)
    limit = 0 if limit_mb is None else max(1, int(limit_mb * 2**20))
    guard = [sys.executable, "-I", "-S", "-c", _GUARD, str(limit), report, *argv]
    try:
        with open(log, "ab") as out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            load_before = os.getloadavg()
            guard_status = subprocess.run(
                guard, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=child_env, check=False
            ).returncode
        text = Path(report).read_text()
    finally:
        Path(report).unlink(missing_ok=True)
    if text:
        figures = json.loads(text)
    else:  # the guard failed before it could report: the exit status, and no figures
        figures = {
            "returncode": guard_status or 1,
            **dict.fromkeys(("wall_s", "peak_rss_mb", "user_s", "system_s", "peak_tree_mb"), math.nan),
        }
    if echo:
        sys.stderr.write(Path(log).read_text(errors="replace"))
    return Measured(argv=argv, log=str(log), load_before=load_before, load_after=os.getloadavg(), **figures)


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
