"""bilayer.infer.windows: reading windows (cast, normalised, zero- or reflect-padded) from a tomogram."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bilayer.errors import ConfigError
from bilayer.infer import WindowGrid
from bilayer.infer.config import Padding
from bilayer.infer.windows import window_reader
from sliding_reference import ROI, blended, monai_scores, random_conv

def _normalised(raw: np.ndarray, offset: float, scale: float) -> np.ndarray:
    return (raw.astype(np.float32) - np.float32(offset)) * np.float32(scale)


def _padded(normalised: np.ndarray, roi, mode: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """``normalised`` padded to at least ``roi`` as MONAI pads it (the smaller half before), and the pads before."""
    pads = [((r - n) // 2, r - n - (r - n) // 2) if n < r else (0, 0) for n, r in zip(normalised.shape, roi)]
    padded = normalised
    for axis, pad in enumerate(pads):  # a single section mirrors onto itself: numpy's "edge" there
        width = [(0, 0)] * 3
        width[axis] = pad
        padded = np.pad(padded, width, mode="edge" if mode == "reflect" and normalised.shape[axis] == 1 else mode)
    return padded, tuple(before for before, _ in pads)


# --- reading windows directly -------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(40, 50, 37), (20, 64, 33), (1, 40, 9), (3, 2, 70), (31, 32, 64)])
@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_windows_are_the_normalised_volume_padded_as_monai_pads(rng, shape, padding):
    raw = rng.integers(-500, 500, shape).astype(np.int16)
    offset, scale = 7.0, 1 / 250.0
    grid = WindowGrid.plan(shape, ROI, 0.5)
    read = window_reader(raw, grid, normalise=(offset, scale), padding=padding)
    origins = grid.origins()
    batch = read(origins)
    assert isinstance(batch, torch.Tensor) and batch.dtype == torch.float32
    assert tuple(batch.shape) == (len(origins), 1, *ROI)
    padded, before = _padded(_normalised(raw, offset, scale), ROI, "constant" if padding == "zeros" else "reflect")
    for window, origin in zip(batch[:, 0].numpy(), origins):
        corner = [s + b for s, b in zip(origin, before)]
        np.testing.assert_array_equal(window, padded[tuple(slice(c, c + r) for c, r in zip(corner, ROI))])


def test_reflection_reaches_across_many_periods():
    """A window 32 long over an axis of 2 or 3 voxels folds back and forth many times."""
    raw = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    grid = WindowGrid.plan(raw.shape, ROI, 0.5)
    window = window_reader(raw, grid, padding=Padding.REFLECT)(grid.origins())[0, 0].numpy()
    np.testing.assert_array_equal(window, _padded(raw, ROI, "reflect")[0])
    assert set(np.unique(window)) == set(raw.ravel())


def test_identity_normalisation_copies_float32_exactly(rng):
    volume = rng.normal(size=(40, 33, 20)).astype(np.float32)
    grid = WindowGrid.plan(volume.shape, ROI, 0.5)
    batch = window_reader(volume, grid)(grid.origins()).numpy()
    for window, origin in zip(batch[:, 0], grid.origins()):
        inside, part = grid.clip(origin)
        np.testing.assert_array_equal(window[part], volume[inside])
        assert part[2] == slice(6, 26) and not window[..., :6].any() and not window[..., 26:].any()


def test_a_batch_is_a_new_array():
    volume = np.ones((32, 32, 32), np.float32)
    grid = WindowGrid.plan(volume.shape, ROI, 0.5)
    batch = window_reader(volume, grid, normalise=(1.0, 2.0))(grid.origins())
    batch.fill_(5.0)
    assert (volume == 1.0).all()


@pytest.mark.parametrize(("options", "message"), [
    (dict(normalise=(0.0, 0.0)), "normalise"), (dict(normalise=(float("nan"), 1.0)), "normalise"),
    (dict(normalise=(0.0, float("inf"))), "normalise"), (dict(normalise=("a", 1.0)), "normalise"),
    (dict(normalise=(0.0, 1.0, 2.0)), "normalise"), (dict(normalise=1.0), "normalise"),
    (dict(normalise="ab"), "normalise"), (dict(padding="edge"), "padding"),
])
def test_window_reader_rejects_bad_options(options, message):
    grid = WindowGrid.plan((8, 8, 8), ROI, 0.5)
    with pytest.raises(ConfigError, match=message):
        window_reader(np.zeros((8, 8, 8), np.float32), grid, **options)


def test_bad_padding_lists_the_choices():
    grid = WindowGrid.plan((8, 8, 8), ROI, 0.5)
    with pytest.raises(ConfigError, match="padding='edge' is not one of reflect, zeros"):
        window_reader(np.zeros((8, 8, 8), np.float32), grid, padding="edge")


# --- through the blending driver ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(20, 50, 37), (17, 19, 23), (1, 40, 9), (31, 32, 70)])
@pytest.mark.parametrize("axes", [(), (0,), (0, 2)])
def test_reflect_padding_equals_monai_on_the_mirror_padded_volume(rng, shape, axes):
    """Along an axis shorter than the window, the window holds the tomogram mirrored at its faces
    (edge voxel not repeated, as numpy's ``reflect``), placed where MONAI puts its zeros."""
    raw = rng.integers(-500, 500, shape).astype(np.int16)
    offset, scale = 7.0, 1 / 250.0
    normalised = (raw.astype(np.float32) - np.float32(offset)) * np.float32(scale)
    conv, dims = random_conv(7), [a + 2 for a in axes]

    def predict(x):
        return torch.flip(conv(torch.flip(x, dims)), dims) if dims else conv(x)

    ours = blended(raw, predict, roi=ROI, overlap=0.5, normalise=(offset, scale), padding="reflect", grid_mirror=axes)
    flipped = np.ascontiguousarray(np.flip(normalised, axes))
    pads = [((r - n) // 2, r - n - (r - n) // 2) if n < r else (0, 0) for n, r in zip(shape, ROI)]
    padded = flipped
    for axis, pad in enumerate(pads):  # a single section mirrors onto itself: numpy's "edge" there
        width = [(0, 0)] * 3
        width[axis] = pad
        padded = np.pad(padded, width, mode="reflect" if shape[axis] > 1 else "edge")
    inside = tuple(slice(a, a + n) for (a, _), n in zip(pads, shape))
    expected = np.flip(monai_scores(np.ascontiguousarray(padded), conv)[inside], axes)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    zeros = blended(raw, predict, roi=ROI, overlap=0.5, normalise=(offset, scale), grid_mirror=axes)
    assert np.abs(ours - zeros).max() > 1e-3  # every shape has a short axis: the padding shows


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint8, np.float32])
def test_read_only_memmap_equals_float32_array(tmp_path, rng, dtype):
    shape = (45, 34, 40)
    data = rng.integers(0 if dtype == np.uint8 else -100, 100, shape).astype(dtype)
    path = tmp_path / "tomogram.raw"
    data.tofile(path)
    mapped = np.memmap(path, dtype=dtype, mode="r", shape=shape)
    conv, options = random_conv(1), dict(roi=ROI, overlap=0.5, normalise=(3.0, 0.02))
    np.testing.assert_array_equal(blended(mapped, conv, **options), blended(data.astype(np.float32), conv, **options))
