"""The train / fine-tune protocol in a real headless Scipion project, on tiny synthetic data.

A tiny network is trained on two tomogram/label pairs (labels 0/1/2, imported as a
SetOfTomoMasks) and validated on a third; the model object must point at a checkpoint
trained at the Scipion sampling rate, show its curves, segment the held-out tomogram's
membranes through the segment protocol, and be fine-tunable.
"""

from __future__ import annotations

import csv
import os

import pytest

pytest.importorskip("pyworkflow", reason="Scipion is not installed (pip install '.[scipion]'): "
                                         "the Scipion plugin cannot be tested")

import numpy as np  # noqa: E402
from pyworkflow.gui.plotter import Plotter  # noqa: E402
from scipion_testdata import DIMENSIONS, SAMPLING_RATE, BilayerScipionTest, write_scenes  # noqa: E402

from bilayer.io import read_volume  # noqa: E402
from bilayer.model import load_checkpoint  # noqa: E402
from bilayer_scipion import defaults  # noqa: E402
from bilayer_scipion.objects import BilayerModel  # noqa: E402
from bilayer_scipion.protocols import ProtBilayerSegment, ProtBilayerTrain  # noqa: E402
from bilayer_scipion.protocols.model_choice import ModelParam, ModelSource  # noqa: E402
from bilayer_scipion.protocols.protocol_segment import SegmentOutput, SegmentParam  # noqa: E402
from bilayer_scipion.protocols.protocol_train import TrainMode, TrainOutput, TrainParam  # noqa: E402
from bilayer_scipion.viewers import BilayerTrainingViewer  # noqa: E402

TS_IDS = ["TS_01", "TS_02", "TS_03"]
HELD_OUT = "TS_03"
EPOCHS, STEPS = 8, 25
#: A four-level network of 8-64 channels: trains in seconds on a CPU.
TINY_NETWORK = "network:\n  filters: [8, 16, 32, 64]\n  strides: [1, 2, 2, 2]\n"


def _quick_training(**extra) -> dict:
    """Form values for a short CPU run (the form's values override the settings file's)."""
    return {TrainParam.PATCH_SIZE.value: 32, TrainParam.BATCH_SIZE.value: 2, TrainParam.STEPS_PER_EPOCH.value: STEPS,
            TrainParam.AUGMENT.value: False, TrainParam.COMPILE.value: False, TrainParam.WORKERS.value: 0,
            TrainParam.PRECISION.value: defaults.training_precisions().index("float32"), "useGpu": False, **extra}


