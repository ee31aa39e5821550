"""bilayer.preprocess.match_mask: masks made on a rescaled tomogram land on the original grid, by scipy
zoom's nearest-neighbour picks, with the original's header; bad inputs refused."""

from __future__ import annotations

import bilayer.preprocess.rescale as rescale_module
import numpy as np
import pytest
from bilayer.errors import InputFileError, OutputError
from bilayer.io import read_volume, write_volume
from bilayer.preprocess.match_mask import match_mask_file, nearest_indices
from bilayer.preprocess.rescale import rescale_file
from scipy import ndimage


@pytest.fixture
def small_slabs(monkeypatch):
    """A work budget of a few kB: the planes are read over many slabs."""
    monkeypatch.setattr(rescale_module, "_WORK_BYTES", 20_000)


def _listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_nearest_indices_are_scipy_zooms_with_its_last_voxel_fixed():
    for size in range(2, 30):
        for new_size in range(2, 70):
            zoomed = ndimage.zoom(np.arange(1.0, size + 1), new_size / size, order=0, prefilter=False) - 1
            got = nearest_indices(size, new_size)
            inside = zoomed >= 0
            np.testing.assert_array_equal(got[inside], zoomed[inside])
            assert np.all(got[~inside] == size - 1) and got[-1] == size - 1 and got[0] == 0
    assert not (ndimage.zoom(np.arange(1.0, 9), 26 / 8, order=0, prefilter=False) > 0).all()  # the zoom bug
    assert nearest_indices(3, 9).tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]  # round(o / 4), ties up (0.5 → 1)


@pytest.mark.parametrize("dtype, values", [(np.uint8, (0, 1)), (np.int16, (0, 7, 300))])
def test_a_mask_from_the_rescaled_tomogram_lands_on_the_original_grid(tmp_path, dtype, values, small_slabs):
    original = write_volume(tmp_path / "tomo.mrc", np.random.default_rng(10).normal(size=(40, 50, 60))
                            .astype(np.float32), voxel_size=8.0, origin=(5.0, 6.0, 7.0))
    rescaled = read_volume(rescale_file(original, None, 10.0, smooth_edge=False))
    labels = np.random.default_rng(11).choice(values, size=rescaled.shape).astype(dtype)
    seg = write_volume(tmp_path / "tomo_rescaled_seg.mrc", rescaled.with_data(labels), dtype=dtype)
    back = read_volume(match_mask_file(seg, original))
    assert back.path == tmp_path / "tomo_seg.mrc"
    assert back.shape == (40, 50, 60) and back.data.dtype == dtype
    assert back.voxel_size == (8.0, 8.0, 8.0) and back.origin == (5.0, 6.0, 7.0)
    factors = [m / n for n, m in zip(labels.shape, back.shape)]
    np.testing.assert_array_equal(back.data, ndimage.zoom(labels, factors, order=0, prefilter=False))


def test_each_output_plane_takes_its_nearest_source_plane(tmp_path):
    planes = np.broadcast_to(np.arange(8, dtype=np.int16)[:, None, None], (8, 4, 4))
    seg = write_volume(tmp_path / "seg.mrc", np.ascontiguousarray(planes), voxel_size=13.0)
    like = write_volume(tmp_path / "t.mrc", np.zeros((26, 4, 4), np.float32), voxel_size=4.0)
    back = read_volume(match_mask_file(seg, like, tmp_path / "back.mrc"))
    assert back.data[:, 0, 0].tolist() == nearest_indices(8, 26).tolist()
    assert back.data[-1, 0, 0] == 7  # scipy's zoom writes 0 here


def test_match_mask_refuses_a_mask_of_another_extent_or_writing_over_an_input(tmp_path):
    like = write_volume(tmp_path / "t.mrc", np.zeros((40, 50, 60), np.float32), voxel_size=8.0)
    other = write_volume(tmp_path / "other_seg.mrc", np.zeros((20, 40, 48), np.int8), voxel_size=10.0)
    with pytest.raises(InputFileError, match=r"other_seg.mrc covers 200 x 400 x 480 Å but .*t.mrc covers 320 x 400 "
                                             r"x 480 Å"):
        match_mask_file(other, like)
    seg = write_volume(tmp_path / "seg.mrc", np.zeros((32, 40, 48), np.int8), voxel_size=10.0)
    with pytest.raises(OutputError, match="is an input"):
        match_mask_file(seg, like, like, overwrite=True)
    assert _listing(tmp_path) == ["other_seg.mrc", "seg.mrc", "t.mrc"]
    unset = write_volume(tmp_path / "unset_seg.mrc", np.zeros((20, 40, 48), np.int8), voxel_size=1.0)
    assert read_volume(match_mask_file(unset, like, tmp_path / "ok.mrc")).shape == (40, 50, 60)  # nothing to compare
