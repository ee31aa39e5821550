"""Preparing a tomogram for the network: intensity normalisation, voxel-size matching, amplitude spectra,
deconvolution.

Names load on first use, so the spectrum tools (numpy and scipy) do not load torch.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES = {
    "IntensityScaling": "normalise",
    "standardisation": "normalise",
    "fourier_resample": "pixel_size",
    "rescaled_window_size": "pixel_size",
    "with_rescaling": "pixel_size",
    "PreprocessOptions": "steps",
    "SpectrumMatching": "spectrum",
    "amplitude_spectrum": "spectrum",
    "match_spectrum_file": "spectrum",
    "plan_preprocessing": "steps",
    "preprocess_file": "steps",
    "preprocess_options": "steps",
    "preprocess_tomogram": "steps",
    "spectrum_file": "spectrum",
    "match_spectrum": "spectrum",
    "read_spectrum": "spectrum",
    "write_spectrum": "spectrum",
    "DeconvolutionOptions": "deconvolve",
    "Frequencies": "deconvolve",
    "deconvolution_filter": "deconvolve",
    "deconvolve_tomogram": "deconvolve",
    "deconvolve_file": "deconvolve",
    "match_mask_file": "match_mask",
    "nearest_indices": "match_mask",
    "rescale_file": "rescale",
    "rescale_volume": "rescale",
    "rescaled_shape": "rescale",
    "smooth_edge_mask": "rescale",
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
