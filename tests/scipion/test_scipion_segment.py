"""The segment protocol in a real headless Scipion project, on synthetic tomograms.

The tomograms' headers say 10 Å, Scipion says 14 Å; one of the three files is truncated
after import. The masks must be two, at 14 Å in Scipion and in their headers, named by
tsId, linked to their tomograms, equal to what the engine gives at 14 Å; the broken
tomogram must be listed, not sink the run.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

pytest.importorskip("pyworkflow", reason="Scipion is not installed (pip install '.[scipion]'): "
                                         "the Scipion plugin cannot be tested")

import mrcfile  # noqa: E402
import numpy as np  # noqa: E402
from pyworkflow.protocol.constants import MODE_RESTART, MODE_RESUME  # noqa: E402
from scipion_testdata import DIMENSIONS, HEADER_VOXEL_SIZE, SAMPLING_RATE, BilayerScipionTest, truncate, \
    write_scenes  # noqa: E402

from bilayer.batch.runner import run_status  # noqa: E402
from bilayer.io import read_volume  # noqa: E402
from bilayer_scipion import defaults  # noqa: E402
from bilayer_scipion.engine import run_engine  # noqa: E402
from bilayer_scipion.protocols import ProtBilayerSegment  # noqa: E402
from bilayer_scipion.protocols.model_choice import ModelParam, ModelSource  # noqa: E402
from bilayer_scipion.protocols.protocol_segment import SegmentOutput, SegmentParam  # noqa: E402

TS_IDS = ["TS_01", "TS_02", "TS_03"]
BROKEN = "TS_03"
#: Options that make the tiny MemBrain-seg checkpoint quick: one 64³ window, no mirroring.
QUICK = {SegmentParam.WINDOW.value: 64, SegmentParam.TTA.value: False}


class TestBilayerSegment(BilayerScipionTest):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        write_scenes(cls.inputs / "tomograms", TS_IDS, seed=1)
        cls.tomograms = cls.importTomograms()
        truncate(cls.inputs / "tomograms" / f"{BROKEN}.mrc")  # Scipion has it; the engine cannot read it

    @pytest.fixture(autouse=True)
    def _checkpoint(self, membrain_tiny_ckpt: Path) -> None:
        self.checkpoint = membrain_tiny_ckpt

    def _segment(self, checkpoint: Path, **params) -> ProtBilayerSegment:
        return self.newProtocol(ProtBilayerSegment, **{
            SegmentParam.TOMOGRAMS.value: self.tomograms, ModelParam.SOURCE.value: ModelSource.FILE.value,
            ModelParam.FILE.value: str(checkpoint), "numberOfThreads": 3, **QUICK, **params})

    def test_masks_are_named_by_tsid_at_the_scipion_sampling_rate_and_the_broken_one_is_listed(self):
        prot = self.launchProtocol(self._segment(self.checkpoint, **{
            SegmentParam.SCORES.value: True, SegmentParam.COMPONENTS.value: True, SegmentParam.SKELETON.value: True}))
        self.assertTrue(prot.isFinished())
        tomoFiles = {tomo.getTsId(): tomo.getFileName() for tomo in self.tomograms}
        for output, suffix in ((SegmentOutput.MASKS, "_seg.mrc"), (SegmentOutput.SCORES, "_scores.mrc"),
                               (SegmentOutput.COMPONENTS, "_components.mrc"), (SegmentOutput.SKELETONS, "_skeleton.mrc")):
            masks = getattr(prot, output.value)
            self.checkTomoMasks(masks, expectedSetSize=2, expectedSRate=SAMPLING_RATE, expectedDimensions=DIMENSIONS,
                                checkHeaderApix=True)
            byTsId = {mask.getTsId(): mask.clone() for mask in masks}
            self.assertEqual(sorted(byTsId), ["TS_01", "TS_02"])
            for tsId, mask in byTsId.items():
                self.assertEqual(os.path.basename(mask.getFileName()), f"{tsId}{suffix}")
                self.assertEqual(mask.getVolName(), tomoFiles[tsId])
                volume = read_volume(mask.getFileName())
                self.assertEqual(volume.voxel_size, (SAMPLING_RATE,) * 3)

        failed = getattr(prot, SegmentOutput.FAILED.value)
        self.assertEqual([tomo.getTsId() for tomo in failed], [BROKEN])
        summary = "\n".join(prot.summary())
        self.assertIn(BROKEN, summary)
        self.assertIn("truncated", summary)
        self.assertIn("Segmented: 2 of 3", summary)

        # What Scipion registered is what the engine gives at 14 Å, not at the header's 10 Å.
        scores = {mask.getTsId(): mask.getFileName() for mask in getattr(prot, SegmentOutput.SCORES.value)}
        registered = np.asarray(read_volume(scores["TS_01"]).data)
        at = {size: self._engineScores(tomoFiles["TS_01"], size) for size in (SAMPLING_RATE, HEADER_VOXEL_SIZE)}
        np.testing.assert_allclose(registered, at[SAMPLING_RATE], atol=1e-5)
        self.assertGreater(np.abs(at[SAMPLING_RATE] - at[HEADER_VOXEL_SIZE]).max(), 1e-2)

    def _engineScores(self, tomogram: str, voxel_size: float) -> np.ndarray:
        out = Path(self.getOutputPath(f"direct_{voxel_size:g}"))
        run = run_engine(["segment", tomogram, "--model", str(self.checkpoint), "--out", str(out), "--window", "64",
                          "--no-tta", "--voxel-size", str(voxel_size), "--scores", "--no-preview", "--device", "cpu",
                          "--overwrite"])
        self.assertTrue(run.ok, run.error)
        stem = Path(tomogram).stem
        return np.asarray(read_volume(out / f"{stem}_scores.mrc").data)

    def test_the_uncertainty_map_and_masks_at_extra_thresholds_are_sets_too(self):
        prot = self.launchProtocol(self._segment(self.checkpoint, **{
            SegmentParam.TTA.value: True, SegmentParam.UNCERTAINTY.value: True, SegmentParam.SCORES.value: True,
            SegmentParam.EXTRA_THRESHOLDS.value: "1.5"}))
        self.assertTrue(prot.isFinished())
        scores = {mask.getTsId(): mask.getFileName() for mask in getattr(prot, SegmentOutput.SCORES.value)}
        for output, suffix in ((SegmentOutput.UNCERTAINTY.value, "_uncertainty.mrc"),
                               ("tomoMasksT1p5", "_seg_t1.5.mrc")):
            items = getattr(prot, output)
            self.checkTomoMasks(items, expectedSetSize=2, expectedSRate=SAMPLING_RATE, expectedDimensions=DIMENSIONS,
                                checkHeaderApix=True)
            for item in items:
                self.assertEqual(os.path.basename(item.getFileName()), f"{item.getTsId()}{suffix}")
        for mask in prot.tomoMasksT1p5:
            np.testing.assert_array_equal(read_volume(mask.getFileName()).data,
                                          read_volume(scores[mask.getTsId()]).data > 1.5)
        for item in getattr(prot, SegmentOutput.UNCERTAINTY.value):
            data = read_volume(item.getFileName()).data
            self.assertEqual(data.dtype, np.float32)
            self.assertTrue(0 <= data.min() and data.max() <= 2 / 7)
        summary = "\n".join(prot.summary())
        self.assertIn("1.5 (tomoMasksT1p5)", summary)
        self.assertIn("Uncertainty (tomoUncertainty)", summary)

    def test_a_run_where_every_tomogram_fails_fails_with_the_reasons(self):
        bogus = Path(self.getOutputPath("not_a_model.ckpt"))
        bogus.write_text("this is not a checkpoint\n")
        prot = self._segment(bogus)
        with self.assertRaises(Exception):
            self.launchProtocol(prot)
        self.assertTrue(prot.isFailed())
        self.assertIn("every tomogram", prot.getErrorMessage())
        self.assertEqual(sorted(prot.getFailures()), TS_IDS)

    def test_validation_lists_every_problem(self):
        prot = self.newProtocol(ProtBilayerSegment, **{
            SegmentParam.TOMOGRAMS.value: self.tomograms, SegmentParam.WINDOW.value: 100,
            ModelParam.SOURCE.value: ModelSource.TRAINED.value})
        errors = prot.validate()
        self.assertTrue(any("window=100" in e for e in errors), errors)
        self.assertTrue(any("trained model" in e for e in errors), errors)


class TestBilayerSegmentRunFolder(BilayerScipionTest):
    """The extra folder is one resumable run (bilayer.batch) shared by the steps running in parallel:
    a record per tomogram, a summary with the failed one's reason, finished steps skipped when run
    again, and a Continue with other parameters refused."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        folder = cls.inputs / "tomograms"
        write_scenes(folder, ["TS_01", "TS_02"], seed=3)
        with mrcfile.open(folder / "TS_02.mrc", mode="r+") as m:
            m.data[...] = 3  # readable, but the same value everywhere: fails during its work
        cls.tomograms = cls.importTomograms()

    @pytest.fixture(autouse=True)
    def _checkpoint(self, membrain_tiny_ckpt: Path) -> None:
        self.checkpoint = membrain_tiny_ckpt

    def test_parallel_steps_share_one_run_folder(self):
        prot = self.launchProtocol(self.newProtocol(ProtBilayerSegment, **{
            SegmentParam.TOMOGRAMS.value: self.tomograms, ModelParam.SOURCE.value: ModelSource.FILE.value,
            ModelParam.FILE.value: str(self.checkpoint), "numberOfThreads": 3, **QUICK}))
        self.assertTrue(prot.isFinished())
        extra = Path(prot._getExtraPath())
        self.assertTrue((extra / "bilayer_run.json").is_file())
        self.assertEqual(len(list((extra / "records").glob("*.json"))), 2)
        with open(extra / "summary.csv", newline="") as f:
            rows = {Path(row["tomogram"]).name: row for row in csv.DictReader(f)}
        self.assertEqual({name: row["status"] for name, row in rows.items()}, {"TS_01.mrc": "done",
                                                                                "TS_02.mrc": "failed"})
        self.assertIn("same value everywhere", rows["TS_02.mrc"]["reason"])
        self.assertEqual([t.getTsId() for t in getattr(prot, SegmentOutput.FAILED.value)], ["TS_02"])
        self.assertEqual([m.getTsId() for m in getattr(prot, SegmentOutput.MASKS.value)], ["TS_01"])
        # bilayer status extra: each tomogram once, by the link that outlives the run (not in tmp/)
        self.assertEqual(sorted((Path(row.tomogram).name, row.status) for row in run_status(extra)),
                         [("TS_01.mrc", "done"), ("TS_02.mrc", "failed")])
        self.assertTrue(all(Path(row.tomogram).exists() for row in run_status(extra)))

        # A finished step run again (a Continue of an interrupted protocol) is skipped by the engine.
        mask = extra / "TS_01_seg.mrc"
        stamp = mask.stat().st_mtime_ns
        previous = os.getcwd()
        os.chdir(self.proj.getPath())  # the protocol's paths are the project's
        try:
            prot._initialize()
            with self.assertLogs("bilayer_scipion.engine", level="INFO") as logs:
                self.assertTrue(run_engine(prot._segmentArgs("TS_01"), tag="TS_01").ok)
        finally:
            os.chdir(previous)
        self.assertIn("1 done before, 0 to do", "\n".join(logs.output))
        self.assertEqual(mask.stat().st_mtime_ns, stamp)

        # A Continue with another parameter would mix settings in one output set: refused before it runs.
        getattr(prot, SegmentParam.THRESHOLD.value).set(0.5)
        errors = prot.validate()
        self.assertTrue(any("other parameters (threshold)" in e and "Restart" in e for e in errors), errors)
        prot.runMode.set(MODE_RESTART)  # a Restart empties the extra folder first
        self.assertFalse(any("other parameters" in e for e in prot.validate()))
        prot.runMode.set(MODE_RESUME)
        getattr(prot, SegmentParam.THRESHOLD.value).set(defaults.inference().threshold)
        self.assertFalse(any("other parameters" in e for e in prot.validate()))
