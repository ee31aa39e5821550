"""Fixtures of the RELION tests: a project folder, synthetic tomograms with known membranes, and
STAR files written as RELION writes them (a RELION 5 tomogram set, a RELION 3.1 micrograph list)."""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from bilayer.data.synthetic import SynthConfig, generate_tomogram
from bilayer.io import write_volume

#: Voxel size the tests' STAR files give (the tiny MemBrain-seg model's own, so windows are not resampled).
VOXEL_SIZE = 10.0
#: What the tomograms' MRC headers say instead, so a test sees which one reached the outputs.
HEADER_VOXEL_SIZE = 7.0
SHAPE = (64, 64, 64)


@functools.lru_cache(maxsize=None)
def _scene(shape: tuple[int, int, int], seed: int):
    return generate_tomogram(SynthConfig(shape=shape, voxel_size=VOXEL_SIZE), seed=seed)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty RELION project folder, the working directory (RELION runs jobs there)."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def tomogram_files() -> Callable[..., list[Path]]:
    """Write synthetic tomograms (and their labels) under the current folder; returns the tomograms.

    ``tomogram_files(["Tomograms/job007/tomograms/rec_TS_01.mrc", ...], labels=True)`` also writes
    ``..._labels.mrc`` beside each (0 background, 1 membrane, 2 ignore).
    """

    def write(paths: list[str], *, labels: bool = False, shape: tuple[int, int, int] = SHAPE) -> list[Path]:
        out = []
        for seed, name in enumerate(paths):
            scene = _scene(shape, seed)
            path = Path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_volume(path, scene.image, voxel_size=HEADER_VOXEL_SIZE)
            if labels:
                write_volume(label_path(path), scene.labels.astype(np.int8), voxel_size=HEADER_VOXEL_SIZE)
            out.append(path)
        return out

    return write


def label_path(tomogram: Path) -> Path:
    return tomogram.with_name(f"{tomogram.stem}_labels.mrc")


@pytest.fixture
def tomogram_set() -> Callable[..., Path]:
    """Write a RELION 5 ``tomograms.star`` (modelled on a real AlignTiltSeries/Tomograms output)
    for tomograms named ``rec_<TomoName>.mrc``; ``labels`` adds a label column, ``drop`` removes columns."""

    def write(path: str, tomograms: list[Path], *, labels_column: str | None = None,
              drop: tuple[str, ...] = (), pixel_size: float = 2.5, binning: float = VOXEL_SIZE / 2.5) -> Path:
        columns = ["rlnTomoName", "rlnTomoTiltSeriesStarFile", "rlnVoltage", "rlnSphericalAberration",
                   "rlnAmplitudeContrast", "rlnMicrographOriginalPixelSize", "rlnTomoHand", "rlnOpticsGroupName",
                   "rlnTomoTiltSeriesPixelSize", "rlnTomoTomogramBinning", "rlnTomoSizeX", "rlnTomoSizeY",
                   "rlnTomoSizeZ", "rlnTomoReconstructedTomogram"]
        rows = []
        for tomo in tomograms:
            name = tomo.stem.removeprefix("rec_")
            row = [name, f"AlignTiltSeries/job006/tilt_series/{name}.star", "300.000000", "2.700000", "0.100000",
                   "0.675000", "-1.00000", "opticsGroup1", f"{pixel_size:.6f}", f"{binning:.6f}", "4092", "5760",
                   "1000", str(tomo)]
            if labels_column:
                row.append(str(label_path(tomo)))
            rows.append(row)
        if labels_column:
            columns.append(labels_column)
        keep = [i for i, c in enumerate(columns) if c not in drop]
        lines = ["", "# version 50001", "", "data_global", "", "loop_ "]
        lines += [f"_{columns[i]} #{n} " for n, i in enumerate(keep, 1)]
        lines += [" ".join(row[i] for i in keep) for row in rows] + ["", ""]
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines))
        return target

    return write


@pytest.fixture
def micrograph_list() -> Callable[..., Path]:
    """Write a RELION 3.1 micrograph-style STAR (data_optics + data_micrographs) naming tomograms."""

    def write(path: str, tomograms: list[Path], *, pixel_size: float = VOXEL_SIZE) -> Path:
        lines = ["", "# version 30001", "", "data_optics", "", "loop_", "_rlnOpticsGroupName #1",
                 "_rlnOpticsGroup #2", "_rlnMicrographOriginalPixelSize #3", "_rlnVoltage #4",
                 "_rlnSphericalAberration #5", "_rlnAmplitudeContrast #6", "_rlnMicrographPixelSize #7",
                 f"opticsGroup1 1 2.500000 300.000000 2.700000 0.100000 {pixel_size:.6f}", "", "",
                 "# version 30001", "", "data_micrographs", "", "loop_", "_rlnMicrographName #1",
                 "_rlnOpticsGroup #2"]
        lines += [f"{tomo} 1" for tomo in tomograms] + ["", ""]
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines))
        return target

    return write


@pytest.fixture(scope="session")
def job_program() -> Callable[[str], Path]:
    """The installed console script of a job (as RELION's 'External executable' names it)."""

    def find(name: str) -> Path:
        path = Path(sys.executable).with_name(name)
        found = path if path.is_file() else shutil.which(name)
        assert found, f"console script {name} is not installed; pip install the project (setup.py declares it)"
        return Path(found)

    return find
