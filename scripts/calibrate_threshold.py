"""Pick the score threshold of a model on validation tomograms: the one of best mean Dice + Surface-Dice.

    bilayer segment data/default/imagesVal/*.mrc --model M --out runs/val --scores --no-tta --no-preview
    python scripts/calibrate_threshold.py runs/val data/default/labelsVal [more label folders]

reads ``<stem>_0000_scores.mrc`` from the predictions folder for every ``<stem>.mrc`` label
(0 background, 1 membrane, 2 ignored) and prints the mean scores at each threshold and the
best one, which ``export_default_model.py --threshold`` folds into the model's output bias.
Use validation data only, never the held-out set the model is judged on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bilayer.io import read_volume
from bilayer.metrics import dice_counts, surface_dice_counts
from bilayer.postprocess.skeleton import skeletonize

THRESHOLDS = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("predictions", type=Path, help="folder of <stem>_0000_scores.mrc (bilayer segment --scores)")
    p.add_argument("labels", type=Path, nargs="+", help="folders of <stem>.mrc labels")
    p.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS, help="thresholds to try")
    args = p.parse_args(argv)
    table = []
    for folder in args.labels:
        for label_path in sorted(folder.glob("*.mrc")):
            scores_path = args.predictions / f"{label_path.stem}_0000_scores.mrc"
            if not scores_path.is_file():
                p.error(f"{scores_path} is missing: segment {label_path.stem}_0000.mrc with --scores first")
            labels = np.asarray(read_volume(label_path, voxel_size=1.0).data)
            if not (labels == 1).any():
                continue  # a scene without membranes has no Dice to average
            scores = np.asarray(read_volume(scores_path, voxel_size=1.0).data)
            label_skeleton = skeletonize(labels == 1)  # once per tomogram, not once per threshold
            row = [(dice_counts(scores > t, labels).dice,
                    surface_dice_counts(scores > t, labels, label_skeleton=label_skeleton).surface_dice)
                   for t in args.thresholds]
            table.append(row)
            print(f"{label_path.name}: " + " ".join(f"{t:g}:{d:.3f}/{sd:.3f}" for t, (d, sd) in zip(args.thresholds, row)),
                  flush=True)
    if not table:
        p.error("no label file with membrane voxels found")
    means = np.asarray(table).mean(axis=0)
    for t, (d, sd) in zip(args.thresholds, means):
        print(f"threshold {t:g}: Dice {d:.4f}  Surface-Dice {sd:.4f}  mean {(d + sd) / 2:.4f}")
    best = args.thresholds[int(np.argmax(means.sum(axis=1)))]
    print(f"best threshold over {len(table)} tomograms: {best:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
