"""Synthetic tomograms for the Scipion tests, and the base class that puts them in a project.

Tomograms are written with a header voxel size of 10 Å and imported with a Scipion sampling
rate of 14 Å (the scenes are drawn at 14 Å), so a test can tell which of the two reached the
engine and the output headers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pyworkflow.utils import magentaStr
from tomo.objects import SetOfTomoMasks, SetOfTomograms
from tomo.protocols import ProtImportTomograms, ProtImportTomomasks
from tomo.protocols.protocol_import_tomograms import OUTPUT_NAME
from tomo.tests.test_base_centralized_layer import TestBaseCentralizedLayer
import pyworkflow.tests as pwtests

from bilayer.data.synthetic import SceneType, SynthConfig, generate_tomogram
from bilayer.io import write_volume

#: Sampling rate given to Scipion at import, Å/px; the scenes are drawn at it.
SAMPLING_RATE = 14.0
#: Voxel size written into the files' headers, Å: deliberately not the sampling rate.
HEADER_VOXEL_SIZE = 10.0
#: Tomogram shape (z, y, x); Scipion reports dimensions as (x, y, z).
SHAPE = (64, 64, 64)
DIMENSIONS = [SHAPE[2], SHAPE[1], SHAPE[0]]

#: Vesicles in thin ice with clear bilayers and few distractors: learnable in a few hundred steps.
EASY_SCENES = SynthConfig(shape=SHAPE, voxel_size=SAMPLING_RATE, scene_type=SceneType.IN_VITRO,
                          empty_probability=0.0, membrane_count_range=(3, 6), vesicle_diameter_range=(250.0, 700.0),
                          ice_thickness_range=(700.0, 850.0), snr_range=(4.0, 8.0), lowpass_probability=0.0,
                          invert_probability=0.0, background_range=(0.0, 0.1), gold_count_range=(0, 0),
                          filament_count_range=(0, 1), protein_density_range_per_um3=(5000.0, 20000.0),
                          crowding_range=(0.1, 0.2))


def write_scenes(folder: Path, names: list[str], *, seed: int = 0, labels_folder: Path | None = None,
                 binary_labels: bool = False) -> dict[str, np.ndarray]:
    """Write ``<name>.mrc`` tomograms (and, with ``labels_folder``, ``<name>.mrc`` labels: 0/1/2, or
    0/1 with ``binary_labels``) and return each tomogram's labels."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for index, name in enumerate(names):
        scene = generate_tomogram(EASY_SCENES, seed=seed + index)
        write_volume(folder / f"{name}.mrc", scene.image, voxel_size=HEADER_VOXEL_SIZE)
        labels[name] = scene.labels.astype(np.int8)
        if labels_folder is not None:
            labels_folder.mkdir(parents=True, exist_ok=True)
            data = (labels[name] == 1).astype(np.int8) if binary_labels else labels[name]
            write_volume(labels_folder / f"{name}.mrc", data, voxel_size=HEADER_VOXEL_SIZE)
    return labels


def truncate(path: Path) -> None:
    """Damage an MRC file the way an interrupted copy does: the header stays, data go missing."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class BilayerScipionTest(TestBaseCentralizedLayer):
    """A Scipion project of its own per test class, created headless; the working folder is
    given back afterwards (Scipion moves into the project)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls._previousCwd = os.getcwd()
        pwtests.setupTestProject(cls)
        cls.inputs = Path(cls.getOutputPath("inputs"))

    @classmethod
    def tearDownClass(cls) -> None:
        os.chdir(cls._previousCwd)

    @classmethod
    def importTomograms(cls, pattern: str = "*.mrc") -> SetOfTomograms:
        print(magentaStr(f"\n==> Importing tomograms {pattern} at {SAMPLING_RATE} Å/px"))
        prot = cls.newProtocol(ProtImportTomograms, filesPath=str(cls.inputs / "tomograms"), filesPattern=pattern,
                               samplingRate=SAMPLING_RATE)
        cls.launchProtocol(prot)
        return getattr(prot, OUTPUT_NAME)

    @classmethod
    def importMasks(cls, tomograms: SetOfTomograms, folder: str = "labels") -> SetOfTomoMasks:
        print(magentaStr(f"\n==> Importing masks from {folder}"))
        prot = cls.newProtocol(ProtImportTomomasks, filesPath=str(cls.inputs / folder), filesPattern="*.mrc",
                               inputTomos=tomograms)
        cls.launchProtocol(prot)
        return getattr(prot, ProtImportTomomasks._possibleOutputs.tomomasks.name)
