"""Many tomograms (issue 21): a shell loop of single ``bilayer segment`` calls against one batch run
against ``--workers N``.

It writes ``--count`` synthetic tomograms (Bilayer's generator, 10 Å, every one with membranes,
seeds ``--seed`` onwards; cached in ``bench/.cache/tomograms/``) and segments all of them three ways,
each way one measured child (see ``_membrain_env.run_measured``) with the same options:

- ``loop``: ``bash -c 'for f in ...; do bilayer segment "$f" --out RUN ...; done'``: one process per
  tomogram, so the interpreter starts and the model is loaded once per tomogram (what MemBrain-seg users
  write); measured as ONE child, the whole loop;
- ``batch``: ``bilayer segment T_1 ... T_n --out RUN ...``: one process, the model loaded once;
- ``workers``: the same with ``--workers N``: N worker processes on the CPU, the cores split between
  them, drawing tomograms through the run folder's claims.

It prints and saves the wall time, tomograms per hour, CPU time and peak RSS of each (the largest single
process of the child's tree: for ``loop`` one ``bilayer segment``, for ``workers`` the largest worker or
the parent), the ratios to the loop, how many mask voxels differ from the loop's (thread counts may
change the order of float sums), and each run folder's ``summary.csv`` (rows, statuses).
Results: ``bench/results/<UTC time>/results.json``, a log per way, the run folders without their masks
(``--keep-outputs`` keeps them).

    python bench/batch.py --quick                            # 3 × 64×128×128, about 2 minutes
    nice -n 5 python bench/batch.py --max-load 1.5           # 12 × 128×256×256
    python bench/batch.py --count 4 --modes batch workers --workers 2
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
from _membrain_env import BENCH_DIR, CACHE_DIR, BenchError, run_measured
from preprocess_vs_membrain import machine

DEFAULT_COUNT = 12
DEFAULT_SHAPE = (128, 256, 256)
QUICK_COUNT = 3
QUICK_SHAPE = (64, 128, 128)
VOXEL_SIZE = 10.0  # Å, the model's
MODES = ("loop", "batch", "workers")
#: Generator settings: every tomogram has membranes (the default draws some empty scenes).
LOOK = {"voxel_size": VOXEL_SIZE, "empty_probability": 0.0}
#: Environment of every measured child: no FutureWarnings from libraries in the logs.
QUIET = {"PYTHONWARNINGS": "ignore::FutureWarning"}
_LOOP = 'rc=0; for f in "$@"; do {cmd} "$f" --out {out} {opts} || rc=1; done; exit $rc'


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return _run(args)
    except BenchError as e:
        print(f"batch: error: {e}", file=sys.stderr)
        return 2


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=None, help=f"number of tomograms (default {DEFAULT_COUNT})")
    p.add_argument("--shape", type=parse_shape, default=None, metavar="Z,Y,X",
                   help=f"tomogram size (default {','.join(map(str, DEFAULT_SHAPE))})")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the 'workers' way (default 2)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="ways to run (default: all)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK_COUNT} tomograms of {'×'.join(map(str, QUICK_SHAPE))}")
    p.add_argument("--seed", type=int, default=1, help="seed of the first tomogram (then +1 each)")
    p.add_argument("--tta", action="store_true",
                   help="segment with test-time augmentation (Bilayer's default, 8× the work; off here)")
    p.add_argument("--max-load", type=float, default=None,
                   help="before each way, wait (up to --max-wait minutes in all) until the 1-min load is below this")
    p.add_argument("--max-wait", type=float, default=20.0, help="minutes of waiting for --max-load, in all")
    p.add_argument("--keep-outputs", action="store_true", help="keep the masks (default: deleted once compared)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: bench/results/<time>)")
    args = p.parse_args(argv)
    args.count = args.count or (QUICK_COUNT if args.quick else DEFAULT_COUNT)
    args.shape = args.shape or (QUICK_SHAPE if args.quick else DEFAULT_SHAPE)
    if args.count < 1 or args.workers < 1:
        p.error("--count and --workers must be at least 1")
    return args


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"128,256,256"`` (or ``128x256x256``) as (z, y, x).

    Raises:
        argparse.ArgumentTypeError: not three sizes of at least 32 (smaller is no tomogram to segment).
    """
    parts = [p for p in re.split(r"[,x× ]+", text.strip()) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 32:
        raise argparse.ArgumentTypeError(f"expected Z,Y,X, three sizes of at least 32 (e.g. 128,256,256), not {text!r}")
    return shape  # type: ignore[return-value]


def _run(args: argparse.Namespace) -> int:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or BENCH_DIR / "results" / stamp).resolve()
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"{out} is not empty; give another --out folder")
    out.mkdir(parents=True, exist_ok=True)
    bilayer = bilayer_command()
    options = segment_options(tta=args.tta)
    modes = list(args.modes)
    notes = []
    if "workers" in modes and not has_option(bilayer, "--workers"):
        modes.remove("workers")
        notes.append("this Bilayer's `bilayer segment` has no --workers: the 'workers' way was not run")
    report = {"started": stamp, "machine": machine(), "bilayer": _bilayer_version(), "count": args.count,
              "shape": list(args.shape), "voxel_size": VOXEL_SIZE, "seeds": [args.seed, args.seed + args.count - 1],
              "workers": args.workers, "options": options, "command": bilayer, "runs": {}, "notes": notes}
    print(format_machine(report))
    print(f"results and logs: {out}")
    tomograms = synthesize_all(args.count, args.shape, args.seed)
    deadline = time.monotonic() + 60 * args.max_wait
    for mode in modes:
        wait_for_load(args.max_load, deadline)
        run_dir = out / mode
        argv = mode_argv(mode, bilayer, tomograms, run_dir, options, args.workers)
        print(f"running {mode}: {describe(argv)}", flush=True)
        with ProcessPeaks() as peaks:
            measured = run_measured(argv, out / f"{mode}.log", env=QUIET).to_dict()
        run = {**measured, **per_hour(measured, args.count), "summary": summary_counts(run_dir),
               "processes": process_roles(peaks.processes())}
        report["runs"][mode] = run
        print(format_run(mode, run, report["runs"].get("loop")), flush=True)
        _save(out, report)
    if "loop" in report["runs"]:  # after all ways, so that any order of --modes is compared
        for mode, run in report["runs"].items():
            if mode != "loop":
                run["masks_vs_loop"] = compare_masks(out / "loop", out / mode, tomograms)
    if not args.keep_outputs:
        for mode in report["runs"]:
            for mask in mask_paths(out / mode, tomograms):
                mask.unlink(missing_ok=True)
    print(format_table(report))
    _save(out, report)
    print(f"\nwritten {out / 'results.json'}")
    failed = [m for m, r in report["runs"].items() if r["returncode"] != 0 or r["summary"]["done"] != args.count]
    return 1 if failed else 0


