#!/usr/bin/env python
"""Score a membrane-segmentation model on hand-written "foreign" phantoms (tests/foreign_phantoms.py).

The phantoms are not made by ``bilayer.data.synthetic`` (the default model's training generator):
spheres, ellipsoids, sheets, tubes and virions with hard negatives, drawn as one dark band or two
dark lines, at several voxel sizes and noise levels. Each phantom is segmented with
``bilayer.segment`` and scored with ``bilayer.metrics.segmentation_scores`` (labels 2 ignored),
plus, for virions, the envelope recall (label voxels with a predicted voxel within one voxel,
26-neighbourhood) and the fraction of the prediction lying in an envelope's lumen deeper than 3 nm.

    python scripts/evaluate_foreign.py                      # default model, no TTA, 90 phantoms
    python scripts/evaluate_foreign.py --model m.bilayer.pt --tta --families virion --previews

Prints tables (mean Dice / Surface-Dice per family × rendering, per voxel size, per noise level,
overall) and writes one CSV row per phantom.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.foreign_phantoms import (  # noqa: E402
    DEFAULT_SHAPE,
    FAMILIES,
    LABEL_HALF_WIDTH,
    NOISE_SNR,
    RENDERINGS,
    VOXEL_SIZES,
    Phantom,
    foreign_grid,
    make_phantom,
)

COLUMNS = [
    "name", "family", "rendering", "voxel_size", "noise", "seed", "snr",
    "dice", "surface_dice", "precision", "recall", "skeleton_precision", "skeleton_recall",
    "envelope_recall", "lumen_fp_fraction", "spike_predicted", "core_predicted", "face_on_recall",
    "label_voxels", "ignore_voxels", "pred_voxels", "seconds", "params",
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (Bilayer's or MemBrain-seg's .ckpt); "
                        "default: the embedded default model")
    parser.add_argument("--tta", action="store_true", help="8-fold mirroring test-time augmentation (off by default)")
    parser.add_argument("--out", type=Path, default=Path("foreign_eval"), help="folder for the CSV and previews")
    parser.add_argument("--csv", type=Path, default=None, help="CSV file (default: OUT/foreign.csv)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--renderings", nargs="+", default=list(RENDERINGS), choices=RENDERINGS)
    parser.add_argument("--voxel-sizes", nargs="+", type=float, default=list(VOXEL_SIZES), metavar="Å")
    parser.add_argument("--noise", nargs="+", default=list(NOISE_SNR), choices=list(NOISE_SNR))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", nargs=3, type=int, default=list(DEFAULT_SHAPE), metavar=("Z", "Y", "X"))
    parser.add_argument("--label-half-width", type=float, default=LABEL_HALF_WIDTH, metavar="Å",
                        help=f"membrane label half-width (default {LABEL_HALF_WIDTH:g} Å)")
    parser.add_argument("--blur", type=float, default=0.0, metavar="Å", help="Gaussian blur σ before noise")
    parser.add_argument("--previews", action="store_true", help="a PNG per (family, rendering) in OUT")
    parser.add_argument("--device", default=None, help="torch device (default: auto)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    return parser.parse_args(argv)


def _fraction(part: np.ndarray, whole: np.ndarray) -> float:
    """``|part & whole| / |whole|``; NaN when ``whole`` is empty."""
    n = int(np.count_nonzero(whole))
    return float(np.count_nonzero(part & whole) / n) if n else math.nan


def score(phantom: Phantom, pred: np.ndarray) -> dict[str, float]:
    """All scores of a binary prediction on one phantom."""
    from bilayer.metrics import segmentation_scores

    scores = segmentation_scores(pred, phantom.labels)
    membrane = phantom.labels == 1
    out = dict(scores)
    out["face_on_recall"] = _fraction(pred, phantom.masks.get("face_on", np.zeros_like(pred)))
    out["envelope_recall"] = out["lumen_fp_fraction"] = math.nan
    out["spike_predicted"] = out["core_predicted"] = math.nan
    if phantom.family == "virion":
        near = ndimage.binary_dilation(pred, structure=np.ones((3, 3, 3), dtype=bool))
        out["envelope_recall"] = _fraction(near, membrane)
        n_pred = int(np.count_nonzero(pred))
        out["lumen_fp_fraction"] = float(np.count_nonzero(pred & phantom.masks["lumen"]) / n_pred) if n_pred else 0.0
        out["spike_predicted"] = _fraction(pred, phantom.masks["spikes"])
        out["core_predicted"] = _fraction(pred, phantom.masks["core"])
    out["label_voxels"] = int(np.count_nonzero(membrane))
    out["ignore_voxels"] = int(np.count_nonzero(phantom.labels == 2))
    out["pred_voxels"] = int(np.count_nonzero(pred))
    return out


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else math.nan


def table(rows: list[dict], keys: Sequence[str], metrics: Sequence[str], title: str) -> str:
    """A text table of metric means grouped by ``keys``."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    head = [*keys, "n", *metrics]
    lines = [[*map(str, g), str(len(rs)), *(f"{_mean(r[m] for r in rs):.3f}" for m in metrics)]
             for g, rs in groups.items()]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i < len(keys) else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [title, fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def preview_slice(labels: np.ndarray) -> int:
    """The central z, or the z with the most membrane labels where the central one has under a quarter of that."""
    counts = np.count_nonzero(labels == 1, axis=(1, 2))
    central = labels.shape[0] // 2
    return central if counts[central] >= 0.25 * counts.max() else int(np.argmax(counts))


def write_preview(path: Path, family: str, rendering: str, panels: list[dict]) -> None:
    """XY slices (rows: voxel size, columns: noise) with the predicted mask and label contours.

    The slice is the central one unless it shows little membrane (:func:`preview_slice`); then the
    panel's title gives its z.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({p["voxel_size"] for p in panels})
    noises = [n for n in NOISE_SNR if any(p["noise"] == n for p in panels)]
    fig, axes = plt.subplots(len(sizes), len(noises), figsize=(3.3 * len(noises), 3.5 * len(sizes)),
                             squeeze=False)
    for p in panels:
        ax = axes[sizes.index(p["voxel_size"])][noises.index(p["noise"])]
        ax.imshow(p["image"], cmap="gray", interpolation="nearest")
        if (p["labels"] == 1).any():
            ax.contour(p["labels"] == 1, levels=[0.5], colors="lime", linewidths=0.6)
        if (p["labels"] == 2).any():
            ax.contour(p["labels"] == 2, levels=[0.5], colors="cyan", linewidths=0.6)
        if p["pred"].any():
            ax.contour(p["pred"], levels=[0.5], colors="red", linewidths=0.8)
        where = "" if p["central"] else f" (z {p['z']})"
        ax.set_title(f"{p['voxel_size']:g} Å, {p['noise']}{where}: Dice {p['dice']:.2f} SD {p['surface_dice']:.2f}",
                     fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{family} / {rendering}: central XY slice (else the z named)\n"
                 "red prediction, green label, cyan ignore",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    import bilayer
    from bilayer.infer import InferenceConfig, Predictor

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.csv or args.out / "foreign.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.from_checkpoint(args.model, InferenceConfig(tta=args.tta), args.device)
    print(f"model {predictor.source} on {predictor.device}, TTA {'on' if args.tta else 'off'}, seed {args.seed}, "
          f"label half-width {args.label_half_width:g} Å", flush=True)

    rows: list[dict] = []
    panels: dict[tuple[str, str], list[dict]] = defaultdict(list)
    combos = foreign_grid(args.families, args.renderings, args.voxel_sizes, args.noise)
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for i, (family, rendering, vs, noise) in enumerate(combos, 1):
            phantom = make_phantom(family, rendering, vs, noise, args.seed, args.shape, args.blur,
                                   args.label_half_width)
            start = time.perf_counter()
            pred = np.asarray(bilayer.segment(phantom.image, predictor, voxel_size=vs).mask.data) > 0
            seconds = time.perf_counter() - start
            row = {"name": phantom.name, "family": family, "rendering": rendering, "voxel_size": vs,
                   "noise": noise, "seed": args.seed, "snr": NOISE_SNR[noise], **score(phantom, pred),
                   "seconds": round(seconds, 2), "params": json.dumps(phantom.params, sort_keys=True)}
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
            handle.flush()
            rows.append(row)
            print(f"[{i}/{len(combos)}] {phantom.name}: Dice {row['dice']:.3f} Surface-Dice {row['surface_dice']:.3f} "
                  f"P {row['precision']:.3f} R {row['recall']:.3f} ({seconds:.1f} s)", flush=True)
            if args.previews:
                z = preview_slice(phantom.labels)
                panels[(family, rendering)].append({
                    "voxel_size": vs, "noise": noise, "z": z, "central": z == phantom.image.shape[0] // 2,
                    "image": phantom.image[z], "labels": phantom.labels[z], "pred": pred[z], "dice": row["dice"],
                    "surface_dice": row["surface_dice"]})

    metrics = ["dice", "surface_dice", "precision", "recall"]
    print()
    print(table(rows, ["family", "rendering"], metrics, "Per family and rendering"))
    print()
    print(table(rows, ["voxel_size"], metrics, "Per voxel size (Å)"))
    print()
    print(table(rows, ["noise"], metrics, "Per noise level"))
    print()
    print(table(rows, ["family", "voxel_size"], ["dice", "surface_dice"], "Per family and voxel size"))
    virions = [r for r in rows if r["family"] == "virion"]
    if virions:
        print()
        print(table(virions, ["rendering", "voxel_size"],
                    ["envelope_recall", "lumen_fp_fraction", "spike_predicted", "core_predicted"],
                    "Virions: envelope recall (±1 voxel), prediction in the lumen (>3 nm deep), "
                    "spike and core voxels predicted"))
    print()
    print(f"Overall ({len(rows)} phantoms): Dice {_mean(r['dice'] for r in rows):.3f}, Surface-Dice "
          f"{_mean(r['surface_dice'] for r in rows):.3f}, precision {_mean(r['precision'] for r in rows):.3f}, "
          f"recall {_mean(r['recall'] for r in rows):.3f}, "
          f"face-on recall {_mean(r['face_on_recall'] for r in rows):.3f}, "
          f"{sum(r['seconds'] for r in rows):.0f} s segmenting")
    print(f"CSV: {csv_path}")

    if args.previews:
        for (family, rendering), items in panels.items():
            path = args.out / f"foreign_{family}_{rendering}.png"
            write_preview(path, family, rendering, items)
        print(f"previews: {args.out}/foreign_<family>_<rendering>.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
