"""The RELION External-job protocol, in one place: arguments, exit files, output nodes, aborts.

RELION runs an External job from the project folder as::

    <executable> --o External/job012/ [--in_mics STAR] [--<label> <value> ...] --j N [other arguments]

appending stdout and stderr to ``run.out`` and ``run.err`` in the job folder, and it waits until
one of ``RELION_JOB_EXIT_SUCCESS``, ``RELION_JOB_EXIT_FAILURE`` or ``RELION_JOB_EXIT_ABORTED``
appears there, whatever the exit code. :func:`run_program` therefore clears stale exit files
first and writes exactly one in a ``finally``, also when the arguments cannot be parsed. On
success the job's ``RELION_OUTPUT_NODES.star`` lists its outputs with both the integer node
type (RELION 3.1) and the node type label (RELION 4 and 5). The GUI's abort button creates
``RELION_JOB_ABORT_NOW``; jobs poll it (:meth:`Job.check_abort`) and stop with ABORTED, as they
do on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import _thread
import argparse
import enum
import json
import logging
import os
import re
import signal
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence

import pandas as pd

from bilayer import __version__
from bilayer.batch.records import changed_settings
from bilayer.errors import BilayerError, ConfigError, InputFileError
from bilayer.io import atomic_open, ensure_output_dir
from bilayer_relion.star import star_text

__all__ = [
    "ABORT_FILE",
    "EXIT_ABORTED",
    "EXIT_USAGE",
    "NODES_FILE",
    "ExitStatus",
    "Job",
    "JobAborted",
    "JobFailed",
    "JobParser",
    "Node",
    "NodeType",
    "check_distinct",
    "device_from_gpu",
    "gpu_devices",
    "keep_settings",
    "output_folder",
    "run_program",
    "yes_no",
]

ABORT_FILE = "RELION_JOB_ABORT_NOW"
NODES_FILE = "RELION_OUTPUT_NODES.star"
EXIT_USAGE = 2  # as the ``bilayer`` command: a user error, told in one line
EXIT_ABORTED = 130
_EXIT_BUG = 1
_JOB_FOLDER = re.compile(r"job\d+")  # RELION's <JobType>/jobNNN/ output folders


class ExitStatus(str, enum.Enum):
    """How a job ended: the name of the file that tells RELION."""

    SUCCESS = "RELION_JOB_EXIT_SUCCESS"
    FAILURE = "RELION_JOB_EXIT_FAILURE"
    ABORTED = "RELION_JOB_EXIT_ABORTED"


class NodeType(enum.Enum):
    """Output node types as (RELION 3.1 integer, RELION 4/5 label).

    RELION 3.1 has no tomogram-set node: a tomogram list is a micrographs node (1), so it can feed
    another External job's "Input micrographs". No 3.1 type fits a network checkpoint; 99 is none of
    RELION's, which keeps it out of every input browser.
    """

    TOMOGRAM_SET = (1, "TomogramGroupMetadata.star.bilayer.membranes")
    MICROGRAPH_SET = (1, "MicrographGroupMetadata.star.bilayer.membranes")
    MASK = (7, "Mask3D.mrc.bilayer.membranes")
    MODEL = (99, "ParamsData.pt.bilayer.model")

    @property
    def code(self) -> int:
        return self.value[0]

    @property
    def label(self) -> str:
        return self.value[1]


@dataclass(frozen=True)
class Node:
    """An output RELION adds to its pipeline: a file (relative to the project folder) and its type."""

    path: Path
    type: NodeType


class JobAborted(BaseException):
    """The user asked the job to stop (abort file, SIGTERM or Ctrl-C).

    A BaseException, as KeyboardInterrupt is, so that no ``except Exception`` on the way up can
    swallow it; atomic writers still clean up on it.
    """


class JobFailed(BilayerError):
    """Some of a job's items (tomograms) failed; each was reported as it failed."""


