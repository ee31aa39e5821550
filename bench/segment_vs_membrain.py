"""Side-by-side inference benchmark: Bilayer's ``segment`` against MemBrain-seg 0.0.10's.

For each case (a synthetic tomogram at 10 Å with ground truth, TTA on or off) it runs
MemBrain-seg's own ``segment`` in its virtualenv (``bench/.venvs/membrain-0.0.10``, built on
first use) and ``bilayer segment`` in this interpreter, each as a separate child process with
the same checkpoint, and prints per case: wall time and peak RSS of each, their ratios
(MemBrain-seg / Bilayer), achieved GFLOP/s, Dice of each mask against the ground truth
(label 1; ignore label 2 excluded), and the agreement of Bilayer with MemBrain-seg (Dice of the
masks, max |score difference|, fraction of voxels whose score sign differs). Everything also
goes to ``bench/results/<time>/results.json`` with every child's log beside it.

Bilayer runs in one or more variants: ``default`` (its own defaults: overlap 0.5, windows of
160³ or, where that predicts fewer voxels, 192³, precision auto, i.e. bfloat16 on CPUs with native
support), ``matched`` (MemBrain-seg's settings exactly: 160³ windows, overlap 0.5, float32, zero
padding), which should reproduce MemBrain-seg's scores to float32 rounding, and ``fast``
(overlap 0.25: fewer windows, other answers where windows move).

    python bench/make_checkpoint.py                       # once: bench/.cache/membrain_bench.ckpt
    python bench/segment_vs_membrain.py --quick           # smoke test: 96×160×160, no TTA
    python bench/segment_vs_membrain.py                   # 160³ and 128×256×256, TTA off and on
    python bench/segment_vs_membrain.py --cases 160 --tta off --variants default matched
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _membrain_env import (
    BENCH_DIR,
    CACHE_DIR,
    BenchError,
    Measured,
    ensure_membrain_venv,
    membrain_python,
    run_measured,
)

WINDOW = 160  # MemBrain-seg's sliding-window size, and Bilayer's default
MEMBRAIN_OVERLAP = 0.5
VOXEL_SIZE = 10.0  # Å
CASES = {  # name -> (shape (z, y, x), TTA settings)
    "quick": ((96, 160, 160), (False,)),
    "160": ((160, 160, 160), (False, True)),
    "128x256x256": ((128, 256, 256), (False, True)),
}
#: What each tool prints about its own run time, in its log: MemBrain-seg's ``segment()`` call (which
#: loads the checkpoint; printed by ``_membrain_segment.py``), Bilayer's ``segment_file`` (after loading).
INNER_TIME = {
    "membrain-seg": re.compile(r"^segment_s=([0-9.]+)$", re.MULTILINE),
    "bilayer": re.compile(r", ([0-9.]+) s → .*_seg\.mrc$", re.MULTILINE),
}
VARIANTS = {  # Bilayer variant -> (overlap, precision, padding, fit window)
    "default": (None, None, None, None),  # the InferenceConfig defaults
    "matched": (MEMBRAIN_OVERLAP, "float32", "zeros", False),  # MemBrain-seg's windows and arithmetic: its scores
    "fast": (0.25, None, None, None),
}


@dataclass(frozen=True)
class Case:
    """One benchmark case: a tomogram shape and whether TTA is on."""

    shape: tuple[int, int, int]
    tta: bool

    @property
    def name(self) -> str:
        return "x".join(map(str, self.shape)) + ("-tta" if self.tta else "-notta")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return _run(args)
    except BenchError as e:
        print(f"segment_vs_membrain: error: {e}", file=sys.stderr)
        return 2


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cases",
        nargs="+",
        choices=sorted(CASES),
        default=["160", "128x256x256"],
        help="tomogram sizes (default: 160 128x256x256); each runs with TTA off and on",
    )
    p.add_argument("--quick", action="store_true", help="only the tiny smoke case (96×160×160, no TTA)")
    p.add_argument("--tta", choices=("both", "on", "off"), default="both", help="which TTA settings to run")
    p.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        default=["default"],
        help="Bilayer settings to run (default: default; 'matched' uses MemBrain-seg's)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=CACHE_DIR / "membrain_bench.ckpt",
        help="MemBrain-seg .ckpt both tools load (default: the one make_checkpoint.py writes)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic tomograms (default 1)")
    p.add_argument("--membrain-from", type=Path, default=None,
                   help="reuse MemBrain-seg's outputs and measurements from this earlier results folder "
                        "(same tomograms and checkpoint) instead of running it again")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: bench/results/<time>)")
    args = p.parse_args(argv)
    if args.quick:
        args.cases = ["quick"]
    return args


def _run(args: argparse.Namespace) -> int:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if not args.checkpoint.is_file():
        raise BenchError(
            f"checkpoint {args.checkpoint} does not exist; run `python bench/make_checkpoint.py` "
            "first, or give one with --checkpoint"
        )
    out = (args.out or BENCH_DIR / "results" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    versions = ensure_membrain_venv(out)
    flops = window_flops(WINDOW)  # MemBrain-seg's; Bilayer's windows may be larger (see windows())
    report = {
        "started": stamp,
        "machine": _machine(),
        "membrain": versions,
        "bilayer": _bilayer_version(),
        "checkpoint": str(args.checkpoint.resolve()),
        "window": WINDOW,
        "flops_per_window": flops,
        "cases": [],
    }
    print(f"network FLOPs per {WINDOW}³ window (one forward, convolutions): {flops / 1e12:.3f} TFLOP")
    print(f"results and logs: {out}")
    for case in _cases(args):
        result = run_case(case, args, out / case.name)
        report["cases"].append(result)
        print(format_case(result))
        (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {out / 'results.json'}")
    return 0


def _cases(args: argparse.Namespace) -> list[Case]:
    wanted = {"both": (False, True), "on": (True,), "off": (False,)}[args.tta]
    cases = [Case(CASES[name][0], tta) for name in args.cases for tta in CASES[name][1] if tta in wanted]
    if not cases:
        raise BenchError(f"no case left: --cases {' '.join(args.cases)} with --tta {args.tta}")
    return cases


@functools.cache
def window_flops(window: int) -> int:
    """FLOPs of one forward pass of MemBrain-seg's default U-Net on one ``window``³ window.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on Bilayer's network built on the
    meta device (nothing is computed): convolutions and transposed convolutions, 2 FLOPs per
    multiply-add; normalisation and activations are not counted.
    """
    import torch
    from bilayer.model import NetworkConfig, build_network
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        network = build_network(NetworkConfig()).eval()
        x = torch.empty(1, 1, window, window, window)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(x)
    return int(counter.get_total_flops())


def windows(shape: tuple[int, ...], overlap: float, fit: bool) -> tuple[int, int]:
    """(window edge, number of windows) over ``shape`` at ``overlap``: MemBrain-seg's 160³ windows
    (Bilayer's placement = MONAI's), or with ``fit`` the window Bilayer grows to predict fewer voxels."""
    from bilayer.infer import fit_window, window_count
    from bilayer.model import NetworkConfig

    step = NetworkConfig().size_multiple  # MemBrain-seg's U-Net, the network window_flops counts too
    window = fit_window(shape, WINDOW, step, overlap) if fit else WINDOW
    return window, window_count(shape, window, overlap)


def run_case(case: Case, args: argparse.Namespace, folder: Path) -> dict:
    """Run MemBrain-seg and each Bilayer variant on ``case``; return measurements and comparisons."""
    if folder.exists() and any(folder.iterdir()):
        raise BenchError(f"{folder} already holds results of {case.name}; give another --out folder")
    tomo, labels_path = synthetic_tomogram(case.shape, args.seed)
    labels = _read(labels_path)
    ckpt = args.checkpoint.resolve()
    tta = "--tta" if case.tta else "--no-tta"
    passes = 8 if case.tta else 1  # forward passes per window position
    result = {"case": case.name, "shape": list(case.shape), "tta": case.tta, "tomogram": str(tomo), "runs": {}}

    _, n_windows = windows(case.shape, MEMBRAIN_OVERLAP, fit=False)
    if args.membrain_from is not None:  # MemBrain-seg's run of an earlier benchmark (same tomogram and checkpoint)
        earlier = json.loads((args.membrain_from / "results.json").read_text())
        reference = next(r["runs"]["membrain-seg"] for r in earlier["cases"] if r["case"] == case.name)
        reference["reused_from"] = str(args.membrain_from)
        mask, scores = _membrain_outputs(args.membrain_from / case.name / "membrain", tomo)
    else:
        out_dir = folder / "membrain"
        argv = [membrain_python(), BENCH_DIR / "_membrain_segment.py", tomo, ckpt, out_dir, tta, "--window", WINDOW]
        ran = run_measured(argv, folder / "membrain.log", env={"PYTHONWARNINGS": "ignore::FutureWarning"})
        ran.check(f"MemBrain-seg on {case.name}")
        mask, scores = _membrain_outputs(out_dir, tomo)
        reference = {"tool": "membrain-seg", "overlap": MEMBRAIN_OVERLAP, "precision": "float32", "windows": n_windows,
                     "window": WINDOW}
        flops = passes * n_windows * window_flops(WINDOW)
        reference.update(_summary("membrain-seg", ran, flops, mask, labels, tomo, out_dir))
    result["runs"]["membrain-seg"] = reference

    for variant in args.variants:
        overlap, precision, padding, fit = _settings(variant)
        out_dir = folder / f"bilayer-{variant}"
        argv = [sys.executable, "-m", "bilayer", "segment", tomo, "--model", ckpt, "--out", out_dir, "--scores"]
        argv += ["--no-preview", "--device", "cpu", tta, "--window", WINDOW, "--overlap", overlap]
        argv += ["--precision", precision, "--padding", padding, "--fit-window" if fit else "--fixed-window"]
        ran = run_measured(argv, folder / f"bilayer-{variant}.log")
        ran.check(f"Bilayer ({variant}) on {case.name}")
        b_mask = _read(out_dir / f"{tomo.stem}_seg.mrc") > 0
        b_scores = _read(out_dir / f"{tomo.stem}_scores.mrc")
        window, n_windows = windows(case.shape, overlap, fit)
        run = {"tool": "bilayer", "variant": variant, "overlap": overlap, "precision": precision, "padding": padding,
               "windows": n_windows, "window": window}
        run.update(_summary("bilayer", ran, passes * n_windows * window_flops(window), b_mask, labels, tomo, out_dir))
        run.update(compare(mask, scores, b_mask, b_scores))
        run["time_ratio"] = reference["wall_s"] / run["wall_s"]
        run["rss_ratio"] = reference["peak_rss_mb"] / run["peak_rss_mb"]
        result["runs"][f"bilayer-{variant}"] = run
    return result


def _settings(variant: str) -> tuple[float, str, str, bool]:
    """Overlap, precision, padding and window fitting of a Bilayer variant; ``None`` in :data:`VARIANTS`
    means Bilayer's default."""
    from bilayer.infer import InferenceConfig

    overlap, precision, padding, fit = VARIANTS[variant]
    defaults = InferenceConfig()
    return ((defaults.overlap if overlap is None else overlap), (precision or defaults.precision.value),
            (padding or defaults.padding.value), (defaults.fit_window if fit is None else fit))


