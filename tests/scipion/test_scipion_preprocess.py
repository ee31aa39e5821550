"""The preprocess protocol in a real headless Scipion project, on synthetic tomograms.

The tomograms' headers say 10 Å, Scipion says 14 Å; one file is truncated after import. A
rescale must give a SetOfTomograms at the new sampling rate (in Scipion and in the headers),
named by tsId, equal to the engine's own rescale at 14 Å; a deconvolution keeps the sampling
rate; the broken tomogram is listed, not sinking the run.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pyworkflow", reason="Scipion is not installed (pip install '.[scipion]'): "
                                         "the Scipion plugin cannot be tested")

import numpy as np  # noqa: E402
from scipion_testdata import DIMENSIONS, SAMPLING_RATE, BilayerScipionTest, truncate, write_scenes  # noqa: E402

from bilayer.io import read_volume  # noqa: E402
from bilayer.preprocess.deconvolve import DeconvolutionOptions, deconvolve_file  # noqa: E402
from bilayer.preprocess.rescale import rescale_file, rescaled_shape  # noqa: E402
from bilayer.preprocess.steps import PreprocessOptions  # noqa: E402
from bilayer_scipion.protocols import ProtBilayerPreprocess  # noqa: E402
from bilayer_scipion.protocols.protocol_preprocess import OPTIONS_ELSEWHERE, PARAM_OF_OPTION, PreprocessOutput, \
    PreprocessParam  # noqa: E402

TS_IDS = ["TS_01", "TS_02", "TS_03"]
BROKEN = "TS_03"
TARGET = 20.0


class TestBilayerPreprocess(BilayerScipionTest):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        write_scenes(cls.inputs / "tomograms", TS_IDS, seed=4)
        cls.tomograms = cls.importTomograms()
        truncate(cls.inputs / "tomograms" / f"{BROKEN}.mrc")

    def _preprocess(self, **params) -> ProtBilayerPreprocess:
        return self.newProtocol(ProtBilayerPreprocess, **{PreprocessParam.TOMOGRAMS.value: self.tomograms,
                                                         "numberOfThreads": 3, **params})

    def test_a_rescale_gives_tomograms_at_the_new_sampling_rate_and_lists_the_broken_one(self):
        prot = self.launchProtocol(self._preprocess(**{
            PreprocessParam.STEP.value: 0, PreprocessParam.TARGET_VOXEL_SIZE.value: TARGET,
            PreprocessParam.SMOOTH_EDGE.value: False}))
        result = getattr(prot, PreprocessOutput.TOMOGRAMS.value)
        self.assertEqual(result.getSize(), 2)
        self.assertAlmostEqual(result.getSamplingRate(), TARGET)
        shape = rescaled_shape(tuple(reversed(DIMENSIONS)), SAMPLING_RATE, TARGET)
        sources = {tomo.getTsId(): tomo.getFileName() for tomo in self.tomograms}
        for tomo in result:
            self.assertAlmostEqual(tomo.getSamplingRate(), TARGET)
            self.assertTrue(tomo.getFileName().endswith(f"{tomo.getTsId()}_rescaled.mrc"))
            written = read_volume(tomo.getFileName())
            self.assertEqual(written.shape, shape)
            self.assertEqual(written.voxel_size, (TARGET,) * 3)
            expected = rescale_file(sources[tomo.getTsId()], self.inputs / f"{tomo.getTsId()}.mrc", TARGET,
                                    input_voxel_size=SAMPLING_RATE, smooth_edge=False)
            np.testing.assert_array_equal(written.data, read_volume(expected).data)
        failed = getattr(prot, PreprocessOutput.FAILED.value)
        self.assertEqual([tomo.getTsId() for tomo in failed], [BROKEN])
        self.assertIn(BROKEN, "\n".join(prot.summary()))

    def test_a_deconvolution_keeps_the_sampling_rate_and_uses_the_scipion_one(self):
        prot = self.launchProtocol(self._preprocess(**{
            PreprocessParam.STEP.value: 2, PreprocessParam.DEFOCUS.value: 30000.0,
            PreprocessParam.STRENGTH.value: 0.5}))
        result = getattr(prot, PreprocessOutput.TOMOGRAMS.value)
        self.assertAlmostEqual(result.getSamplingRate(), SAMPLING_RATE)
        tomo = result.getFirstItem()
        source = next(t.getFileName() for t in self.tomograms if t.getTsId() == tomo.getTsId())
        expected = deconvolve_file(source, self.inputs / "deconv.mrc", DeconvolutionOptions(defocus=30000.0,
                                   strength=0.5), voxel_size=SAMPLING_RATE, overwrite=True)
        written = read_volume(tomo.getFileName())
        np.testing.assert_array_equal(written.data, read_volume(expected).data)
        self.assertEqual(written.voxel_size, (SAMPLING_RATE,) * 3)

    def test_bad_settings_are_refused_by_the_engine_before_the_run(self):
        prot = self._preprocess(**{PreprocessParam.STEP.value: 1})  # match-spectrum without a spectrum
        self.assertTrue(any("needs the spectrum to match" in e for e in prot.validate()), prot.validate())
        prot = self._preprocess(**{PreprocessParam.STEP.value: 2, PreprocessParam.DEFOCUS.value: -1.0})
        self.assertTrue(any("defocus=-1.0" in e for e in prot.validate()), prot.validate())


def test_every_engine_option_is_a_parameter_or_set_elsewhere():
    missing = [n for n in PreprocessOptions.names() if n not in PARAM_OF_OPTION and n not in OPTIONS_ELSEWHERE]
    assert not missing, f"engine options the protocol cannot set: {missing}"
    assert not set(PARAM_OF_OPTION) - set(PreprocessOptions.names())