def _save(out: Path, report: dict) -> None:
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")


# --- the tomograms --------------------------------------------------------------------------------

def tomogram_path(shape: Sequence[int], seed: int) -> Path:
    """The cached synthetic tomogram of ``shape`` and ``seed``."""
    size = "x".join(map(str, shape))
    return CACHE_DIR / "tomograms" / f"batch_{size}" / f"batch_{size}_seed{seed:03d}.mrc"


def synthesize_all(count: int, shape: tuple[int, int, int], seed: int) -> list[Path]:
    """``count`` synthetic tomograms (seeds ``seed``, ``seed + 1``, ...), generated where not cached."""
    from bilayer.data.synthetic import SynthConfig, generate_tomogram
    from bilayer.io import write_volume

    paths = [tomogram_path(shape, s) for s in range(seed, seed + count)]
    config = SynthConfig(shape=shape, **LOOK)
    for s, path in zip(range(seed, seed + count), paths, strict=True):
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {path.name} ...", flush=True)
        tomo = generate_tomogram(config, seed=s)
        write_volume(path, tomo.image, voxel_size=tomo.voxel_size, overwrite=True)
    return paths


# --- the commands ---------------------------------------------------------------------------------

def bilayer_command() -> list[str]:
    """How a user starts Bilayer: the ``bilayer`` console script beside this interpreter (not a pyenv
    shim, which would add its own start-up to every call of the loop), else ``python -m bilayer``."""
    script = Path(sys.executable).parent / "bilayer"
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [sys.executable, "-m", "bilayer"]


