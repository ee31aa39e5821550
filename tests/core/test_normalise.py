"""bilayer.preprocess.normalise: standardisation equals numpy's, slab by slab, and refuses flat tomograms."""

from __future__ import annotations

import numpy as np
import pytest

from bilayer.errors import InputFileError
from bilayer.io import read_volume, write_volume
from bilayer.preprocess import standardisation


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.float32])
def test_standardisation_matches_numpy_on_a_memory_mapped_file(tmp_path, rng, dtype):
    raw = rng.normal(40, 20, (9, 31, 17)).clip(0, 120).astype(dtype)
    volume = read_volume(write_volume(tmp_path / "t.mrc", raw, voxel_size=10))
    norm = standardisation(volume.data)
    as64 = raw.astype(np.float64)
    assert norm.offset == pytest.approx(as64.mean(), rel=1e-12)
    assert 1 / norm.scale == pytest.approx(as64.std(), rel=1e-12)
    out = norm.apply(volume.data)
    assert out.dtype == np.float32
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-5) and float(out.std()) == pytest.approx(1.0, rel=1e-5)


def test_a_constant_tomogram_is_an_error():
    with pytest.raises(InputFileError, match="flat.mrc has the same value everywhere"):
        standardisation(np.full((4, 4, 4), 3, np.int16), name="flat.mrc")


def test_standardisation_merges_slabs_exactly(monkeypatch, rng):
    import bilayer.preprocess.normalise as normalise

    monkeypatch.setattr(normalise, "_CHUNK_VOXELS", 1)  # one z-section per slab
    raw = rng.normal(1000.0, 0.5, (13, 7, 5)) + np.arange(13)[:, None, None]  # means drift across slabs
    norm = standardisation(raw)
    assert norm.offset == pytest.approx(raw.mean(), rel=1e-13)
    assert 1 / norm.scale == pytest.approx(raw.std(), rel=1e-11)
