"""Post-processing of membrane masks: connected components, surface skeletons, masks at other thresholds."""

from typing import Any

from bilayer.postprocess.components import Components, connected_components, remove_small_components
from bilayer.postprocess.threshold import ThresholdedMasks, threshold_scores

__all__ = ["Components", "ThresholdedMasks", "connected_components", "remove_small_components", "skeletonize",
           "threshold_scores"]


def __getattr__(name: str) -> Any:
    """``skeletonize`` on first use: it imports torch, which components and meshes do not need."""
    if name == "skeletonize":
        from bilayer.postprocess.skeleton import skeletonize

        return skeletonize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
