"""Post-processing of membrane masks: connected components, surface skeletons, masks at other thresholds."""

from bilayer.postprocess.components import Components, connected_components, remove_small_components
from bilayer.postprocess.skeleton import skeletonize
from bilayer.postprocess.threshold import ThresholdedMasks, threshold_scores

__all__ = ["Components", "ThresholdedMasks", "connected_components", "remove_small_components", "skeletonize",
           "threshold_scores"]
