"""Write a synthetic training set in MemBrain-seg's folder layout, from Bilayer's generator.

    python scripts/make_synthetic_dataset.py configs/default_synth.yaml data/synthetic --train 400 --val 16
    python scripts/make_synthetic_dataset.py configs/default_synth.yaml data/heldout --val 24 --section heldout

The YAML file holds one mapping of generator settings (SynthConfig fields) per section
(``train``, ``heldout``, ...); ``--section`` picks the one for the files written (default
``train``). Tomogram ``i`` of a split uses seed ``SEED + i`` (validation: ``SEED + 1_000_000 + i``),
so a set can be rebuilt exactly. Files: ``imagesTr/synth_NNNNN_0000.mrc`` (float32, the
scene's voxel size in the header) and ``labelsTr/synth_NNNNN.mrc`` (int8: 0, 1, 2), the same
under ``imagesVal/``/``labelsVal/``, and ``dataset.json`` with the settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

VAL_SEED_OFFSET = 1_000_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path, help="YAML file with generator settings per section")
    p.add_argument("out", type=Path, help="dataset folder to write")
    p.add_argument("--section", default="train", help="section of the YAML file to use (default: train)")
    p.add_argument("--train", type=int, default=0, help="training tomograms (imagesTr/, labelsTr/)")
    p.add_argument("--val", type=int, default=0, help="validation tomograms (imagesVal/, labelsVal/)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = p.parse_args(argv)
    settings = yaml.safe_load(args.config.read_text())[args.section]
    jobs = [("Tr", args.seed + i, i) for i in range(args.train)]
    jobs += [("Val", args.seed + VAL_SEED_OFFSET + i, i) for i in range(args.val)]
    for split in ("Tr", "Val"):
        for kind in ("images", "labels"):
            (args.out / f"{kind}{split}").mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers) as pool:
        for line in pool.map(_write, [(args.out, settings, *job) for job in jobs]):
            print(line, flush=True)
    record = {"config": str(args.config), "section": args.section, "settings": settings, "seed": args.seed,
              "train": args.train, "val": args.val}
    (args.out / "dataset.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _write(job: tuple) -> str:
    from bilayer.data.synthetic import SynthConfig, generate_tomogram
    from bilayer.io import write_volume

    out, settings, split, seed, index = job
    scene = generate_tomogram(SynthConfig.from_dict(settings), seed=seed)
    name = f"synth_{index:05d}"
    label = [f"bilayer synthetic seed {seed}"]
    write_volume(out / f"images{split}" / f"{name}_0000.mrc", scene.image, voxel_size=scene.voxel_size,
                 labels=label, overwrite=True)
    write_volume(out / f"labels{split}" / f"{name}.mrc", scene.labels.astype("int8"), voxel_size=scene.voxel_size,
                 labels=label, overwrite=True)
    membrane = float((scene.labels == 1).mean())
    return f"{split} {name} seed {seed}: {scene.voxel_size:.1f} Å, membrane {100 * membrane:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
