#!/usr/bin/env python
"""Score a model's virion envelopes on a real tomogram slice with a hand-drawn outline.

The slice is cryoCompare's ``TS_001.133.tif`` (CryoET Data Portal dataset 10006, SARS-CoV-2
virions, Ke et al. 2020; shipped in ``tests/data/real``) and its ground truth
``TS_001.133_ground_truth.tif``, a filled outline of the three intact virions. The envelope is the
outline's boundary (one pixel); the slice is extruded along z (membranes become walls seen
edge-on, as in a tomogram's central slice), optionally binned to a coarser voxel size (the
real virion tomograms users segment are at 10–20 Å), segmented with ``bilayer.segment``, and
the central section of the mask is scored:

- envelope recall: envelope pixels with a predicted pixel within ``--tolerance`` Å;
- lumen fraction: predicted pixels inside a virion deeper than 3 nm (the protein cores);
- precision near the virions: of the predicted pixels within 15 nm of the outline, the share
  within the tolerance of the envelope (the cell edge elsewhere is a real membrane the outline
  does not draw, so it is left out).

    python scripts/evaluate_real_virions.py [--model M] [--voxel-size 6.5] [--bin 1 2.5] [--tta] [--png out.png]

The slice carries no pixel size; 6.5 Å is inferred from the virions' size (about 90 nm across,
~140 pixels) and is an assumption.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real"
SLICE = REAL / "cryocompare_sars2_virions_slice2d_928x960.tif"
OUTLINE = REAL / "cryocompare_sars2_virions_slice2d_928x960_outline.tif"


def read_tif(path: Path) -> np.ndarray:
    """One 2-D TIFF page as a numpy array (matplotlib reads TIFF through Pillow)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def binned(image: np.ndarray, factor: float) -> np.ndarray:
    """The image at ``factor`` times the pixel size: Fourier cropping (no aliasing), as binning a
    tomogram does."""
    if factor == 1:
        return image.astype(np.float32)
    shape = tuple(int(round(n / factor)) for n in image.shape)
    spectrum = np.fft.fftshift(np.fft.fft2(image.astype(np.float64)))
    centre = [n // 2 for n in image.shape]
    crop = tuple(slice(c - s // 2, c - s // 2 + s) for c, s in zip(centre, shape, strict=True))
    out = np.fft.ifft2(np.fft.ifftshift(spectrum[crop])).real
    return out.astype(np.float32)


def score(mask: np.ndarray, outline: np.ndarray, pixel: float, tolerance: float) -> dict[str, float]:
    """Envelope recall, lumen fraction and precision near the virions of a 2-D mask, pixel in Å."""
    envelope = outline & ~ndimage.binary_erosion(outline)
    to_envelope = ndimage.distance_transform_edt(~envelope) * pixel
    to_mask = ndimage.distance_transform_edt(~mask) * pixel if mask.any() else np.full(mask.shape, np.inf)
    inside_depth = ndimage.distance_transform_edt(outline) * pixel
    near = to_envelope <= 150.0
    predicted_near = mask & near
    return {
        "envelope_recall": float((to_mask[envelope] <= tolerance).mean()),
        "lumen_fraction": float((mask & (inside_depth > 30.0)).sum() / max(mask.sum(), 1)),
        "precision_near": float((to_envelope[predicted_near] <= tolerance).mean()) if predicted_near.any() else 0.0,
        "marked": float(mask.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint (default: the embedded default model)")
    p.add_argument("--voxel-size", type=float, default=6.5, help="the slice's assumed pixel size, Å")
    p.add_argument("--bin", type=float, nargs="+", default=[1.0, 2.5], help="binning factors to score")
    p.add_argument("--sections", type=int, default=48, help="sections of the extruded volume")
    p.add_argument("--tolerance", type=float, default=20.0, help="distance counted as a hit, Å")
    p.add_argument("--tta", action="store_true", help="8-fold test-time augmentation")
    p.add_argument("--png", type=Path, default=None, help="write the central sections with the masks")
    args = p.parse_args(argv)

    import bilayer
    from bilayer.infer import InferenceConfig, Predictor

    predictor = Predictor.from_checkpoint(args.model, InferenceConfig(tta=args.tta))
    image, outline = read_tif(SLICE), read_tif(OUTLINE) > 0
    shown = []
    for factor in args.bin:
        pixel = args.voxel_size * factor
        small = binned(image, factor)
        small_outline = binned(outline.astype(np.float32), factor) > 0.5
        volume = np.repeat(small[None], args.sections, axis=0)
        mask = np.asarray(bilayer.segment(volume, predictor, voxel_size=pixel).mask.data)[args.sections // 2] > 0
        s = score(mask, small_outline, pixel, args.tolerance)
        print(f"{pixel:5.1f} Å: envelope recall {s['envelope_recall']:.3f}, lumen fraction {s['lumen_fraction']:.3f}, "
              f"precision near the virions {s['precision_near']:.3f}, marked {100 * s['marked']:.1f} %")
        shown.append((pixel, small, small_outline, mask))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(shown), figsize=(7 * len(shown), 7), squeeze=False)
        for ax, (pixel, small, small_outline, mask) in zip(axes[0], shown, strict=True):
            ax.imshow(small, cmap="gray")
            ax.contour(small_outline, levels=[0.5], colors="lime", linewidths=0.6)
            ax.contour(mask, levels=[0.5], colors="red", linewidths=0.6)
            ax.set_title(f"{pixel:.1f} Å: red prediction, green outline")
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(args.png, dpi=80)
    return 0


if __name__ == "__main__":
    sys.exit(main())