class TestBilayerTrain(BilayerScipionTest):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.labels = write_scenes(cls.inputs / "tomograms", TS_IDS, seed=11, labels_folder=cls.inputs / "labels")
        cls.tomograms = cls.importTomograms()
        cls.masks = cls.importMasks(cls.tomograms)
        settings = cls.inputs / "tiny.yaml"
        settings.write_text(TINY_NETWORK)
        cls.trained = cls.launchProtocol(cls.newProtocol(ProtBilayerTrain, **{
            TrainParam.TOMOGRAMS.value: cls.tomograms, TrainParam.MASKS.value: cls.masks,
            TrainParam.VALIDATION.value: HELD_OUT, TrainParam.EPOCHS.value: EPOCHS,
            TrainParam.SETTINGS.value: str(settings), **_quick_training()}))
        cls.model = getattr(cls.trained, TrainOutput.model.name)

    def test_the_model_is_a_checkpoint_trained_at_the_scipion_sampling_rate(self):
        self.assertIsInstance(self.model, BilayerModel)
        self.assertFalse(self.model.isFineTuned())
        self.assertAlmostEqual(self.model.getSamplingRate(), SAMPLING_RATE)
        self.assertEqual(os.path.basename(self.model.getPath()), "best.bilayer.pt")  # validation picked it
        info = load_checkpoint(self.model.getPath()).info
        self.assertAlmostEqual(info.voxel_size, SAMPLING_RATE)
        self.assertEqual(info.network.filters, (8, 16, 32, 64))
        with open(self.model.getMetricsFile(), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([int(r["epoch"]) for r in rows], list(range(1, EPOCHS + 1)))
        self.assertNotEqual(rows[-1]["val_dice"], "")  # the held-out pair was used for validation
        summary = "\n".join(self.trained.summary())
        self.assertIn("2 tomogram-mask pairs (1 held out", summary)
        self.assertIn("Last epoch", summary)
        self.assertIn("10.1101/2024.01.05.574336", "\n".join(self.trained.methods()))

    def test_the_viewer_shows_the_training_curves(self):
        import matplotlib.image

        expected = matplotlib.image.imread(self.model.getCurvesFile()).shape
        for target in (self.trained, self.model):
            views = BilayerTrainingViewer(project=self.proj)._visualize(target)
            self.assertEqual(len(views), 1)
            self.assertIsInstance(views[0], Plotter)
            images = views[0].getFigure().axes[0].get_images()
            self.assertEqual(images[0].get_array().shape, expected)
            views[0].close()

    def test_segment_with_the_trained_model_finds_the_held_out_membranes(self):
        prot = self.launchProtocol(self.newProtocol(ProtBilayerSegment, **{
            SegmentParam.TOMOGRAMS.value: self.tomograms, ModelParam.SOURCE.value: ModelSource.TRAINED.value,
            ModelParam.TRAINED.value: self.model, SegmentParam.WINDOW.value: 64, SegmentParam.TTA.value: False,
            "useGpu": False}))
        masks = getattr(prot, SegmentOutput.MASKS.value)
        self.checkTomoMasks(masks, expectedSetSize=3, expectedSRate=SAMPLING_RATE, expectedDimensions=DIMENSIONS,
                            checkHeaderApix=True)
        mask = next(m for m in masks if m.getTsId() == HELD_OUT)
        found = np.asarray(read_volume(mask.getFileName()).data) > 0
        labels = self.labels[HELD_OUT]
        scored = labels != 2  # ignore-labelled voxels count for nothing
        membrane = (labels == 1) & scored
        found &= scored
        overlap = (found & membrane).sum()
        self.assertGreater(found.sum(), 0)
        precision, recall = overlap / found.sum(), overlap / membrane.sum()
        chance = membrane.sum() / scored.sum()
        self.assertGreater(precision, 3 * chance, f"precision {precision:.3f}, membrane fraction {chance:.3f}")
        self.assertGreater(recall, 0.2, f"recall {recall:.3f}")

    def test_fine_tuning_starts_from_the_trained_model(self):
        tuned = self.launchProtocol(self.newProtocol(ProtBilayerTrain, **{
            TrainParam.TOMOGRAMS.value: self.tomograms, TrainParam.MASKS.value: self.masks,
            TrainParam.MODE.value: TrainMode.FINETUNE.value, ModelParam.SOURCE.value: ModelSource.TRAINED.value,
            ModelParam.TRAINED.value: self.model, TrainParam.EPOCHS.value: 1, TrainParam.TIME_LIMIT.value: 30.0,
            **_quick_training(**{TrainParam.STEPS_PER_EPOCH.value: 2})}))
        model = getattr(tuned, TrainOutput.model.name)
        self.assertTrue(model.isFineTuned())
        recipe = load_checkpoint(model.getPath()).info.training["recipe"]
        self.assertEqual(recipe["time_limit"], 30.0)  # the form's limit reached the engine
        with open(model.getMetricsFile(), newline="") as f:
            self.assertEqual([row["val_dice"] for row in csv.DictReader(f)], [""])  # no validation pair given
        info = load_checkpoint(model.getPath()).info
        self.assertIn("finetune", info.source)
        self.assertEqual(info.network.filters, (8, 16, 32, 64))  # the starting model's architecture
        self.assertIn("Starting model: trained in Scipion", "\n".join(tuned.summary()))

    def test_validation_pairs_by_tsid(self):
        prot = self.newProtocol(ProtBilayerTrain, **{
            TrainParam.TOMOGRAMS.value: self.tomograms, TrainParam.MASKS.value: self.masks,
            TrainParam.VALIDATION.value: "TS_01, TS_02 TS_03 TS_99", TrainParam.PATCH_SIZE.value: 100})
        errors = prot.validate()
        self.assertTrue(any("TS_99" in e for e in errors), errors)
        self.assertTrue(any("Every pair is held out" in e for e in errors), errors)
        self.assertTrue(any("patch_size 100" in e for e in errors), errors)