def _summary(
    tool: str, ran: Measured, total_flops: int, mask: np.ndarray, labels: np.ndarray, tomo: Path, out_dir: Path
) -> dict:
    """Measurements of one run: its process, throughput, accuracy, and the time the tool itself reports."""
    found = INNER_TIME[tool].findall(Path(ran.log).read_text(errors="replace"))
    return {
        **ran.to_dict(),
        "inner_s": float(found[-1]) if found else None,
        "gflops_per_s": total_flops / ran.wall_s / 1e9,
        "dice_vs_truth": dice_vs_truth(mask, labels),
        "membrane_fraction": float(mask.mean()),
        "voxel_size_kept": _same_voxel_size(tomo, out_dir),
    }


def compare(mask: np.ndarray, scores: np.ndarray, other_mask: np.ndarray, other_scores: np.ndarray) -> dict:
    """Agreement of a second segmentation with the reference (MemBrain-seg's)."""
    diff = np.abs(scores.astype(np.float64) - other_scores)
    both = mask.sum() + other_mask.sum()
    return {
        "dice_vs_membrain": float(2 * (mask & other_mask).sum() / both) if both else 1.0,
        "max_abs_score_diff": float(diff.max()),
        "mean_abs_score_diff": float(diff.mean()),
        "sign_differs_fraction": float(np.mean((scores > 0) != (other_scores > 0))),
        "mask_differs_fraction": float(np.mean(mask != other_mask)),
    }


