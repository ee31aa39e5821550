"""The membrane surfaces protocol in a real headless Scipion project, on imported masks.

The masks are tests/core/test_surfaces_api.py's drawn vesicle and sheet (TS_01; TS_02 the vesicle
alone), their tomograms the same scene's two dark leaflets 4 voxels apart. Headers say 10 Å,
Scipion 14 Å: the vesicle's area, the leaflet distance (5.6 nm, not 4.0) and the sheet's height
say which reached the engine. TS_03's mask is truncated after import and must be listed as failed.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("pyworkflow", reason="Scipion is not installed (pip install '.[scipion]'): "
                                         "the Scipion plugin cannot be tested")

import numpy as np
from bilayer.io import write_volume
from bilayer.surfaces.mesh_io import read_mesh
from bilayer_scipion.protocols import ProtBilayerSurfaces
from bilayer_scipion.protocols.protocol_surfaces import (
    SurfacesOutput,
    SurfacesParam,
    engine_defaults,
    mesh_formats,
    missing_tomograms,
)
from bilayer_scipion.viewers import surface_histograms
from scipion_testdata import HEADER_VOXEL_SIZE, SAMPLING_RATE, BilayerScipionTest, truncate
from tomo.objects import TomoMask


def _scene_module():
    """tests/core/test_surfaces_api.py, for its drawn scene (not collected again from here)."""
    path = Path(__file__).parents[1] / "core" / "test_surfaces_api.py"
    spec = importlib.util.spec_from_file_location("surfaces_api_scene", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCENE = _scene_module()
TS_IDS = ["TS_01", "TS_02", "TS_03"]
BROKEN = "TS_03"
SPACING = 2 * SAMPLING_RATE  # Å: lighter meshes, a faster test
NM = SAMPLING_RATE / 10.0  # nm per voxel as Scipion says


class TestBilayerSurfaces(BilayerScipionTest):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        rng = np.random.default_rng(22)
        for folder in ("tomograms", "labels"):
            (cls.inputs / folder).mkdir(parents=True, exist_ok=True)
        for tsId in TS_IDS:
            mask, density = SCENE.scene(rng)
            if tsId == "TS_02":
                mask[int(SCENE.SHEET) - 5:] = 0  # the vesicle alone
            write_volume(cls.inputs / "tomograms" / f"{tsId}.mrc", density, voxel_size=HEADER_VOXEL_SIZE)
            write_volume(cls.inputs / "labels" / f"{tsId}.mrc", mask, voxel_size=HEADER_VOXEL_SIZE)
        cls.masks = cls.importMasks(cls.importTomograms())
        truncate(cls.inputs / "labels" / f"{BROKEN}.mrc")

    def test_meshes_tables_and_values_per_mask_at_the_scipion_sampling_rate(self):
        prot = self.launchProtocol(self.newProtocol(ProtBilayerSurfaces, **{
            SurfacesParam.MASKS.value: self.masks, SurfacesParam.SPACING.value: SPACING, "numberOfThreads": 3}))
        tomoFiles = {mask.getTsId(): mask.getVolName() for mask in self.masks}

        tables = {table.getTsId(): table.clone() for table in getattr(prot, SurfacesOutput.TABLES.value)}
        self.assertEqual(set(tables), {"TS_01", "TS_02"})
        rows = {}
        for tsId, table in tables.items():
            self.assertEqual(os.path.basename(table.getFileName()), f"{tsId}_surfaces.csv")
            with open(table.getFileName(), newline="") as f:
                rows[tsId] = {int(row["label"]): row for row in csv.DictReader(f)}
            self.assertEqual(table.getMembraneCount(), len(rows[tsId]))
            self.assertTrue(os.path.isfile(table.getHistogramsFile()))
            self.assertEqual(table.getVolName(), tomoFiles[tsId])
        self.assertEqual({tsId: len(r) for tsId, r in rows.items()}, {"TS_01": 2, "TS_02": 1})
        self.assertEqual(set(surface_histograms(prot)), {"TS_01", "TS_02"})

        surfaces = [item.clone() for item in getattr(prot, SurfacesOutput.SURFACES.value)]
        self.assertEqual(sorted((s.getTsId(), s.getLabel()) for s in surfaces),
                         sorted((tsId, label) for tsId in rows for label in rows[tsId]))
        sphere_area = 4 * math.pi * (SCENE.RADIUS * NM) ** 2
        for surface in surfaces:
            row = rows[surface.getTsId()][surface.getLabel()]
            self.assertEqual(os.path.basename(surface.getFileName()),
                             f"{surface.getTsId()}_membrane{surface.getLabel()}.ply")
            self.assertEqual(surface.getVolName(), tomoFiles[surface.getTsId()])
            mesh = read_mesh(surface.getFileName())
            self.assertEqual((mesh.vertex_count, mesh.closed), (surface.getVertexCount(), surface.isClosed()))
            self.assertEqual(str(surface.isClosed()), row["closed"])
            self.assertAlmostEqual(surface.getArea(), float(row["area_nm2"]), places=6)
            self.assertAlmostEqual(surface.getArea(), mesh.area() / 100.0, places=3)  # Å² → nm²
            self.assertIn("thickness", mesh.values)  # the PLY carries the per-vertex values
            # the leaflets are 4 voxels apart: 5.6 nm at Scipion's 14 Å/px (4.0 nm at the headers' 10 Å)
            self.assertAlmostEqual(surface.getThickness(), SCENE.LEAFLETS * NM, delta=0.5)
            self.assertAlmostEqual(surface.getThickness(), float(row["membrane_thickness_nm"]), places=6)
            edges = np.linalg.norm(np.diff(mesh.vertices[mesh.faces[:, [0, 1]]], axis=1)[:, 0], axis=1)
            self.assertAlmostEqual(float(np.median(edges)) / SPACING, 1.0, delta=0.2)
            if surface.isClosed():  # the vesicle
                self.assertAlmostEqual(surface.getArea() / sphere_area, 1.0, delta=0.02)
                self.assertAlmostEqual(surface.getMeanCurvature() * SCENE.RADIUS * NM, 1.0, delta=0.05)
            else:  # the sheet, at the middle of its band in Å in the tomogram's frame; no volume
                self.assertIsNone(surface.getVolume())
                np.testing.assert_allclose(mesh.vertices[:, 2], SCENE.SHEET * SAMPLING_RATE, atol=1.0)
        alone = [s for s in surfaces if s.getTsId() == "TS_02"]
        self.assertIsNone(alone[0].getNearestDistance())  # no other membrane in TS_02

        failed = getattr(prot, SurfacesOutput.FAILED.value)
        self.assertEqual([mask.getTsId() for mask in failed], [BROKEN])
        summary = "\n".join(prot.summary())
        self.assertIn(BROKEN, summary)
        self.assertIn("3 membrane(s) (2 closed) in 2 mask(s)", summary)
        self.assertIn("Bilayer thickness: median 5.", summary)

    def test_bad_parameters_are_refused_with_the_engines_words(self):
        prot = self.newProtocol(ProtBilayerSurfaces, **{
            SurfacesParam.MASKS.value: self.masks, SurfacesParam.SPACING.value: 0.0,
            SurfacesParam.SMOOTHING.value: -1, SurfacesParam.MIN_SIZE.value: -3,
            SurfacesParam.SCALE.value: -5.0})
        errors = "\n".join(prot.validate())
        for option in ("--spacing", "--smoothing", "--min-size", "--scale"):
            self.assertIn(f"Invalid value for '{option}'", errors)
        good = self.newProtocol(ProtBilayerSurfaces, **{SurfacesParam.MASKS.value: self.masks})
        self.assertEqual(good.validate(), [])


def _protocol(tmp_path, mask: TomoMask) -> ProtBilayerSurfaces:
    prot = ProtBilayerSurfaces()
    prot.setWorkingDir(str(tmp_path / "run"))
    os.makedirs(prot._getExtraPath())
    prot._itemsByTsId = {mask.getTsId(): mask}
    return prot


def _mask(tmp_path, tsId: str, volName: str) -> TomoMask:
    source = write_volume(tmp_path / f"{tsId} mask.mrc", np.zeros((8, 8, 8), np.int8), voxel_size=10.0)
    mask = TomoMask()
    mask.setFileName(f"{source}:mrc")
    mask.setSamplingRate(14.0)
    mask.setTsId(tsId)
    mask.setVolName(volName)
    return mask


def test_form_defaults_are_the_engines_and_every_parameter_reaches_it(tmp_path):
    from bilayer.cli_surfaces import measure_command

    prot = ProtBilayerSurfaces()
    engine = engine_defaults()
    assert (prot.spacing.get(), prot.smoothing.get(), prot.minSize.get(), prot.curvatureScale.get()) == (
        engine["spacing"], engine["smoothing"], engine["min_size"], engine["scale"])
    assert mesh_formats()[prot.meshFormat.get()] == "ply"
    definition = prot.getDefinition()
    for param in SurfacesParam:
        assert definition.getParam(param.value).label.get() and len(definition.getParam(param.value).help.get()) > 20

    tomogram = write_volume(tmp_path / "tomo.mrc", np.zeros((8, 8, 8), np.float32), voxel_size=10.0)
    prot = _protocol(tmp_path, _mask(tmp_path, "TS_5", f"{tomogram}:mrc"))
    for param, value in ((SurfacesParam.SPACING, 21.5), (SurfacesParam.SMOOTHING, 4), (SurfacesParam.MIN_SIZE, 7),
                         (SurfacesParam.SCALE, 60.0), (SurfacesParam.FORMAT, mesh_formats().index("glb")),
                         (SurfacesParam.LABELLED, True)):
        getattr(prot, param.value).set(value)
    args = prot._measureArgs("TS_5")
    assert args[0] == "measure"
    got = measure_command.make_context("measure", args[1:]).params
    link = Path(args[1])
    assert link.name == "TS_5.mrc" and link.resolve() == (tmp_path / "TS_5 mask.mrc").resolve()
    assert (got["spacing"], got["smoothing"], got["min_size"], got["scale"], got["formats"]) == (
        21.5, 4, 7, 60.0, ("glb",))
    assert got["voxel_size"] == 14.0 and got["overwrite"] is True
    assert got["tomograms"] == (Path(os.path.abspath(tomogram)),) and got["components"] == link
    assert got["out_dir"] == Path(os.path.abspath(prot._getExtraPath()))

    prot.measureThickness.set(False)
    prot.labelled.set(False)
    prot.spacing.set(None)
    got = measure_command.make_context("measure", prot._measureArgs("TS_5")[1:]).params
    assert got["tomograms"] == () and got["components"] is None and got["spacing"] is None


def test_masks_without_a_tomogram_file_are_named(tmp_path):
    tomogram = write_volume(tmp_path / "tomo.mrc", np.zeros((8, 8, 8), np.float32), voxel_size=10.0)
    masks = [_mask(tmp_path, "TS_1", f"{tomogram}:mrc"), _mask(tmp_path, "TS_2", str(tmp_path / "gone.mrc")),
             _mask(tmp_path, "TS_3", "")]
    assert missing_tomograms(masks) == ["TS_2", "TS_3"]