def has_option(bilayer: Sequence[str], option: str) -> bool:
    """Whether ``bilayer segment --help`` lists ``option``."""
    done = subprocess.run([*bilayer, "segment", "--help"], check=False, capture_output=True, text=True)
    return re.search(rf"(^|[\s,/]){re.escape(option)}(?![\w-])", done.stdout, re.MULTILINE) is not None


def segment_options(*, tta: bool) -> list[str]:
    """The options every way uses: the CPU, no preview; TTA off unless asked (its default is on, and it
    multiplies the network's work by 8 without changing what is compared here); all else default."""
    return ["--device", "cpu", "--no-preview", "--tta" if tta else "--no-tta"]


def mode_argv(mode: str, bilayer: Sequence[str], tomograms: Sequence[Path], run_dir: Path,
              options: Sequence[str], workers: int) -> list[str]:
    """The one command that runs ``mode`` over ``tomograms`` into the run folder ``run_dir``."""
    if mode == "loop":
        script = _LOOP.format(cmd=" ".join(_quote(w) for w in [*bilayer, "segment"]), out=_quote(str(run_dir)),
                              opts=" ".join(_quote(o) for o in options))
        return ["bash", "-c", script, "bash", *map(str, tomograms)]
    argv = [*bilayer, "segment", *map(str, tomograms), "--out", str(run_dir), *options]
    if mode == "workers":
        argv += ["--workers", str(workers)]
    elif mode != "batch":
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    return argv


def _quote(word: str) -> str:
    return shlex.quote(word)


def describe(argv: Sequence[str], shown: int = 2) -> str:
    """``argv`` for the console, with long runs of tomogram paths shortened."""
    words = [str(w) for w in argv]
    tomos = [i for i, w in enumerate(words) if w.endswith(".mrc")]
    if len(tomos) > shown:
        words = words[:tomos[shown - 1] + 1] + [f"... ({len(tomos) - shown} more)"] + words[tomos[-1] + 1:]
    return " ".join(words)


# --- the figures ----------------------------------------------------------------------------------

def per_hour(measured: dict, count: int) -> dict:
    """Tomograms per hour and CPU seconds (user + system) of one measured child."""
    wall = measured["wall_s"]
    return {"tomograms_per_hour": count * 3600.0 / wall if wall and wall > 0 else float("nan"),
            "cpu_s": measured["user_s"] + measured["system_s"]}


def summary_counts(run_dir: Path) -> dict:
    """Rows of ``run_dir/summary.csv`` and how many have each status (``done``: 0 if it is missing)."""
    path = run_dir / "summary.csv"
    if not path.is_file():
        return {"rows": 0, "done": 0, "statuses": {}, "seconds": 0.0, "missing": True}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    seconds = sum(float(row["seconds"] or 0) for row in rows)
    return {"rows": len(rows), "done": statuses.get("done", 0), "statuses": statuses, "seconds": seconds}


def mask_paths(run_dir: Path, tomograms: Sequence[Path]) -> list[Path]:
    """Where ``bilayer segment`` writes each tomogram's mask in ``run_dir`` (names from bilayer.io.naming)."""
    from bilayer.io.naming import output_name

    return [run_dir / output_name(t, "mask") for t in tomograms]


def compare_masks(reference_dir: Path, other_dir: Path, tomograms: Sequence[Path]) -> dict:
    """How the masks in ``other_dir`` differ from those in ``reference_dir``: voxels that differ (all
    tomograms together and per tomogram), voxels compared, and masks missing on either side."""
    from bilayer.io import read_volume

    differing, voxels, per, missing = 0, 0, {}, []
    for ref, oth in zip(mask_paths(reference_dir, tomograms), mask_paths(other_dir, tomograms), strict=True):
        if not (ref.is_file() and oth.is_file()):
            missing.append(ref.name)
            continue
        a, b = read_volume(ref).data, read_volume(oth).data
        if a.shape != b.shape:
            missing.append(f"{ref.name} (shapes {a.shape} vs {b.shape})")
            continue
        n = int(np.count_nonzero(np.asarray(a) != np.asarray(b)))
        differing, voxels = differing + n, voxels + a.size
        per[ref.name] = n
    return {"differing_voxels": differing, "voxels": voxels, "identical": differing == 0 and not missing,
            "per_tomogram": per, "missing": missing}


