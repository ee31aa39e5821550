"""Fourier augmentations: amplitude reshaping keeps phases and the mean; the missing wedge removes exactly the wedge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bilayer.augment.fourier import RandFourier, RandFourierd, fourier_amplitude, missing_wedge, wedge_mask
from bilayer.errors import ConfigError


def _signed_indices(n: int) -> np.ndarray:
    """Frequency index of each FFT bin (0, 1, ..., -1), the Nyquist bin as -n/2."""
    return np.fft.fftfreq(n) * n


def _volume(rng, shape) -> torch.Tensor:
    return torch.from_numpy((rng.normal(size=shape) + 3.0).astype(np.float32))[None]


@pytest.mark.parametrize("shape", [(32, 32, 32), (31, 34, 29)])
def test_amplitude_keeps_phases_and_mean_and_scales_shells(rng, shape):
    x = _volume(rng, shape)
    profile = rng.uniform(0.5, 4.0, size=16)
    out = fourier_amplitude(x, profile)[0].numpy().astype(np.float64)
    before = np.fft.fftn(x[0].numpy().astype(np.float64))
    after = np.fft.fftn(out)
    assert after[0, 0, 0] == pytest.approx(before[0, 0, 0], rel=1e-5)
    strong = np.abs(before) > 1e-3 * np.abs(before).max()
    phase_change = np.angle(after[strong] * np.conj(before[strong]))
    assert np.abs(phase_change).max() < 1e-3
    # each coefficient is scaled by the profile at its radius (point j at j / 32 cycles/voxel)
    fz, fy, fx = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    radius_points = np.sqrt(fz**2 + fy**2 + fx**2) * 2 * len(profile)
    gain = np.interp(radius_points, np.arange(len(profile)), profile) / profile[0]
    np.testing.assert_allclose(np.abs(after[strong]) / np.abs(before[strong]), gain[strong], rtol=1e-3)


def test_flat_profile_is_identity(rng):
    x = _volume(rng, (20, 20, 20))
    assert torch.allclose(fourier_amplitude(x, [2.0, 2.0, 2.0]), x, atol=1e-5)


@pytest.mark.parametrize("max_tilt,missing", [
    (45.0, lambda kz, kx: np.abs(kz) > np.abs(kx)),
    (60.0, lambda kz, kx: kz**2 > 3 * kx**2),  # tan 60° = √3
])
def test_missing_wedge_zeroes_exactly_the_wedge(rng, max_tilt, missing):
    n = 32
    x = _volume(rng, (n, n, n))
    out = missing_wedge(x, max_tilt)[0].numpy().astype(np.float64)
    kz, _, kx = np.meshgrid(*[_signed_indices(n)] * 3, indexing="ij")
    gone = missing(kz, kx)
    before = np.fft.fftn(x[0].numpy().astype(np.float64))
    after = np.fft.fftn(out)
    tolerance = 1e-5 * np.abs(before).max()
    assert gone.any() and (~gone).any()
    assert np.abs(after[gone]).max() < tolerance
    assert np.abs(after[~gone] - before[~gone]).max() < tolerance


def test_wedge_orientation_follows_the_axes(rng):
    n = 24
    x = _volume(rng, (n, n, n))
    out = missing_wedge(x, 45.0, beam_axis=2, tilt_axis=0)[0].numpy().astype(np.float64)
    _, ky, kx = np.meshgrid(*[_signed_indices(n)] * 3, indexing="ij")
    gone = np.abs(kx) > np.abs(ky)  # beam along x, third axis y
    after = np.fft.fftn(out)
    assert np.abs(after[gone]).max() < 1e-5 * np.abs(after).max()


def test_wedge_keeps_the_mean_and_the_tilt_axis():
    mask = wedge_mask((16, 16, 16), 30.0)
    assert mask.shape == (16, 16, 9)
    assert bool(mask[0, :, 0].all())  # f_z = f_x = 0: the tilt axis (y), the mean included
    assert not bool(mask[1:, :, 0].any())  # f_x = 0, f_z != 0: inside the wedge


def test_rand_fourier_standardises_and_is_seeded(rng):
    x = _volume(rng, (24, 24, 24))
    outs = [RandFourier(amplitude_prob=1.0, missing_wedge_prob=1.0).set_random_state(seed)(x) for seed in (4, 4, 5)]
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert float(outs[0].mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(outs[0].std(correction=0)) == pytest.approx(1.0, abs=1e-4)
    untouched = RandFourier(amplitude_prob=0.0, missing_wedge_prob=0.0).set_random_state(0)(x)
    assert untouched is x


def test_walk_has_half_patch_points_and_positive_gains(rng):
    transform = RandFourier(amplitude_prob=1.0, missing_wedge_prob=0.0).set_random_state(1)
    transform(_volume(rng, (40, 40, 40)))
    assert transform.profile.shape == (20,) and bool((transform.profile > 0).all())


def test_rand_fourierd_touches_only_the_image(rng):
    image, label = _volume(rng, (16, 16, 16)), torch.ones(1, 16, 16, 16)
    out = RandFourierd(amplitude_prob=1.0).set_random_state(0)({"image": image, "label": label})
    assert out["label"] is label and not torch.equal(out["image"], image)


@pytest.mark.parametrize("call,name", [
    (lambda x: fourier_amplitude(x, [0.0, 1.0, 2.0]), "profile"),
    (lambda x: missing_wedge(x, 90.0), "max_tilt_deg"),
    (lambda x: missing_wedge(x, 40.0, beam_axis=1, tilt_axis=1), "beam_axis"),
    (lambda x: RandFourier(step_sigma=(-0.1, 0.2)), "step_sigma"),
    (lambda x: RandFourier(max_tilt_deg=(30.0, 95.0)), "max_tilt_deg"),
    (lambda x: RandFourier(local_prob=2.0), "local_prob"),
])
def test_invalid_parameters_are_named(call, name):
    with pytest.raises(ConfigError, match=name):
        call(torch.zeros(1, 8, 8, 8))
