"""The skeleton / components protocol in a real headless Scipion project, on imported masks.

The masks' headers say 10 Å, Scipion says 14 Å; one mask is truncated after import. The
outputs must be the engine's skeletons and components of the good masks, at 14 Å in their
headers, linked to the masks' tomograms, with the broken mask listed.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("pyworkflow", reason="Scipion is not installed (pip install '.[scipion]'): "
                                         "the Scipion plugin cannot be tested")

import numpy as np  # noqa: E402
from scipion_testdata import DIMENSIONS, SAMPLING_RATE, BilayerScipionTest, truncate, write_scenes  # noqa: E402

from bilayer.io import read_volume  # noqa: E402
from bilayer.postprocess import connected_components, skeletonize  # noqa: E402
from bilayer_scipion.protocols import ProtBilayerSkeleton  # noqa: E402
from bilayer_scipion.protocols.protocol_skeleton import SkeletonOutput, SkeletonParam  # noqa: E402

TS_IDS = ["TS_01", "TS_02", "TS_03"]
BROKEN = "TS_02"
MIN_SIZE = 50


class TestBilayerSkeleton(BilayerScipionTest):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        labels = write_scenes(cls.inputs / "tomograms", TS_IDS, seed=21, labels_folder=cls.inputs / "labels",
                              binary_labels=True)
        cls.membranes = {tsId: labels[tsId] == 1 for tsId in TS_IDS}
        tomograms = cls.importTomograms()
        cls.masks = cls.importMasks(tomograms)
        truncate(cls.inputs / "labels" / f"{BROKEN}.mrc")

    def test_skeletons_and_components_of_each_mask_at_the_scipion_sampling_rate(self):
        prot = self.launchProtocol(self.newProtocol(ProtBilayerSkeleton, **{
            SkeletonParam.MASKS.value: self.masks, SkeletonParam.COMPONENTS.value: True,
            SkeletonParam.MIN_SIZE.value: MIN_SIZE, "numberOfThreads": 3}))
        tomoFiles = {mask.getTsId(): mask.getVolName() for mask in self.masks}
        for output in (SkeletonOutput.SKELETONS, SkeletonOutput.COMPONENTS):
            results = getattr(prot, output.value)
            self.checkTomoMasks(results, expectedSetSize=2, expectedSRate=SAMPLING_RATE,
                                expectedDimensions=DIMENSIONS, checkHeaderApix=True)
            for item in results:
                self.assertEqual(item.getVolName(), tomoFiles[item.getTsId()])  # still points at the tomogram
                self.assertTrue(os.path.basename(item.getFileName()).startswith(item.getTsId() + "_"))
        for item in getattr(prot, SkeletonOutput.SKELETONS.value):
            found = np.asarray(read_volume(item.getFileName()).data)
            np.testing.assert_array_equal(found > 0, skeletonize(self.membranes[item.getTsId()]) > 0)
        for item in getattr(prot, SkeletonOutput.COMPONENTS.value):
            found = np.asarray(read_volume(item.getFileName()).data)
            expected = connected_components(self.membranes[item.getTsId()], min_size=MIN_SIZE)
            np.testing.assert_array_equal(found, expected.labels)
            self.assertGreater(expected.count, 0)
        failed = getattr(prot, SkeletonOutput.FAILED.value)
        self.assertEqual([mask.getTsId() for mask in failed], [BROKEN])
        self.assertIn(BROKEN, "\n".join(prot.summary()))

    def test_at_least_one_output_must_be_asked_for(self):
        prot = self.newProtocol(ProtBilayerSkeleton, **{SkeletonParam.MASKS.value: self.masks,
                                                       SkeletonParam.SKELETON.value: False})
        self.assertTrue(any("at least one output" in e for e in prot.validate()))
