"""bilayer.postprocess.threshold: masks at any thresholds from a scores file, streamed, all or none."""

from __future__ import annotations

import numpy as np
import pytest

from bilayer.errors import BilayerError, ConfigError, OutputError
from bilayer.io import read_volume, write_volume
from bilayer.postprocess import threshold_scores


def _scores(folder, name="tomo_scores.mrc", shape=(20, 24, 28)):
    data = np.random.default_rng(0).normal(0.0, 2.0, shape).astype(np.float32)
    return write_volume(folder / name, data, voxel_size=12.5, origin=(10.0, 20.0, 30.0)), data


def test_one_mask_per_threshold_exactly_scores_above_it(tmp_path, monkeypatch):
    import bilayer.postprocess.threshold as module

    monkeypatch.setattr(module, "_SLAB_BYTES", 3 * 24 * 28 * 4)  # three sections per slab: slabs really stream
    path, data = _scores(tmp_path)
    result = threshold_scores(path, [0.0, 1.5, -1.0, 1.5])
    assert list(result.paths) == [0.0, 1.5, -1.0]  # the repeat written once, order kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tomo_scores.mrc", "tomo_seg_t-1.mrc", "tomo_seg_t0.mrc",
                                                          "tomo_seg_t1.5.mrc"]
    for t, mask_path in result.paths.items():
        mask = read_volume(mask_path)
        assert mask.data.dtype == np.int8
        np.testing.assert_array_equal(mask.data, (data > t).astype(np.int8))
        assert mask.voxel_size == pytest.approx((12.5,) * 3) and mask.origin == pytest.approx((10.0, 20.0, 30.0))
        assert result.membrane_fraction[t] == pytest.approx(float((data > t).mean()))


def test_refusals_come_before_anything_is_written(tmp_path):
    path, _ = _scores(tmp_path)
    (tmp_path / "tomo_seg_t1.mrc").write_bytes(b"mine")
    with pytest.raises(OutputError, match="tomo_seg_t1.mrc already exists"):
        threshold_scores(path, [0.0, 1.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tomo_scores.mrc", "tomo_seg_t1.mrc"]
    with pytest.raises(ConfigError, match="at least one threshold"):
        threshold_scores(path, [])
    with pytest.raises(ConfigError, match="threshold=nan"):
        threshold_scores(path, [float("nan")])
    with pytest.raises(ConfigError, match="both name tomo_seg_t0.1.mrc"):
        threshold_scores(path, [0.1, 0.1000000001])
    mask = write_volume(tmp_path / "m.mrc", np.zeros((4, 4, 4), np.int8), voxel_size=10.0)
    with pytest.raises(BilayerError, match="holds int8 values, not scores"):
        threshold_scores(mask, [0.0])


def test_a_full_disk_leaves_none_of_the_masks(tmp_path, monkeypatch):
    import errno
    import os

    import bilayer.io.mrc_writer as mrc_writer

    path, _ = _scores(tmp_path)
    calls = []

    def fill_up(fd, data, offset):
        calls.append(offset)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(fd, data, offset)

    original = mrc_writer._pwrite_all
    monkeypatch.setattr(mrc_writer, "_pwrite_all", fill_up)
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="No space left on device"):
        threshold_scores(path, [0.0, 1.0, 2.0], tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
