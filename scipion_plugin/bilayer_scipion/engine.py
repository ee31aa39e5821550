"""Running the ``bilayer`` command from a protocol step, with its output in the run's log.

Arguments are an argv list (never a shell line), so file names with spaces or quotes are
passed as they are. The engine reports a user error as one line starting with
``bilayer: error:`` and exit status 2; :class:`EngineRun` keeps that line so a protocol can
list why a tomogram failed.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections import deque
from dataclasses import dataclass
from typing import Sequence

from bilayer_scipion import Plugin

__all__ = ["EngineRun", "run_engine"]

logger = logging.getLogger(__name__)

_ERROR_PREFIX = "bilayer: error:"
_TAIL_LINES = 40


@dataclass(frozen=True)
class EngineRun:
    """One finished engine command.

    Attributes:
        argv: the full command that ran.
        returncode: its exit status (127 when it could not be started).
        error: why it failed, as one line ('' after success).
    """

    argv: tuple[str, ...]
    returncode: int
    error: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_engine(args: Sequence[str], *, gpus: Sequence[int] = (), threads: int | None = None,
               tag: str = "") -> EngineRun:
    """Run ``bilayer ARGS`` (the Plugin's engine command) and wait for it.

    Every line it prints goes to this process's log, prefixed with ``tag``.

    Args:
        args: the subcommand and its options, e.g. ``["segment", "t.mrc", "--out", "extra"]``.
        gpus: GPU ids the command may see (CUDA_VISIBLE_DEVICES); empty leaves it unset.
        threads: CPU threads it may use (OMP_NUM_THREADS); None leaves it to the engine.
        tag: a prefix for the log lines, e.g. the tsId, so parallel runs can be told apart.
    """
    argv = (*Plugin.getEngineCommand(), *(str(a) for a in args))
    prefix = f"[{tag}] " if tag else ""
    logger.info("%s%s", prefix, shlex.join(argv))
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, errors="replace", env=Plugin.getEnviron(tuple(gpus), threads)) as process:
            for line in process.stdout or ():
                line = line.rstrip()
                tail.append(line)
                logger.info("%s%s", prefix, line)
    except OSError as e:
        message = f"cannot run the Bilayer engine {shlex.join(argv[:3])}: {e}; check the BILAYER_COMMAND variable"
        logger.error("%s%s", prefix, message)
        return EngineRun(argv, 127, message)
    if process.returncode == 0:
        return EngineRun(argv, 0, "")
    return EngineRun(argv, process.returncode, _reason(tail, process.returncode))


def _reason(tail: Sequence[str], returncode: int) -> str:
    """The engine's last error line, else its last line, else the exit status."""
    errors = [line[len(_ERROR_PREFIX):].strip() for line in tail if line.startswith(_ERROR_PREFIX)]
    if errors:
        return errors[-1]
    last = next((line for line in reversed(tail) if line.strip()), "")
    return f"exit status {returncode}" + (f": {last.strip()}" if last else "")
