"""Matching a tomogram's voxel size to a model's, window by window.

MemBrain-seg's ``--rescale-patches`` cuts windows whose size in the tomogram's voxels covers
the same physical extent as the model's window (rounded to an even number of voxels),
resamples each window to the model's window by cropping or zero-padding its centred Fourier
spectrum, runs the network, and interpolates the scores back trilinearly. Bilayer does the
same inside the window loop, so the tomogram itself is never resampled.

One difference is deliberate: MemBrain-seg's Fourier resampling divides by the new number of
voxels, which scales intensities by (old/new)³ (×0.36 from 114 to 160 voxels). Bilayer keeps
intensities by default; ``like_membrain=True`` reproduces MemBrain-seg exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from bilayer.errors import ConfigError

__all__ = ["fourier_resample", "rescaled_window_size", "with_rescaling"]

PredictFn = Callable[[torch.Tensor], torch.Tensor]


def rescaled_window_size(roi: int, model_voxel_size: float, voxel_size: float) -> int:
    """Window size in the tomogram's voxels covering ``roi`` model voxels, rounded to even.

    Args:
        roi: the model's window edge in its own voxels.
        model_voxel_size: Å per voxel the model was trained at.
        voxel_size: Å per voxel of the tomogram.
    """
    if not (model_voxel_size > 0 and voxel_size > 0 and roi > 0):
        raise ConfigError(f"window {roi} and voxel sizes {model_voxel_size}, {voxel_size} Å must be positive")
    size = int(round(roi * model_voxel_size / voxel_size))
    return max(2, size + size % 2)


def fourier_resample(x: torch.Tensor, size: int, *, like_membrain: bool = False) -> torch.Tensor:
    """Resample the cubic windows of ``x`` (B, C, n, n, n) to (B, C, size, size, size).

    The centred spectrum is cropped (down-sampling, an ideal low-pass) or zero-padded
    (up-sampling, band-limited interpolation). Intensities are kept unless ``like_membrain``.
    """
    n = x.shape[-1]
    if x.shape[-3:] != (n, n, n):
        raise ConfigError(f"windows must be cubic to resample, got {tuple(x.shape[-3:])}")
    if size == n:
        return x
    dims = (-3, -2, -1)
    spectrum = torch.fft.fftshift(torch.fft.fftn(x.to(torch.promote_types(x.dtype, torch.float32)), dim=dims), dim=dims)
    if size < n:
        start = (n - size) // 2
        spectrum = spectrum[..., start : start + size, start : start + size, start : start + size]
    else:
        before = (size - n) // 2
        pad = (before, size - n - before) * 3
        spectrum = F.pad(spectrum, pad)
    out = torch.fft.ifftn(torch.fft.ifftshift(spectrum, dim=dims), dim=dims).real
    if not like_membrain:
        out = out * (size / n) ** 3
    return out.to(x.dtype)


def with_rescaling(predict_fn: PredictFn, model_roi: int, *, like_membrain: bool = False) -> PredictFn:
    """Wrap ``predict_fn`` (model-sized windows) to take windows of any cubic size.

    Each window is Fourier-resampled to ``model_roi``, predicted, and its scores are
    interpolated back to the window's size (trilinear, as MemBrain-seg).
    """

    def predict(x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        if size == model_roi:
            return predict_fn(x)
        scores = predict_fn(fourier_resample(x, model_roi, like_membrain=like_membrain))
        return F.interpolate(scores, size=(size, size, size), mode="trilinear", align_corners=False)

    return predict
