"""Shared test fixtures: the real crops (named once, here) and small synthetic volumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
REAL = DATA / "real"

#: Real tomogram crops shipped with the tests (see tests/data/real/README.md).
TARDIS_CROP = REAL / "tardis_et_crop_78x64x32.mrc"
VISFD_CROP = REAL / "visfd_membrane_crop_16.rec"
CRYOCOMPARE_SLICE = REAL / "cryocompare_sars2_virions_slice2d_928x960.tif"
#: Real microtubules in noise, no membrane at all: a negative control for the default model.
CYLINDRA_MT = REAL / "cylindra_13pf_mt_36x206x94.mrc"
#: A real MemBrain-seg 0.0.10 Lightning checkpoint of a tiny network (see tests/data/membrain/README.md).
MEMBRAIN_TINY_CKPT = DATA / "membrain" / "membrain_seg_0.0.10_tiny.ckpt"


@pytest.fixture(scope="session")
def real_crop_paths() -> dict[str, Path]:
    """The shipped real crops, read-only: tardis (legacy header, uint8), visfd (int16, IMOD)."""
    return {"tardis": TARDIS_CROP, "visfd": VISFD_CROP}


@pytest.fixture(scope="session")
def real_microtubules() -> Path:
    """The shipped real crop without membranes (cylindra's microtubules, 10.52 Å), read-only."""
    return CYLINDRA_MT


@pytest.fixture(scope="session")
def membrain_tiny_ckpt() -> Path:
    """A real MemBrain-seg checkpoint (channels 2-4-4-8-8-16, axis order x, y, z)."""
    return MEMBRAIN_TINY_CKPT


@pytest.fixture
def real_crops(tmp_path: Path) -> dict[str, Path]:
    """Copies of the real crops in a temporary folder, so tests never write into tests/data."""
    out = {}
    for name, source in (("tardis", TARDIS_CROP), ("visfd", VISFD_CROP)):
        target = tmp_path / source.name
        shutil.copyfile(source, target)
        out[name] = target
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture
def blank_tomograms():
    """``blank_tomograms(folder, ["a.mrc", "sub/b.rec"])`` writes small zero MRC files (header voxel size
    7 Å), making folders as needed; returns their paths in order. For tests of input lists."""
    from bilayer.io import write_volume

    def write(folder: Path, names: list[str]) -> list[Path]:
        paths = []
        for name in names:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_volume(path, np.zeros((32, 32, 32), np.int8), voxel_size=7.0)
            paths.append(path)
        return paths

    return write

