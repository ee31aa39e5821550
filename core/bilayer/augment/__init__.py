"""Training augmentation for cryo-ET patches (MemBrain v2): geometry, intensity, filters, Fourier.

Build the seeded pipeline with :func:`build_augmentation` from an :class:`AugmentConfig` and call it
on ``{"image": (C, Z, Y, X) float tensor, "label": (C, Z, Y, X) tensor}``; it returns a new dict.
Geometry moves image and label together (label values 0, 1, 2 kept exactly); everything else
touches the image only. All steps run on the tensors' device. The single transforms live in
:mod:`~bilayer.augment.spatial`, :mod:`~bilayer.augment.fourier`, :mod:`~bilayer.augment.filters`,
:mod:`~bilayer.augment.intensity` and :mod:`~bilayer.augment.local`.

Names load on first use (PEP 562), so importing :mod:`bilayer.augment.config` (as a training
configuration does) loads neither torch nor MONAI.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES = {
    "AugmentConfig": "config",
    "Outside": "config",
    "build_augmentation": "pipeline",
    "reseed": "pipeline",
    "worker_seed": "pipeline",
    "fourier_amplitude": "fourier",
    "missing_wedge": "fourier",
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
