#!/usr/bin/env python
"""MemBrain v2's annotation loop, end to end on a synthetic tomogram (docs/annotation_loop.md).

Segment with the embedded default model → suggest the patches where it is least sure → extract
them with the model's own mask as labels → correct them (here from the ground truth, written as
the Add/Remove/Ignore NRRD masks an annotator would save from MITK) → merge → fine-tune briefly →
segment again, and score the masks before and after against the ground truth: over the whole
tomogram, inside the corrected patches and outside them (regions the fine-tune never saw).

Every step is a ``bilayer`` command, printed before it runs; only the "annotator" and the scoring
are Python. The tomogram is drawn at a held-out generator setting: 5-8 membranes labelled as
2.5 nm bands (``label_thickness`` 25 Å, as thin as many hand annotations) where the default model
learnt the generator's ~5 nm bands (leaflets and their width), so its masks are about twice as
thick as this "annotator" wants and there is something to learn; the imaging is the generator's
default. Fine-tuning uses the corrected patches only, with a high learning rate for few steps.

    nice -n 10 python scripts/annotation_loop_demo.py --out demo_loop      # 2.5-5 min on 2 CPU cores
    python scripts/annotation_loop_demo.py --out demo_loop --preview docs/annotation_loop.png

Uses ``bilayer segment --uncertainty`` (the spread of the TTA predictions) where this Bilayer has
it (both segmentations then use TTA), else the scores without TTA (``bilayer patches suggest
--from-scores``: closeness to the threshold); the printed commands say which.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: Held-out generator settings (SynthConfig fields): a thinner label band than the model learnt.
HELDOUT = {
    "empty_probability": 0.0,
    "membrane_count_range": [5, 8],
    "label_thickness": 25.0,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_loop"), help="Work folder (made; must be new or empty).")
    parser.add_argument("--seed", type=int, default=201, help="Generator seed of the tomogram.")
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 192, 192], metavar=("Z", "Y", "X"))
    parser.add_argument("--count", type=int, default=4, help="Patches to correct.")
    parser.add_argument("--size", type=int, default=64, help="Patch edge in voxels.")
    parser.add_argument("--border", type=int, default=6, help="Ignore border of each patch (MemBrain-seg: 16 of 160).")
    parser.add_argument("--patch-size", type=int, default=64, help="Fine-tuning crop edge (a multiple of 32).")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=0.002, help="Fine-tuning learning rate (v4's last stage used it).")
    parser.add_argument("--preview", type=Path, default=None, help="Before/after PNG [default: OUT/before_after.png].")
    args = parser.parse_args(argv)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        parser.error(f"{out} is not empty; give a new --out folder")
    started = time.perf_counter()
    uncertainty = _has_uncertainty()
    (out / "heldout.json").write_text(json.dumps(HELDOUT, indent=2) + "\n")
    stem = f"loop_{args.seed:04d}"
    tomo, truth = out / f"{stem}.mrc", out / f"{stem}_labels.mrc"
    z, y, x = (str(n) for n in args.shape)
    _run("synth", "--out", out, "--seed", args.seed, "--name", "loop", "--shape", z, y, x, "--voxel-size", "10",
         "--config", out / "heldout.json", "--no-preview")
    first = ["--uncertainty"] if uncertainty else ["--scores", "--no-tta"]
    _run("segment", tomo, "--out", out / "before", *first, "--no-preview")
    source = out / "before" / (f"{stem}_uncertainty.mrc" if uncertainty else f"{stem}_scores.mrc")
    _run("patches", "suggest", source, *([] if uncertainty else ["--from-scores"]), "--count", args.count,
         "--size", args.size, "--out", out / "suggested.csv")
    _run("patches", "extract", tomo, "--labels", out / "before" / f"{stem}_seg.mrc", "--at", out / "suggested.csv",
         "--size", args.size, "--border", args.border, "--out", out / "dataset")
    boxes = _annotate(out / "dataset", truth, out / "corrections")
    _run("patches", "merge", out / "dataset", "--corrections", out / "corrections")
    from bilayer.model.zoo import default_model_path

    _run("finetune", out / "dataset", "--model", default_model_path(), "--out", out / "run", "--patch-size",
         args.patch_size, "--batch-size", "2", "--epochs", args.epochs, "--steps-per-epoch", args.steps_per_epoch,
         "--lr", args.lr, "--seed", "0", "--no-compile")  # compiling takes longer than these few steps
    _run("segment", tomo, "--model", out / "run" / "last.bilayer.pt", "--out", out / "after",
         *([] if uncertainty else ["--no-tta"]), "--no-preview")
    scores = _score(truth, out / "before" / f"{stem}_seg.mrc", out / "after" / f"{stem}_seg.mrc", boxes)
    scores["minutes"] = round((time.perf_counter() - started) / 60, 1)
    scores["suggested_from"] = "uncertainty" if uncertainty else "scores (-|score|, no TTA)"
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores, indent=2))
    _preview(args.preview or out / "before_after.png", tomo, truth, out, stem, boxes)
    return 0


def _run(*argv: object) -> None:
    command = ["bilayer", *(str(a) for a in argv)]
    print("$ " + shlex.join(command), flush=True)
    subprocess.run([sys.executable, "-m", "bilayer", *command[1:]], check=True)


def _has_uncertainty() -> bool:
    shown = subprocess.run([sys.executable, "-m", "bilayer", "segment", "--help"], check=False, capture_output=True,
                           text=True)
    return "--uncertainty" in shown.stdout


def _annotate(dataset: Path, truth_path: Path, corrections: Path) -> list[tuple[int, ...]]:
    """The annotator: per patch, Add/Remove/Ignore NRRD masks that turn the model's labels into the
    ground truth; returns each patch's box (z0, y0, x0, size)."""
    import nrrd
    from bilayer.annotation.extract import read_patch_record
    from bilayer.io import read_volume

    truth = read_volume(truth_path).data
    boxes = []
    for label_path in sorted((dataset / "labelsTr").iterdir()):
        record = read_patch_record(label_path)
        z0, y0, x0 = record.start
        box = np.s_[z0:z0 + record.size, y0:y0 + record.size, x0:x0 + record.size]
        model, want = read_volume(label_path).data, truth[box]
        folder = corrections / label_path.name.removesuffix(".mrc")
        folder.mkdir(parents=True)
        for name, mask in (("Add1", (want == 1) & (model != 1)), ("Remove1", (want == 0) & (model == 1)),
                           ("Ignore1", want == 2)):
            nrrd.write(str(folder / f"{name}.nrrd"), mask.astype(np.uint8), index_order="C")
        boxes.append((z0, y0, x0, record.size))
    return boxes


