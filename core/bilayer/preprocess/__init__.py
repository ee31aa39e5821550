"""Preparing a tomogram for the network: intensity normalisation and voxel-size matching."""

from bilayer.preprocess.normalise import IntensityScaling, standardisation
from bilayer.preprocess.pixel_size import fourier_resample, rescaled_window_size, with_rescaling

__all__ = ["IntensityScaling", "fourier_resample", "rescaled_window_size", "standardisation", "with_rescaling"]
