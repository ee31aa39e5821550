"""bilayer.preprocess.pixel_size: same physical windows, exact Fourier resampling, the rescaling wrapper."""

from __future__ import annotations

import pytest
import torch

from bilayer.preprocess import fourier_resample, rescaled_window_size, with_rescaling


@pytest.mark.parametrize(
    ("voxel_size", "expected"),
    [(10.0, 160), (14.0, 114), (12.0, 134), (8.0, 200), (7.0, 230), (23.2, 70)],
)
def test_window_covers_the_same_physical_extent_rounded_to_even(voxel_size, expected):
    size = rescaled_window_size(160, 10.0, voxel_size)
    assert size == expected
    assert size % 2 == 0 and abs(size * voxel_size - 1600.0) <= 1.5 * voxel_size


def _band_limited(n: int, seed: int = 0) -> torch.Tensor:
    """A sum of a few low-frequency cosines on an n³ grid (exactly representable at n/2)."""
    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*(torch.arange(n, dtype=torch.float64),) * 3, indexing="ij")
    out = torch.full((n, n, n), 0.7, dtype=torch.float64)
    for _ in range(4):
        k = torch.randint(-3, 4, (3,), generator=g).double()
        phase = float(torch.rand(1, generator=g)) * 6.28
        out += torch.cos(2 * torch.pi * (k[0] * z + k[1] * y + k[2] * x) / n + phase)
    return out[None, None]


@pytest.mark.parametrize(("n", "size"), [(32, 48), (48, 32), (40, 40)])
def test_fourier_resampling_is_exact_for_band_limited_windows(n, size):
    x = _band_limited(n)
    there = fourier_resample(x, size)
    assert there.shape == (1, 1, size, size, size)
    assert float(there.mean()) == pytest.approx(float(x.mean()), rel=1e-9)  # intensities kept
    back = fourier_resample(there, n)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-9)


def test_membrain_mode_scales_intensities_by_the_voxel_count_ratio():
    x = _band_limited(32)
    ours = fourier_resample(x, 48)
    membrain = fourier_resample(x, 48, like_membrain=True)
    torch.testing.assert_close(membrain, ours * (32 / 48) ** 3)


def test_rescaling_wrapper_resamples_predicts_and_interpolates_back():
    seen = []

    def predict(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape))
        return batch * 2.0

    wrapped = with_rescaling(predict, 32)
    x = _band_limited(24).float()
    out = wrapped(x)
    assert seen == [(1, 1, 32, 32, 32)]
    assert out.shape == x.shape
    assert float((out - 2 * x).abs().mean()) < 0.1 * float((2 * x).abs().mean())  # smooth signal survives
    assert wrapped(_band_limited(32).float()).shape == (1, 1, 32, 32, 32) and seen[-1] == (1, 1, 32, 32, 32)