class ProcessPeaks:
    """The peak resident memory of every process below this one while the block runs: each process's
    ``VmHWM`` (the kernel's high-water mark of its resident set) read from ``/proc`` every ``interval``
    seconds; the last reading before a process exits is kept, so a peak in its final ``interval`` is missed.

    The guard's ``ru_maxrss`` gives only the largest process of a tree; this tells the parent of
    ``--workers`` from its workers, and each call of the loop from the others.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._seen: dict[tuple[int, int], dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def processes(self) -> list[dict]:
        """Every process seen: pid, ppid, argv and peak_mb, in the order first seen."""
        return list(self._seen.values())

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        table = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(entry.path, "stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()
                table[int(entry.name)] = (int(fields[1]), int(fields[19]))  # ppid, start time
        below, frontier = set(), {os.getpid()}
        while frontier:
            frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - below
            below |= frontier
        for pid in below:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
            key = (pid, table[pid][1])
            seen = self._seen.setdefault(key, {"pid": pid, "ppid": table[pid][0], "argv": [], "peak_mb": 0.0})
            seen["argv"] = [a.decode(errors="replace") for a in argv if a] or seen["argv"]
            seen["peak_mb"] = max(seen["peak_mb"], hwm / 1024)


def process_role(argv: Sequence[str]) -> str:
    """What a process of a way is, from its command line: ``worker`` (a spawned worker), ``helper``
    (multiprocessing's resource tracker), ``segment`` (a ``bilayer segment`` process), ``guard`` (the
    benchmark's measuring interpreter), ``shell`` (the loop's bash) or ``other``."""
    text = " ".join(argv)
    if "multiprocessing.spawn" in text or "--multiprocessing-fork" in argv:
        return "worker"
    if "multiprocessing.resource_tracker" in text or "multiprocessing.forkserver" in text:
        return "helper"
    if argv[:4] == [sys.executable, "-I", "-S", "-c"]:
        return "guard"
    if argv and Path(argv[0]).name == "bash":
        return "shell"
    if "segment" in argv:
        return "segment"
    return "other"


def process_roles(processes: Sequence[dict]) -> dict[str, list[float]]:
    """Peak MB of the processes of each role (:func:`process_role`), in the order first seen; the guard
    and the loop's shell are left out (they hold nothing of note)."""
    roles: dict[str, list[float]] = {}
    for p in processes:
        role = process_role(p["argv"])
        if role not in ("guard", "shell"):
            roles.setdefault(role, []).append(round(p["peak_mb"], 1))
    return roles


def wait_for_load(max_load: float | None, deadline: float) -> None:
    """Wait a minute at a time while the 1-minute load is above ``max_load``, until ``deadline``."""
    while max_load is not None and os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        print(f"load average {os.getloadavg()[0]:.2f} > {max_load:g}: waiting a minute", flush=True)
        time.sleep(60)


def _bilayer_version() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(BENCH_DIR), *args], check=False, capture_output=True,
                              text=True).stdout.strip()

    return {"git": git("rev-parse", "--short", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "-uno"))}


# --- the text -------------------------------------------------------------------------------------

TITLES = {"loop": "shell loop", "batch": "one batch run", "workers": "--workers"}


def format_machine(report: dict) -> str:
    m = report["machine"]
    return (f"CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory_total_mb'] / 1024:.1f} GB, "
            f"{m['memory_available_mb'] / 1024:.1f} GB available; load average {_loads(m['load'])}\n"
            f"Bilayer {report['bilayer']['git']}{' (uncommitted changes)' if report['bilayer']['git_dirty'] else ''}; "
            f"{report['count']} tomograms of {'×'.join(map(str, report['shape']))} at {report['voxel_size']:g} Å; "
            f"options: {' '.join(report['options'])}")


