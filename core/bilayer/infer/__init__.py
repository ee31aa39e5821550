"""Inference: sliding windows with Gaussian blending, mirror test-time augmentation, the
:class:`Predictor` and the one-call :func:`segment`.

Names load on first use (PEP 562), so importing :mod:`bilayer.infer.config` for its defaults
(as the command line does) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "InferenceConfig": "config",
    "Precision": "config",
    "TtaGrid": "config",
    "PassAccumulator": "passes",
    "mirror_symmetric": "sliding",
    "EmitFn": "sliding",
    "PredictFn": "sliding",
    "ProgressFn": "sliding",
    "SlabCollector": "sliding",
    "blend_windows": "sliding",
    "gaussian_weights": "sliding",
    "slab_buffer_bytes": "sliding",
    "window_starts": "sliding",
    "window_count": "sliding",
    "fit_window": "sliding",
    "MIRROR_AXES": "tta",
    "with_mirroring": "tta",
    "Predictor": "predictor",
    "resolve_device": "predictor",
    "OutputOptions": "pipeline",
    "SegmentReport": "pipeline",
    "Segmentation": "pipeline",
    "output_paths": "pipeline",
    "segment": "pipeline",
    "segment_file": "pipeline",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'bilayer.infer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"bilayer.infer.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
