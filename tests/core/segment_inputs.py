"""What the segmentation tests share (test_predictor.py, test_segmentation.py, test_api.py): inference
settings that give exact answers, and random tomograms."""

from __future__ import annotations

import numpy as np
from bilayer.infer import Precision
from bilayer.io import Volume

EXACT = dict(tta=False, precision=Precision.FLOAT32, overlap=0.5, fit_window=False)


def random_volume(shape, voxel_size=10.0, origin=(0.0, 0.0, 0.0), seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(rng.normal(5.0, 3.0, shape).astype(np.float32), voxel_size=voxel_size, origin=origin)
