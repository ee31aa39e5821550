"""Post-processing of membrane masks: connected components and surface skeletons."""

from bilayer.postprocess.components import Components, connected_components, remove_small_components
from bilayer.postprocess.skeleton import skeletonize

__all__ = ["Components", "connected_components", "remove_small_components", "skeletonize"]
