"""Synthetic membrane tomograms with ground-truth labels, for training and testing Bilayer.

``generate_tomogram(config, seed)`` draws one scene (a lamella of crowded cytoplasm or an in
vitro ice layer), renders membranes as two-leaflet bilayers with sub-voxel accurate labels, adds
non-membrane distractors, and images it with a CTF, a missing wedge and reconstruction-like
noise. ``generate_patches(config, n, seed)`` streams many independent small scenes.
"""

from bilayer.data.synthetic.config import SceneType, SynthConfig
from bilayer.data.synthetic.distractors import DistractorKind
from bilayer.data.synthetic.imaging import CtfMode
from bilayer.data.synthetic.membranes import MembraneKind
from bilayer.data.synthetic.scene import SyntheticTomogram, generate_patches, generate_tomogram

__all__ = [
    "CtfMode",
    "DistractorKind",
    "MembraneKind",
    "SceneType",
    "SynthConfig",
    "SyntheticTomogram",
    "generate_patches",
    "generate_tomogram",
]
