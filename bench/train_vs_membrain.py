"""Side-by-side training benchmark: Bilayer against MemBrain-seg 0.0.10.

Prints, for the same inputs, each tool's time per augmented 160³ training sample (its default
augmentation pipeline; Bilayer's includes the Fourier amplitude and missing-wedge steps that
MemBrain-seg leaves off by default), its time per training step of the default 91 M-parameter
U-Net (same patch and batch size, deep supervision, Dice + BCE, SGD; on a CPU both run
bfloat16 autocast, which MemBrain-seg's ``precision="16-mixed"`` becomes there), their ratios,
and both tools' Dice and Surface-Dice of the same prediction against the same labels.

    python bench/train_vs_membrain.py                     # 16 samples; steps at 64³ and 96³
    python bench/train_vs_membrain.py --samples 4 --sizes 64 --steps 3     # quicker

Each measurement runs in its own child process (MemBrain-seg in ``bench/.venvs/``, built on
first use); results go to ``bench/results/train-<time>/results.json`` with the child logs.
Run nothing else meanwhile: times on this 2-core machine vary with load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from _membrain_env import BENCH_DIR, CACHE_DIR, BenchError, ensure_membrain_venv, membrain_python, run_measured

PATCH = 160  # MemBrain-seg's training patch edge
VOXEL_SIZE = 10.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=16, help="augmented samples per tool (default 16)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 96], help="training patch edges (default 64 96)")
    p.add_argument("--batch", type=int, default=2, help="patches per step (default 2, MemBrain-seg's)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per size after one warm-up step (default 4)")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    try:
        return _run(args)
    except BenchError as e:
        print(f"train_vs_membrain: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    folder = BENCH_DIR / "results" / f"train-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
    folder.mkdir(parents=True)
    versions = ensure_membrain_venv(folder)
    patch, masks = _inputs(args.seed)
    tools = {"membrain-seg": [str(membrain_python()), str(BENCH_DIR / "_membrain_train.py")],
             "bilayer": [sys.executable, str(BENCH_DIR / "_bilayer_train.py")]}
    results: dict = {"versions": versions, "augment": {}, "step": {}, "metrics": {}}
    for tool, cmd in tools.items():
        results["augment"][tool] = _child(folder, f"augment-{tool}", cmd + ["augment", patch, args.samples, args.seed])
        for size in args.sizes:
            run = _child(folder, f"step{size}-{tool}", cmd + ["step", size, args.batch, args.steps + 1])
            run["seconds"] = run["seconds"][1:]  # the first step warms up (allocations, oneDNN kernels)
            results["step"].setdefault(str(size), {})[tool] = run
        results["metrics"][tool] = _child(folder, f"metrics-{tool}", cmd + ["metrics", masks])
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    print(_table(results, args))
    print(f"\nresults and logs: {folder}")
    return 0


def _child(folder: Path, name: str, argv: list) -> dict:
    ran = run_measured(argv, folder / f"{name}.log").check(name)
    last = Path(ran.log).read_text().strip().splitlines()[-1]
    return {**json.loads(last), "peak_rss_mb": ran.peak_rss_mb, "load": [ran.load_before[0], ran.load_after[0]]}


def _inputs(seed: int) -> tuple[Path, Path]:
    """A synthetic 160³ training patch, and a prediction/label pair for the metrics (cached)."""
    from bilayer.data.synthetic import SynthConfig, generate_tomogram
    from scipy import ndimage

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    patch, masks = CACHE_DIR / f"train_patch_{PATCH}_seed{seed}.npz", CACHE_DIR / f"metric_masks_seed{seed}.npz"
    if not patch.exists():
        scene = generate_tomogram(SynthConfig(shape=(PATCH,) * 3, voxel_size=VOXEL_SIZE), seed=seed)
        np.savez(patch, image=scene.image.astype(np.float32), label=scene.labels.astype(np.uint8))
    if not masks.exists():
        scene = generate_tomogram(SynthConfig(shape=(96, 128, 128), voxel_size=VOXEL_SIZE), seed=seed + 1)
        truth = scene.labels == 1
        pred = ndimage.binary_dilation(np.roll(truth, 1, axis=2), iterations=1)  # shifted, thicker
        pred[:, :20] = False  # a missed region
        pred[40:44, 60:70, 60:70] = True  # a false blob
        np.savez(masks, pred=pred.astype(np.uint8), gt=scene.labels.astype(np.uint8))
    return patch, masks


def _table(results: dict, args: argparse.Namespace) -> str:
    lines = [f"\n== augmentation of one {PATCH}³ sample ({args.samples} samples, seconds) =="]
    aug = {t: r["seconds"] for t, r in results["augment"].items()}
    for tool, times in aug.items():
        lines.append(f"{tool:<14} mean {statistics.mean(times):7.3f}  median {statistics.median(times):7.3f}  "
                     f"max {max(times):7.3f}")
    lines.append(f"ratio membrain-seg / bilayer: mean {statistics.mean(aug['membrain-seg']) / statistics.mean(aug['bilayer']):.2f}×"
                 f", median {statistics.median(aug['membrain-seg']) / statistics.median(aug['bilayer']):.2f}×")
    lines.append(f"\n== training step, default U-Net, batch {args.batch}, bfloat16 autocast (seconds per step) ==")
    for size, runs in results["step"].items():
        m, b = (statistics.mean(runs[t]["seconds"]) for t in ("membrain-seg", "bilayer"))
        lines.append(f"{size}³  membrain-seg {m:7.2f}  bilayer {b:7.2f}  ratio {m / b:.2f}×  "
                     f"(peak RSS {runs['membrain-seg']['peak_rss_mb']:.0f} / {runs['bilayer']['peak_rss_mb']:.0f} MB)")
    lines.append("\n== metrics of one prediction against its labels (ignore label excluded) ==")
    for tool, r in results["metrics"].items():
        lines.append(f"{tool:<14} Dice {r['dice']:.10f}  Surface-Dice {r['surface_dice']:.10f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