def _score(truth_path: Path, before: Path, after: Path, boxes: list[tuple[int, ...]]) -> dict:
    from bilayer.io import read_volume
    from bilayer.metrics import dice_counts, segmentation_scores

    truth = np.asarray(read_volume(truth_path).data)
    inside = np.zeros(truth.shape, dtype=bool)
    for z0, y0, x0, size in boxes:
        inside[z0:z0 + size, y0:y0 + size, x0:x0 + size] = True
    result: dict = {"patch_voxels_fraction": round(float(inside.mean()), 3)}
    for when, path in (("before", before), ("after", after)):
        mask = np.asarray(read_volume(path).data) > 0
        whole = segmentation_scores(mask, truth)
        result[when] = {
            "dice": round(whole["dice"], 3), "surface_dice": round(whole["surface_dice"], 3),
            "precision": round(whole["precision"], 3), "recall": round(whole["recall"], 3),
            "dice_inside_patches": round(dice_counts(mask, np.where(inside, truth, 2)).dice, 3),
            "dice_outside_patches": round(dice_counts(mask, np.where(inside, 2, truth)).dice, 3),
        }
    return result


def _preview(path: Path, tomo_path: Path, truth_path: Path, out: Path, stem: str, boxes: list[tuple[int, ...]]) -> None:
    """Tomogram, ground truth, mask before and after on the section through the first patch's middle,
    the corrected patches outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bilayer.io import atomic_open, read_volume
    from matplotlib.patches import Rectangle

    z = boxes[0][0] + boxes[0][3] // 2
    image = np.asarray(read_volume(tomo_path).data[max(0, z - 2):z + 3]).mean(axis=0)
    panels = [("tomogram (5-section average)", None), ("ground truth", read_volume(truth_path).data[z]),
              ("before: default model", read_volume(out / "before" / f"{stem}_seg.mrc").data[z]),
              ("after: fine-tuned on the patches", read_volume(out / "after" / f"{stem}_seg.mrc").data[z])]
    low, high = np.percentile(image, (1, 99))
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    for ax, (title, overlay) in zip(axes, panels):
        ax.imshow(image, cmap="gray", vmin=low, vmax=high)
        if overlay is not None:
            shown = np.ma.masked_where(np.asarray(overlay) != 1, np.ones(overlay.shape))
            ax.imshow(shown, cmap="autumn", alpha=0.6, vmin=0, vmax=1)
        for z0, y0, x0, size in boxes:
            if z0 <= z < z0 + size:
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), size, size, fill=False, color="cyan", lw=1.2))
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    fig.suptitle(f"{stem}.mrc, section z={z}; cyan: patches corrected and fine-tuned on", fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    with atomic_open(path, overwrite=True) as f:
        f.write(buffer.getvalue())
    print(f"preview: {path}")


if __name__ == "__main__":
    sys.exit(main())
