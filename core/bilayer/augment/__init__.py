"""Training augmentation for cryo-ET patches (MemBrain v2): geometry, intensity, filters, Fourier.

Build the seeded pipeline with :func:`build_augmentation` from an :class:`AugmentConfig` and call it
on ``{"image": (C, Z, Y, X) float tensor, "label": (C, Z, Y, X) tensor}``; it returns a new dict.
Geometry moves image and label together (label values 0, 1, 2 kept exactly); everything else
touches the image only. All steps run on the tensors' device. The single transforms live in
:mod:`~bilayer.augment.spatial`, :mod:`~bilayer.augment.fourier`, :mod:`~bilayer.augment.filters`,
:mod:`~bilayer.augment.intensity` and :mod:`~bilayer.augment.local`.
"""

from bilayer.augment.fourier import fourier_amplitude, missing_wedge
from bilayer.augment.pipeline import AugmentConfig, build_augmentation, reseed, worker_seed
from bilayer.augment.spatial import Outside

__all__ = [
    "AugmentConfig", "Outside", "build_augmentation", "fourier_amplitude", "missing_wedge", "reseed", "worker_seed",
]
