"""Write a synthetic training set in MemBrain-seg's folder layout, from Bilayer's generator.

    python scripts/make_synthetic_dataset.py configs/default_synth.yaml data/synthetic --train 400 --val 16
    python scripts/make_synthetic_dataset.py configs/default_synth.yaml data/heldout --val 24 --section heldout

The YAML file holds one mapping of generator settings (SynthConfig fields) per section
(``train``, ``heldout``, ...); ``--section`` picks the one for the files written (default
``train``). Tomogram ``i`` of a split uses seed ``SEED + i`` (validation: ``SEED + 1_000_000 + i``,
``bilayer.data.layout.VAL_SEED_OFFSET``), so a set can be rebuilt exactly. Files, in the engine's
dataset layout (``bilayer.data.layout.write_pair``): ``imagesTr/synth_NNNNN_0000.mrc`` (float32,
the scene's voxel size in the header) and ``labelsTr/synth_NNNNN.mrc`` (int8: 0, 1, 2), the
same under ``imagesVal/``/``labelsVal/``, and ``dataset.json`` with the settings. Running it
again over the same folder rewrites those cases.

``--resample-to 10`` shows the network what ``bilayer segment`` feeds it: each scene is drawn
at its own voxel size (from ``voxel_size_range``) on a cube covering the section's ``shape`` at
the target voxel size, then resampled to it, the image as the predictor does (Fourier
cropping or padding) and the labels by trilinear weights of each class.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from bilayer.data.layout import Split


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path, help="YAML file with generator settings per section")
    p.add_argument("out", type=Path, help="dataset folder to write")
    p.add_argument("--section", default="train", help="section of the YAML file to use (default: train)")
    p.add_argument("--train", type=int, default=0, help="training tomograms (imagesTr/, labelsTr/)")
    p.add_argument("--val", type=int, default=0, help="validation tomograms (imagesVal/, labelsVal/)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--resample-to", type=float, default=None, metavar="VOXEL_SIZE",
                   help="draw each scene at its own voxel size, then resample it to this one (Å)")
    args = p.parse_args(argv)
    settings = yaml.safe_load(args.config.read_text())[args.section]
    if args.resample_to is not None:
        shape = settings.get("shape", [128, 128, 128])
        if len(set(shape)) != 1 or not args.resample_to > 0:
            p.error(f"--resample-to needs a cubic shape in section {args.section!r} and a positive voxel size")
        settings = {**settings, "resample_to": args.resample_to}
    jobs = [(split, args.seed + split.seed_offset + i, i)
            for split, count in ((Split.TRAIN, args.train), (Split.VAL, args.val)) for i in range(count)]
    args.out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers) as pool:
        for line in pool.map(_write, [(args.out, settings, *job) for job in jobs]):
            print(line, flush=True)
    record = {"config": str(args.config), "section": args.section, "settings": settings, "seed": args.seed,
              "train": args.train, "val": args.val}
    (args.out / "dataset.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _write(job: tuple) -> str:
    from bilayer.data.layout import write_pair
    from bilayer.data.synthetic import SynthConfig, generate_tomogram

    out, settings, split, seed, index = job
    settings = dict(settings)
    target = settings.pop("resample_to", None)
    if target is not None:
        low, high = settings.get("voxel_size_range", SynthConfig.voxel_size_range)
        drawn = float(np.random.default_rng([seed, 7]).uniform(low, high))
        edge = int(round(settings.get("shape", [128])[0] * target / drawn))
        settings.update(voxel_size=drawn, shape=[edge + edge % 2] * 3)
    scene = generate_tomogram(SynthConfig.from_dict(settings), seed=seed)
    image, labels, voxel_size = scene.image, scene.labels, scene.voxel_size
    if target is not None:
        size = int(round(image.shape[0] * voxel_size / target))
        image, labels, voxel_size = _resample(image, size), _resample_labels(labels, size), target
    name = f"synth_{index:05d}"
    label = [f"bilayer synthetic seed {seed}" + (f", drawn at {scene.voxel_size:.2f} Å" if target else "")]
    write_pair(out, split, name, image, labels, voxel_size=voxel_size, header_labels=label, overwrite=True)
    membrane = float((labels == 1).mean())
    return f"{split.value} {name} seed {seed}: {scene.voxel_size:.1f} Å, membrane {100 * membrane:.1f}%"


def _resample(image: np.ndarray, size: int) -> np.ndarray:
    """The cube ``image`` at ``size`` voxels a side, resampled as the predictor resamples windows."""
    import torch

    from bilayer.preprocess.normalise import standardisation
    from bilayer.preprocess.pixel_size import fourier_resample

    x = fourier_resample(torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None], size)[0, 0].numpy()
    return standardisation(x).apply(x)


def _resample_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Labels 0/1/2 at ``size`` voxels a side: each voxel takes the class of largest trilinear weight."""
    import torch
    import torch.nn.functional as F

    onehot = torch.stack([torch.from_numpy(labels == c) for c in (0, 1, 2)]).float()[None]
    weights = F.interpolate(onehot, size=(size,) * 3, mode="trilinear", align_corners=False)[0]
    return weights.argmax(0).numpy().astype(np.uint8)


if __name__ == "__main__":
    sys.exit(main())
