"""What the window tests compare against: MemBrain-seg's MONAI call, a fixed network stand-in, and
Bilayer's blending collected into one array (shared by test_windows.py and test_blend.py)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from bilayer.infer import SlabCollector, blend_windows

ROI = (32, 32, 32)


def random_conv(seed: int = 0, kernel: int = 3):
    """A fixed random 3-D convolution: not pointwise, so results depend on window placement."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(1, 1, kernel, kernel, kernel, generator=g)
    bias = torch.randn(1, generator=g)
    return lambda x: F.conv3d(x, weight, bias, padding=kernel // 2)


def monai_scores(volume_f32: np.ndarray, predict_fn, roi=ROI, overlap: float = 0.5) -> np.ndarray:
    """MemBrain-seg's call: SlidingWindowInferer(roi, sw_batch_size=1, overlap, mode="gaussian")."""
    with torch.no_grad():
        out = sliding_window_inference(torch.from_numpy(volume_f32)[None, None], roi, 1, predict_fn,
                                       overlap=overlap, mode="gaussian")
    return out[0, 0].numpy()


def blended(volume, predict_fn, **options) -> np.ndarray:
    """Bilayer's scores for ``volume``, all slabs collected."""
    collector = SlabCollector(volume.shape)
    blend_windows(volume, predict_fn, emit=collector, **options)
    assert collector.complete
    return collector.scores