def _loads(load: Sequence[float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def _title(mode: str, workers: int) -> str:
    return f"--workers {workers}" if mode == "workers" else TITLES[mode]


def _masks(mode: str, run: dict) -> str:
    m = run.get("masks_vs_loop")
    if m is None:
        return "(reference)" if mode == "loop" else "n/a (no loop)"
    if m["missing"]:
        return f"{len(m['missing'])} missing"
    if m["identical"]:
        return "identical"
    return f"{m['differing_voxels']} of {m['voxels']} voxels differ ({100 * m['differing_voxels'] / m['voxels']:.4f} %)"


def format_run(mode: str, run: dict, loop: dict | None) -> str:
    """A line about a finished way (the masks are compared in the table at the end)."""
    if run["returncode"] != 0:
        return f"{mode}: FAILED (exit {run['returncode']}); see {run['log']}"
    speed = f", {loop['wall_s'] / run['wall_s']:.2f}× the loop's speed" if loop and mode != "loop" else ""
    return (f"{mode}: {run['wall_s']:.1f} s, {run['tomograms_per_hour']:.0f} tomograms/h{speed}, "
            f"CPU {run['cpu_s']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB, "
            f"summary {run['summary']['done']}/{run['summary']['rows']} done\n"
            f"  per process (VmHWM): {format_roles(run.get('processes', {}))}")


def format_roles(roles: dict[str, list[float]]) -> str:
    """Each role's peaks: ``segment 12× 702–731 MB; worker 790, 801 MB``."""
    parts = []
    for role, peaks in roles.items():
        if len(peaks) > 3:
            parts.append(f"{role} {len(peaks)}× {min(peaks):.0f}–{max(peaks):.0f} MB")
        else:
            parts.append(f"{role} {', '.join(f'{p:.0f}' for p in peaks)} MB")
    return "; ".join(parts) or "none seen"


def format_table(report: dict) -> str:
    """The table of all ways, with ratios to the loop."""
    count, shape = report["count"], "×".join(map(str, report["shape"]))
    lines = [f"\n== {count} tomograms of {shape} ({report['machine']['cpu']}, {report['machine']['cores']} cores) =="]
    head = (f"{'way':<15}{'wall s':>9}{'tomo s':>9}{'tomo/h':>9}{'× loop':>8}{'CPU s':>9}{'peak RSS MB':>13}"
            f"{'RSS × loop':>11}"
            f"  {'summary':<12}{'masks vs loop':<42}load 1/5/15 before → after")
    lines += [head, "-" * len(head)]
    loop = report["runs"].get("loop")
    for mode, run in report["runs"].items():
        name = _title(mode, report["workers"])
        if run["returncode"] != 0:
            lines.append(f"{name:<15}FAILED (exit {run['returncode']}); see {run['log']}")
            continue
        speed = f"{loop['wall_s'] / run['wall_s']:.2f}" if loop and loop["returncode"] == 0 else "n/a"
        rss = f"{run['peak_rss_mb'] / loop['peak_rss_mb']:.2f}" if loop and loop["returncode"] == 0 else "n/a"
        summary = f"{run['summary']['done']}/{run['summary']['rows']} done"
        lines.append(f"{name:<15}{run['wall_s']:>9.1f}{run['summary']['seconds']:>9.1f}"
                     f"{run['tomograms_per_hour']:>9.0f}{speed:>8}{run['cpu_s']:>9.1f}"
                     f"{run['peak_rss_mb']:>13.0f}{rss:>11}  {summary:<12}{_masks(mode, run):<42}"
                     f"{_loads(run['load_before'])} → {_loads(run['load_after'])}")
    for mode, run in report["runs"].items():
        lines.append(f"  {_title(mode, report['workers'])} per process (VmHWM): {format_roles(run.get('processes', {}))}")
    lines.append("wall s: the whole way (every process start, model load, read and write); tomo s: the "
                 "seconds the run folder's records give its tomograms, summed (with workers they overlap); "
                 "× loop: the loop's "
                 "wall time / this one's; peak RSS: the largest single process of the way's tree (loop: one "
                 "`bilayer segment`; --workers: the largest worker or the parent); per process: each process's own "
                 "peak (VmHWM, read every 0.5 s) by role: segment (a `bilayer segment` process: the loop's calls, "
                 "the batch run, the parent of --workers), worker, helper (multiprocessing's resource tracker)")
    lines += [f"NOTE: {note}" for note in report["notes"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
