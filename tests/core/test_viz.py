"""bilayer.viz: central slices, physical proportions, and the mask overlay."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pytest

from bilayer.errors import ConfigError
from bilayer.io import Volume
from bilayer.viz import central_slices, render_preview, write_preview


def _coordinates(shape):
    z, y, x = np.indices(shape)
    return (z * 10000 + y * 100 + x).astype(np.float32)


@pytest.mark.parametrize("shape", [(5, 7, 9), (8, 6, 4), (1, 3, 3)])
def test_central_slices_are_the_centre_planes_in_viewer_orientation(shape):
    data = _coordinates(shape)
    xy, xz, zy = central_slices(data)
    cz, cy, cx = (n // 2 for n in shape)
    np.testing.assert_array_equal(xy, data[cz])
    np.testing.assert_array_equal(xz, data[:, cy, :])
    np.testing.assert_array_equal(zy, data[:, :, cx].T)  # rows are y, so it shares XY's y axis
    assert xy.shape == (shape[1], shape[2]) and zy.shape == (shape[1], shape[0])


def test_slab_averages_neighbouring_planes():
    data = _coordinates((9, 8, 8))
    xy, _, _ = central_slices(data, slab=3)
    np.testing.assert_allclose(xy, data[3:6].mean(axis=0))
    with pytest.raises(ConfigError):
        central_slices(data, slab=0)


def _png(png: bytes) -> np.ndarray:
    return matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]


def test_preview_keeps_physical_proportions():
    data = np.random.default_rng(0).normal(size=(20, 40, 100)).astype(np.float32)
    cube = _png(render_preview(data, voxel_size=10.0, dpi=50))
    stretched = _png(render_preview(data, voxel_size=(40.0, 10.0, 10.0), dpi=50))
    # four times thicker in z: the XZ panel grows, so the picture gets taller relative to its width
    assert stretched.shape[0] / stretched.shape[1] > 1.2 * cube.shape[0] / cube.shape[1]


def test_preview_draws_the_mask_in_colour_and_nothing_else():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(24, 48, 48)).astype(np.float32)
    mask = np.zeros(data.shape, np.int8)
    mask[:, 20:28, :] = 1
    plain = _png(render_preview(data, voxel_size=10.0, title="t"))
    overlaid = _png(render_preview(data, mask, voxel_size=10.0, title="t"))
    def orange(img):  # the membrane colour; the yellow panel names have red == green
        return (img[..., 0] - img[..., 1] > 0.15) & (img[..., 1] - img[..., 2] > 0.1)
    assert orange(overlaid).sum() > 500
    assert orange(plain).sum() == 0
    empty = _png(render_preview(data, np.zeros_like(mask), voxel_size=10.0, title="t"))
    assert orange(empty).sum() == 0


def test_preview_rejects_a_mask_of_another_shape():
    with pytest.raises(ConfigError, match="mask shape"):
        render_preview(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


def test_write_preview_takes_a_volume_and_writes_a_png(tmp_path):
    volume = Volume(np.random.default_rng(2).normal(size=(16, 32, 32)).astype(np.float32), voxel_size=12.0)
    path = write_preview(tmp_path / "p.png", volume)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]