class Job:
    """A job folder: where outputs go, and the abort and exit files RELION talks through.

    Args:
        folder: the job folder (``--o``).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def start(self) -> None:
        """Create the folder if needed and clear exit files of an earlier run.

        Raises:
            OutputError: the folder cannot be created or written to.
        """
        ensure_output_dir(self.folder)
        self.clear_exit_files()

    def clear_exit_files(self) -> None:
        """Remove exit files of an earlier run, so RELION sees this run as running."""
        for status in ExitStatus:
            (self.folder / status.value).unlink(missing_ok=True)

    def abort_requested(self) -> bool:
        """Whether the user pressed abort (RELION created ``RELION_JOB_ABORT_NOW``)."""
        return (self.folder / ABORT_FILE).exists()

    def check_abort(self, *_: Any) -> None:
        """Raise :class:`JobAborted` if an abort was asked for; usable as a progress callback."""
        if self.abort_requested():
            raise JobAborted(f"{self.folder / ABORT_FILE} found")

    @contextmanager
    def abort_watch(self, interval: float = 1.0) -> Iterator[None]:
        """Poll for an abort every ``interval`` seconds while the block runs, for work that cannot poll
        itself (waiting on worker processes): an abort interrupts the main thread as Ctrl-C does, so
        what the block waits on stops the way it stops on Ctrl-C, and the block raises
        :class:`JobAborted`. Outside the main thread the block only gets a check at its end."""
        if threading.current_thread() is not threading.main_thread():
            yield
            self.check_abort()
            return
        ended, fired, lock = threading.Event(), threading.Event(), threading.Lock()

        def watch() -> None:
            while not ended.wait(interval):
                with lock:
                    if not ended.is_set() and self.abort_requested():
                        fired.set()
                        _thread.interrupt_main()
                        return

        watcher = threading.Thread(target=watch, name="abort watch", daemon=True)
        watcher.start()
        try:
            yield
        except KeyboardInterrupt:
            if fired.is_set():
                raise JobAborted(f"{self.folder / ABORT_FILE} found") from None
            raise
        finally:
            with lock:
                ended.set()
            watcher.join()
        self.check_abort()  # an abort that came as the block ended

    def write_nodes(self, nodes: Sequence[Node]) -> Path:
        """Write ``RELION_OUTPUT_NODES.star`` (both type columns, readable by RELION 3.1, 4 and 5)."""
        table = pd.DataFrame({"rlnPipeLineNodeName": [str(n.path) for n in nodes],
                              "rlnPipeLineNodeType": [n.type.code for n in nodes],
                              "rlnPipeLineNodeTypeLabel": [n.type.label for n in nodes]})
        path = self.folder / NODES_FILE
        with atomic_open(path, overwrite=True) as f:
            f.write(star_text({"output_nodes": table}).encode())
        return path

    def finish(self, status: ExitStatus) -> None:
        """Tell RELION the job ended: exactly one exit file (an honoured abort request is consumed)."""
        self.clear_exit_files()
        if status is ExitStatus.ABORTED:
            (self.folder / ABORT_FILE).unlink(missing_ok=True)
        (self.folder / status.value).touch()


class JobParser(argparse.ArgumentParser):
    """An argument parser with RELION's job arguments whose errors are one-line :class:`ConfigError`s."""

    def __init__(self, prog: str, description: str) -> None:
        super().__init__(prog=prog, description=description, allow_abbrev=False)
        group = self.add_argument_group("RELION")
        group.add_argument("--o", required=True, metavar="JOBDIR",
                           help="Job folder for every output, relative to the project folder (RELION sets it).")
        group.add_argument("--in_mics", metavar="STAR", help="Tomogram list: a RELION 5 tomogram set "
                           "(tomograms.star) or a micrograph-style STAR naming tomogram MRCs.")
        group.add_argument("--j", type=_positive_int, default=None, metavar="N",
                           help="CPU threads (RELION's 'Number of threads'). [default: torch's choice]")

    def add_option(self, name: str, *, kind: Callable[[str], Any] = str, help: str, metavar: str | None = None) -> None:
        """A ``--name value`` parameter; given without a value (an empty RELION param value) it
        keeps its default, except a yes/no parameter, which then means yes."""
        const, metavar = (True, metavar or "yes|no") if kind is yes_no else (None, metavar)
        self.add_argument(f"--{name}", type=kind, nargs="?", const=const, default=None, help=help, metavar=metavar)

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def yes_no(text: str) -> bool:
    """Parse a RELION yes/no value (yes, no, true, false, 1, 0, on, off; any case)."""
    answers = {"yes": True, "y": True, "true": True, "1": True, "on": True,
               "no": False, "n": False, "false": False, "0": False, "off": False}
    try:
        return answers[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is not yes or no; use yes, no, true, false, 1 or 0") from None


def device_from_gpu(text: str | None) -> str:
    """The torch device for RELION's GPU field: empty → ``auto``, ``cpu``, ``cuda[:N]``, or GPU
    ids such as ``0`` or ``1,2`` (the first is used: one tomogram at a time fits one GPU)."""
    devices = gpu_devices(text)
    if len(devices) > 1:
        print(f"note: gpu {(text or '').strip()}: this job uses one GPU, {devices[0]}", flush=True)
    return devices[0]


def gpu_devices(text: str | None) -> list[str]:
    """The torch devices of RELION's GPU field, one per GPU id: ``0,1`` (or ``0:1``, RELION's
    separator) → ``cuda:0, cuda:1``; empty → ``auto``; ``cpu`` and ``cuda[:N]`` as they are.

    Raises:
        ConfigError: an id that is not a whole number.
    """
    value = (text or "").strip()
    if not value or value in ("auto", "cpu") or value.startswith("cuda"):
        return [value or "auto"]
    ids = [v.strip() for v in value.replace(":", ",").split(",") if v.strip()]
    if not ids or not all(i.isdigit() for i in ids):
        raise ConfigError(f"gpu {text!r} is not a GPU id; give e.g. 0 (or 0,1 for several), cpu, "
                          "or leave it empty for the first GPU if there is one")
    return [f"cuda:{int(i)}" for i in ids]


def output_folder(job_folder: Path, source: Path) -> Path:
    """Where a tomogram's outputs go: its folders below the job folder, without the producing
    job's ``<JobType>/jobNNN`` (RELION's layout), ``..`` or the root."""
    parts = [p for p in source.parent.parts if p not in ("..", ".", source.anchor)]
    if len(parts) >= 2 and _JOB_FOLDER.fullmatch(parts[1]):
        parts = parts[2:]
    return job_folder.joinpath(*parts)


def check_distinct(outputs: Sequence[tuple[str, Path]], source: Path) -> None:
    """Refuse two tomograms (``(name, output)`` pairs) writing one output file.

    Raises:
        InputFileError: naming both tomograms and the file.
    """
    seen: dict[Path, str] = {}
    for name, path in outputs:
        if path in seen:
            raise InputFileError(f"{source}: tomograms {seen[path]} and {name} would both write {path}; give their "
                                 "files different names")
        seen[path] = name


def keep_settings(folder: Path, file_name: str, made: bool, settings: dict[str, Any]) -> None:
    """Record the settings a job's outputs are made with in ``folder / file_name``; refuse to continue
    a job whose outputs (``made``) were made with other settings.

    Raises:
        ConfigError: naming the settings that changed.
    """
    path = folder / file_name
    text = json.dumps(settings, indent=2, sort_keys=True)
    if made and path.is_file():
        try:
            before = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            before = None
        now = json.loads(text)
        if before is not None and before != now:
            changed = changed_settings(before, now)
            raise ConfigError(f"{folder} holds results made with other settings ({', '.join(changed)}; see "
                              f"{path}); continue it with the same settings, or run a new job")
    with atomic_open(path, overwrite=True) as f:
        f.write((text + "\n").encode())


def run_program(argv: Sequence[str] | None, parser: JobParser,
                run: Callable[[argparse.Namespace, Job], Sequence[Node]]) -> int:
    """Run one job: parse ``argv``, call ``run(args, job)`` for the output nodes, write them and
    exactly one exit file. Returns the exit status (0 success, 2 a user error, 130 aborted)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    _line_buffered(sys.stdout)
    if any(a in ("-h", "--help") for a in args_list):
        return _print_help(parser, args_list)
    folder = _job_folder(args_list)
    if folder is None:
        print(f"{parser.prog}: error: give the job folder with --o JOBDIR (RELION does)", file=sys.stderr)
        return EXIT_USAGE
    status, code = ExitStatus.FAILURE, _EXIT_BUG
    job = Job(folder)
    try:
        with _stop_on_sigterm(), warnings.catch_warnings():
            warnings.showwarning = _show_warning(parser.prog)
            logging.basicConfig(level=logging.WARNING, format=f"{parser.prog}: %(levelname)s %(name)s: %(message)s")
            job.start()
            args, unknown = parser.parse_known_args(args_list)
            print(f"{parser.prog} (Bilayer {__version__}) in {Path.cwd()}: {' '.join(args_list)}")
            if unknown:
                print(f"note: ignoring arguments this job does not know: {' '.join(unknown)}")
            if args.j is not None:
                _set_threads(args.j)
            nodes = run(args, job)
            job.write_nodes(nodes)
            status, code = ExitStatus.SUCCESS, 0
            print(f"{parser.prog}: done; {len(nodes)} output node(s) in {job.folder / NODES_FILE}")
    except (JobAborted, KeyboardInterrupt) as e:
        status, code = ExitStatus.ABORTED, EXIT_ABORTED
        print(f"{parser.prog}: aborted ({e or 'interrupted'}); finished work is kept, continue the job "
              "to do the rest", flush=True)
    except BilayerError as e:
        status, code = ExitStatus.FAILURE, EXIT_USAGE
        for line in getattr(e, "problems", None) or [str(e)]:  # a pre-flight error: one line per problem
            print(f"{parser.prog}: error: {' '.join(str(line).split())}", file=sys.stderr, flush=True)
    except Exception:  # a bug: keep the traceback for the report
        print(f"{parser.prog}: unexpected error (please report it with this log):\n{traceback.format_exc()}",
              file=sys.stderr, flush=True)
    finally:
        _finish(job, status, parser.prog)
    return code


def _finish(job: Job, status: ExitStatus, prog: str) -> None:
    """Write the exit file; where it cannot be written, say so (RELION cannot be told)."""
    try:
        job.finish(status)
    except OSError as e:
        print(f"{prog}: error: cannot write {job.folder / status.value}: {e.strerror or e}; "
              "RELION will show this job as running until you mark it finished", file=sys.stderr, flush=True)


def _job_folder(argv: Sequence[str]) -> Path | None:
    """The value of ``--o`` (also ``--o=DIR``), found before parsing so a parse error can be reported."""
    for i, arg in enumerate(argv):
        if arg == "--o" and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            return Path(argv[i + 1])
        if arg.startswith("--o="):
            return Path(arg[len("--o="):])
    return None


def _print_help(parser: JobParser, argv: list[str]) -> int:
    try:
        parser.parse_known_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    except BilayerError:
        pass
    parser.print_help()
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _line_buffered(stream: Any) -> None:
    """Line-buffer a redirected stdout, so run.out shows progress as it happens."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(line_buffering=True)
        except (ValueError, OSError):
            pass


def _show_warning(prog: str) -> Callable[..., None]:
    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print(f"{prog}: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    return show


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (a queue's kill, ``kill PID``) into :class:`JobAborted` while the job runs."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise JobAborted(f"stopped by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
