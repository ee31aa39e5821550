"""The extract-patches protocol in a real headless Scipion project: centres suggested from uncertainty
maps (with a known bright region) or picked as 3D coordinates; the patches equal the tomogram's crops,
their labels the labels' crops with the ignore border, paired by patch name, in the dataset folder the
engine trains from."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pyworkflow", reason="Scipion is not installed (pip install '.[scipion]'): "
                                         "the Scipion plugin cannot be tested")

import numpy as np  # noqa: E402
from scipion_testdata import HEADER_VOXEL_SIZE, SHAPE, BilayerScipionTest, write_scenes  # noqa: E402

from bilayer.annotation.extract import patch_start  # noqa: E402
from bilayer.io import read_volume, write_volume  # noqa: E402
from bilayer_scipion.protocols import ProtBilayerExtractPatches  # noqa: E402
from bilayer_scipion.protocols.protocol_patches import PatchesOutput, PatchesParam, PositionSource  # noqa: E402

TS_IDS = ["TS_01", "TS_02"]
SIZE, BORDER = 24, 3
#: Where each tomogram's uncertainty map is bright, (z, y, x): one patch fits around each.
HOT = {"TS_01": (20, 40, 18), "TS_02": (44, 14, 40)}


class TestBilayerExtractPatches(BilayerScipionTest):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.labels = write_scenes(cls.inputs / "tomograms", TS_IDS, seed=8, labels_folder=cls.inputs / "labels")
        for tsId, (z, y, x) in HOT.items():
            unc = np.zeros(SHAPE, np.float32)
            unc[z - 4:z + 5, y - 4:y + 5, x - 4:x + 5] = 1.0
            (cls.inputs / "uncertainty").mkdir(exist_ok=True)
            write_volume(cls.inputs / "uncertainty" / f"{tsId}.mrc", unc, voxel_size=HEADER_VOXEL_SIZE)
        cls.tomograms = cls.importTomograms()
        cls.masks = cls.importMasks(cls.tomograms)
        cls.uncertainty = cls.importMasks(cls.tomograms, folder="uncertainty")

    def test_suggested_patches_sit_on_the_uncertain_region_and_pair_images_with_labels(self):
        prot = self.launchProtocol(self.newProtocol(ProtBilayerExtractPatches, **{
            PatchesParam.TOMOGRAMS.value: self.tomograms, PatchesParam.LABELS.value: self.masks,
            PatchesParam.SOURCE.value: PositionSource.SUGGESTED.value,
            PatchesParam.UNCERTAINTY.value: self.uncertainty, PatchesParam.COUNT.value: 2,
            PatchesParam.SIZE.value: SIZE, PatchesParam.BORDER.value: BORDER}))
        images = getattr(prot, PatchesOutput.IMAGES.value)
        labels = {m.getTsId(): m.getFileName() for m in getattr(prot, PatchesOutput.LABELS.value)}  # items are reused
        self.assertEqual(images.getSize(), 4)
        self.assertEqual(set(labels), {image.getTsId() for image in images})
        sources = {t.getTsId(): read_volume(t.getFileName()).data for t in self.tomograms}
        covered = {tsId: False for tsId in TS_IDS}
        for image in images:
            tsId, rest = image.getTsId().split("_x")
            x, y, z = (int(v) for v in rest.replace("y", "").replace("z", "").split("_"))
            start = patch_start(SHAPE, (z, y, x), SIZE)
            box = tuple(slice(s, s + SIZE) for s in start)
            np.testing.assert_array_equal(read_volume(image.getFileName()).data, sources[tsId][box])
            label = read_volume(labels[image.getTsId()]).data
            inner = tuple(slice(BORDER, SIZE - BORDER) for _ in range(3))
            np.testing.assert_array_equal(label[inner], self.labels[tsId][box][inner])
            self.assertTrue((label[:BORDER] == 2).all() and (label[-BORDER:] == 2).all())
            hot = HOT[tsId]
            covered[tsId] |= all(s <= c < s + SIZE for s, c in zip(start, hot))
            self.assertTrue(Path(image.getFileName()).parent.name == "imagesTr")
        self.assertEqual(covered, {tsId: True for tsId in TS_IDS})  # the first suggestion covers the hot region

    def test_picked_coordinates_give_one_patch_each_even_at_the_border(self):
        import tomo.protocols as tomoprotocols

        folder = self.inputs / "coordinates"
        folder.mkdir(exist_ok=True)
        (folder / "TS_01.txt").write_text("30 20 40\n2 60 5\n")  # x y z; the second near three faces
        importer = self.newProtocol(tomoprotocols.ProtImportCoordinates3D, filesPath=str(folder),
                                    filesPattern="*.txt", importTomograms=self.tomograms, boxSize=SIZE)
        self.launchProtocol(importer)
        coordinates = getattr(importer, importer.OUTPUT_PREFIX)
        prot = self.launchProtocol(self.newProtocol(ProtBilayerExtractPatches, **{
            PatchesParam.TOMOGRAMS.value: self.tomograms, PatchesParam.LABELS.value: self.masks,
            PatchesParam.SOURCE.value: PositionSource.COORDINATES.value, PatchesParam.COORDINATES.value: coordinates,
            PatchesParam.SIZE.value: SIZE, PatchesParam.BORDER.value: BORDER}))
        images = {image.getTsId(): image.getFileName() for image in getattr(prot, PatchesOutput.IMAGES.value)}
        self.assertEqual(set(images), {"TS_01_x30_y20_z40", "TS_01_x2_y60_z5"})
        source = read_volume(next(t.getFileName() for t in self.tomograms if t.getTsId() == "TS_01")).data
        np.testing.assert_array_equal(read_volume(images["TS_01_x2_y60_z5"]).data, source[:SIZE, -SIZE:, :SIZE])
        failed = getattr(prot, PatchesOutput.FAILED.value)  # TS_02 has no coordinates
        self.assertEqual([t.getTsId() for t in failed], ["TS_02"])

    def test_suggesting_needs_uncertainty_maps(self):
        prot = self.newProtocol(ProtBilayerExtractPatches, **{
            PatchesParam.TOMOGRAMS.value: self.tomograms, PatchesParam.LABELS.value: self.masks})
        self.assertTrue(any("uncertainty maps" in e for e in prot.validate()), prot.validate())