def dice_vs_truth(mask: np.ndarray, labels: np.ndarray) -> float:
    """Dice of ``mask`` against label 1, voxels labelled 2 (ignore) excluded from both."""
    valid = labels != 2
    truth, pred = (labels == 1) & valid, mask & valid
    both = truth.sum() + pred.sum()
    return float(2 * (truth & pred).sum() / both) if both else 1.0


def synthetic_tomogram(shape: tuple[int, int, int], seed: int) -> tuple[Path, Path]:
    """A cached synthetic tomogram (10 Å) and its labels, generated by Bilayer's generator."""
    from bilayer.data.synthetic import SynthConfig, generate_tomogram
    from bilayer.io import write_volume

    folder = CACHE_DIR / "tomograms"
    stem = f"synth_{'x'.join(map(str, shape))}_seed{seed}"
    image, labels = folder / f"{stem}.mrc", folder / f"{stem}_labels.mrc"
    if not (image.is_file() and labels.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        tomo = generate_tomogram(SynthConfig(shape=shape, voxel_size=VOXEL_SIZE), seed=seed)
        write_volume(labels, tomo.labels.astype(np.int8), voxel_size=tomo.voxel_size, overwrite=True)
        write_volume(image, tomo.image, voxel_size=tomo.voxel_size, overwrite=True)
    return image, labels


def _membrain_outputs(folder: Path, tomo: Path) -> tuple[np.ndarray, np.ndarray]:
    masks = sorted(folder.glob(f"{tomo.stem}_*_segmented.mrc"))
    scores = folder / f"{tomo.stem}_scores.mrc"
    if len(masks) != 1 or not scores.is_file():
        raise BenchError(f"MemBrain-seg did not write one {tomo.stem}_*_segmented.mrc and {scores.name} in {folder}")
    return _read(masks[0]) > 0, _read(scores)


def _read(path: Path) -> np.ndarray:
    import mrcfile

    with mrcfile.open(path, permissive=True) as f:
        return np.array(f.data)


def _same_voxel_size(tomo: Path, out_dir: Path) -> bool:
    """True if every MRC written in ``out_dir`` has the input's voxel size."""
    import mrcfile

    def size(path: Path) -> tuple:
        with mrcfile.open(path, header_only=True, permissive=True) as f:
            return tuple(np.round([float(f.voxel_size.x), float(f.voxel_size.y), float(f.voxel_size.z)], 3))

    expected = size(tomo)
    return all(size(p) == expected for p in out_dir.glob("*.mrc"))


def format_case(result: dict) -> str:
    """The table of one case as text."""
    shape = "×".join(map(str, result["shape"]))
    lines = [f"\n== {shape} voxels at {VOXEL_SIZE:g} Å, TTA {'on (8 mirrors)' if result['tta'] else 'off'} =="]
    head = (
        f"{'tool':<46}{'windows':>8}{'wall s':>9}{'(inner)':>9}{'peak RSS MB':>13}{'time m/b':>10}{'RSS m/b':>9}"
        f"{'GFLOP/s':>9}{'Dice GT':>9}{'Dice vs m':>10}{'max|Δs|':>9}{'sign≠ %':>9}"
    )
    lines += [head, "-" * len(head)]
    for name, run in result["runs"].items():
        padding, window = run.get("padding", "zeros"), run.get("window", WINDOW)
        settings = f"{run['overlap']:g}, {run['precision']}, {padding}, {window}³"
        label = name if run["tool"] == "membrain-seg" else f"{name} ({settings})"
        inner = f"({run['inner_s']:.1f})" if run["inner_s"] is not None else "?"
        cells = [
            f"{label:<46}",
            f"{run['windows']:>8d}",
            f"{run['wall_s']:>9.1f}",
            f"{inner:>9}",
            f"{run['peak_rss_mb']:>13.0f}",
        ]
        if run["tool"] == "membrain-seg":
            cells += [f"{'':>10}{'':>9}", f"{run['gflops_per_s']:>9.1f}", f"{run['dice_vs_truth']:>9.3f}", f"{'':>28}"]
        else:
            cells += [
                f"{run['time_ratio']:>9.2f}×",
                f"{run['rss_ratio']:>8.2f}×",
                f"{run['gflops_per_s']:>9.1f}",
                f"{run['dice_vs_truth']:>9.3f}",
                f"{run['dice_vs_membrain']:>10.4f}",
                f"{run['max_abs_score_diff']:>9.3g}",
                f"{100 * run['sign_differs_fraction']:>9.3f}",
            ]
        lines.append("".join(cells))
    loads = [f"{n}: {r['load_before'][0]:.1f}→{r['load_after'][0]:.1f}" for n, r in result["runs"].items()]
    lines.append(
        "wall s: the whole child process (imports, checkpoint, I/O), used for ratios and GFLOP/s; (inner): "
        "what the tool reports: membrain-seg's segment() with checkpoint loading, Bilayer's segment_file "
        "without it"
    )
    lines.append(
        "1-min load average before→after each run (2 cores; >2 means another process competed): " + ", ".join(loads)
    )
    if not all(r["voxel_size_kept"] for r in result["runs"].values()):
        lines.append("WARNING: an output MRC does not carry the input's voxel size")
    return "\n".join(lines)


def _machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]}


def _bilayer_version() -> dict:
    import bilayer
    import torch

    rev = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "status", "--porcelain", "--untracked-files=no"],
        check=False,
        capture_output=True,
        text=True,
    )
    return {
        "version": getattr(bilayer, "__version__", "?"),
        "git": rev.stdout.strip(),
        "git_dirty": bool(dirty.stdout.strip()),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    sys.exit(main())
