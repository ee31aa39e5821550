"""Inference: segmentation options (:mod:`~bilayer.infer.config`), window placement (``grid``),
window reads (``windows``), Gaussian blending and slab emission (``blend``), mirror test-time
augmentation (``tta``, ``passes``) and its spread (``uncertainty``), the :class:`Predictor`,
pre-flight checks (``preflight``) and whole-tomogram segmentation (``segmentation``).

Names load on first use (PEP 562), so importing :mod:`bilayer.infer.config` for its defaults
(as the command line does) does not load torch.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES = {
    "InferenceConfig": "config",
    "OutputOptions": "config",
    "Padding": "config",
    "Precision": "config",
    "SegmentOptions": "config",
    "TtaGrid": "config",
    "segment_options": "config",
    "PassAccumulator": "passes",
    "mirrored_passes": "passes",
    "UncertaintySmoother": "uncertainty",
    "smooth_uncertainty": "uncertainty",
    "WindowGrid": "grid",
    "fit_window": "grid",
    "mirror_symmetric": "grid",
    "window_count": "grid",
    "window_starts": "grid",
    "EmitFn": "blend",
    "PredictFn": "blend",
    "ProgressFn": "blend",
    "SlabCollector": "blend",
    "blend_windows": "blend",
    "gaussian_weights": "blend",
    "slab_buffer_bytes": "blend",
    "MIRROR_AXES": "tta",
    "with_mirroring": "tta",
    "Predictor": "predictor",
    "WindowPlan": "predictor",
    "resolve_device": "predictor",
    "PreflightError": "preflight",
    "TomogramPlan": "preflight",
    "plan_segmentation": "preflight",
    "SegmentReport": "segmentation",
    "Segmentation": "segmentation",
    "segment_file": "segmentation",
    "segment_planned": "segmentation",
    "segment_plans": "segmentation",
    "segment_volume": "segmentation",
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
