"""Preprocess a set of tomograms with ``bilayer preprocess`` (rescale, match spectrum or deconvolve),
one step per tomogram, giving a SetOfTomograms at the new sampling rate."""

from __future__ import annotations

import enum
import json
import os

from pyworkflow import BETA
from pyworkflow.protocol import GE, BooleanParam, EnumParam, FileParam, FloatParam, IntParam, LEVEL_ADVANCED, \
    PointerParam
from pyworkflow.utils import Message
from tomo.objects import SetOfTomograms, Tomogram

from bilayer import __version__
from bilayer_scipion import defaults
from bilayer_scipion.constants import CITATION_MEMBRAIN_V2
from bilayer_scipion.protocols.protocol_base import FAILED_OUTPUT, ProtBilayerBase

__all__ = ["OPTIONS_ELSEWHERE", "PARAM_OF_OPTION", "PreprocessOutput", "PreprocessParam", "ProtBilayerPreprocess"]


class PreprocessParam(str, enum.Enum):
    """Form names of the preprocess protocol's parameters."""

    TOMOGRAMS = "inputTomograms"
    STEP = "step"
    TARGET_VOXEL_SIZE = "targetVoxelSize"
    SMOOTH_EDGE = "smoothEdge"
    TARGET_SPECTRUM = "targetSpectrum"
    CUTOFF = "cutoff"
    SMOOTHEN = "smoothen"
    ALMOST_ZERO_CUTOFF = "almostZeroCutoff"
    SHRINK_EXCESSIVE_VALUE = "shrinkExcessiveValue"
    DEFOCUS = "defocus"
    AMPLITUDE_CONTRAST = "amplitudeContrast"
    CS = "cs"
    VOLTAGE = "voltage"
    STRENGTH = "strength"
    FALLOFF = "falloff"
    HIGHPASS_FRACTION = "highpassFraction"
    LOWPASS = "lowpass"
    PHASE_FLIP = "phaseFlip"
    FREQUENCIES = "frequencies"


#: The engine option (``PreprocessOptions.names()``) each parameter sets.
PARAM_OF_OPTION = {
    "step": PreprocessParam.STEP,
    "target_voxel_size": PreprocessParam.TARGET_VOXEL_SIZE,
    "smooth_edge": PreprocessParam.SMOOTH_EDGE,
    "target_spectrum": PreprocessParam.TARGET_SPECTRUM,
    "cutoff": PreprocessParam.CUTOFF,
    "smoothen": PreprocessParam.SMOOTHEN,
    "almost_zero_cutoff": PreprocessParam.ALMOST_ZERO_CUTOFF,
    "shrink_excessive_value": PreprocessParam.SHRINK_EXCESSIVE_VALUE,
    "defocus": PreprocessParam.DEFOCUS,
    "amplitude_contrast": PreprocessParam.AMPLITUDE_CONTRAST,
    "cs": PreprocessParam.CS,
    "voltage": PreprocessParam.VOLTAGE,
    "strength": PreprocessParam.STRENGTH,
    "falloff": PreprocessParam.FALLOFF,
    "highpass_fraction": PreprocessParam.HIGHPASS_FRACTION,
    "lowpass": PreprocessParam.LOWPASS,
    "phase_flip": PreprocessParam.PHASE_FLIP,
    "frequencies": PreprocessParam.FREQUENCIES,
}
#: Engine options this protocol sets otherwise than by a parameter, and how.
OPTIONS_ELSEWHERE = {"voxel_size": "the sampling rate of the input set, always passed"}


class PreprocessOutput(str, enum.Enum):
    """Output names: the preprocessed tomograms, and the tomograms that failed."""

    TOMOGRAMS = "tomograms"
    FAILED = FAILED_OUTPUT


_RESCALE, _MATCH, _DECONVOLVE = (f"{PreprocessParam.STEP.value}=={i}" for i in range(3))


class ProtBilayerPreprocess(ProtBilayerBase):
    """Preprocess tomograms as MemBrain-seg's tomo_preprocessing does, with Bilayer.

    Rescale resamples each tomogram to another voxel size by Fourier cropping or padding (e.g.
    to the 10 Å of MemBrain-seg's models); match spectrum filters it so its amplitude spectrum
    follows a reference's (a TSV from ``bilayer preprocess spectrum``); deconvolve applies a
    Wiener-like CTF filter (Warp/IsoNet style). The output is a SetOfTomograms at the new
    sampling rate, named by tsId; a tomogram that fails is listed in the summary and in the
    output failedTomograms.
    """

    # --------------------------- ATTRIBUTES -----------------------------------
    _label = "preprocess tomograms"
    _devStatus = BETA
    _possibleOutputs = {PreprocessOutput.TOMOGRAMS.value: SetOfTomograms,
                        PreprocessOutput.FAILED.value: SetOfTomograms}
    _INPUT = PreprocessParam.TOMOGRAMS.value

    # --------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form) -> None:  # noqa: ANN001
        engine = defaults.preprocessing()
        matching, deconv = engine.matching, engine.deconvolution
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(PreprocessParam.TOMOGRAMS.value, PointerParam, pointerClass="SetOfTomograms", important=True,
                      label="Tomograms",
                      help="Tomograms to preprocess. Their Scipion sampling rate (Å/px) is used, not the headers'.")
        form.addParam(PreprocessParam.STEP.value, EnumParam, choices=defaults.preprocess_steps(), default=0,
                      label="Step",
                      help="rescale: resample to another voxel size (Fourier cropping or padding); match-spectrum: "
                           "filter so the amplitude spectrum follows a reference's; deconvolve: Wiener-like CTF "
                           "filter.")

        form.addParam(PreprocessParam.TARGET_VOXEL_SIZE.value, FloatParam, default=engine.target_voxel_size,
                      condition=_RESCALE, label="New voxel size (Å)",
                      help="The voxel size to resample to, e.g. 10 Å for MemBrain-seg's models.")
        form.addParam(PreprocessParam.SMOOTH_EDGE.value, BooleanParam, default=engine.smooth_edge,
                      condition=_RESCALE, expertLevel=LEVEL_ADVANCED, label="Smooth edges?",
                      help="Taper the kept spectrum with MemBrain-seg's ellipsoid and cosine edge (zero at the new "
                           "Nyquist frequency), against ringing; No is MemBrain-seg's --disable-smooth.")

        form.addParam(PreprocessParam.TARGET_SPECTRUM.value, FileParam, default=None, allowsNull=True,
                      condition=_MATCH, label="Spectrum to match (TSV)",
                      help="A spectrum written by 'bilayer preprocess spectrum' or MemBrain-seg's extract_spectrum "
                           "(columns freq, intensity), e.g. of the tomograms a model was trained on.")
        form.addParam(PreprocessParam.CUTOFF.value, IntParam, default=matching.cutoff, allowsNull=True,
                      condition=_MATCH, expertLevel=LEVEL_ADVANCED, label="Cutoff (frequency bin)",
                      help="No gain from this bin on; it can only lower the automatic cutoff. Empty: automatic.")
        form.addParam(PreprocessParam.SMOOTHEN.value, FloatParam, default=matching.smoothen, validators=[GE(0)],
                      condition=_MATCH, expertLevel=LEVEL_ADVANCED, label="Roll-off width (bins)",
                      help="Width of the sigmoid roll-off before the cutoff; 0 cuts sharply.")
        form.addParam(PreprocessParam.ALMOST_ZERO_CUTOFF.value, BooleanParam, default=matching.almost_zero_cutoff,
                      condition=_MATCH, expertLevel=LEVEL_ADVANCED, label="Cut where a spectrum nears zero?",
                      help="Cut 4 bins before either spectrum nears zero (MemBrain-seg's default).")
        form.addParam(PreprocessParam.SHRINK_EXCESSIVE_VALUE.value, FloatParam,
                      default=matching.shrink_excessive_value, condition=_MATCH, expertLevel=LEVEL_ADVANCED,
                      label="Largest gain", help="Gains above this are clipped.")

        form.addParam(PreprocessParam.DEFOCUS.value, FloatParam, default=deconv.defocus, condition=_DECONVOLVE,
                      label="Defocus (Å)", help="Underfocus (positive) of the tilt series, e.g. that of the zero tilt.")
        form.addParam(PreprocessParam.VOLTAGE.value, FloatParam, default=deconv.voltage, condition=_DECONVOLVE,
                      label="Voltage (kV)", help="Acceleration voltage of the microscope.")
        form.addParam(PreprocessParam.CS.value, FloatParam, default=deconv.cs, condition=_DECONVOLVE,
                      label="Spherical aberration (mm)", help="Cs of the microscope.")
        form.addParam(PreprocessParam.AMPLITUDE_CONTRAST.value, FloatParam, default=deconv.amplitude_contrast,
                      condition=_DECONVOLVE, label="Amplitude contrast", help="Fraction, 0-1.")
        form.addParam(PreprocessParam.STRENGTH.value, FloatParam, default=deconv.strength, condition=_DECONVOLVE,
                      label="Strength", help="Scale of the assumed SNR: 10^(3·strength) at low frequency.")
        form.addParam(PreprocessParam.FALLOFF.value, FloatParam, default=deconv.falloff, condition=_DECONVOLVE,
                      label="Falloff", help="How fast the assumed SNR falls with frequency (higher: more low-pass).")
        form.addParam(PreprocessParam.HIGHPASS_FRACTION.value, FloatParam, default=deconv.highpass_fraction,
                      condition=_DECONVOLVE, expertLevel=LEVEL_ADVANCED, label="High-pass fraction",
                      help="Where the high-pass ends, in cycles per voxel (MemBrain-seg's units).")
        form.addParam(PreprocessParam.LOWPASS.value, BooleanParam, default=deconv.lowpass, condition=_DECONVOLVE,
                      expertLevel=LEVEL_ADVANCED, label="Low-pass at the first CTF zero?",
                      help="Roll the SNR off to zero at the first zero of the CTF (MemBrain-seg's default).")
        form.addParam(PreprocessParam.PHASE_FLIP.value, BooleanParam, default=deconv.phase_flip,
                      condition=_DECONVOLVE, expertLevel=LEVEL_ADVANCED, label="Phase flip only?",
                      help="Only flip the phases where the CTF is negative, instead of the Wiener-like filter.")
        form.addParam(PreprocessParam.FREQUENCIES.value, EnumParam, choices=defaults.frequency_grids(), default=0,
                      condition=_DECONVOLVE, expertLevel=LEVEL_ADVANCED, label="Frequency grid",
                      help="membrain: MemBrain-seg's grid (its exact output); physical: each voxel's true "
                           "frequency (the exact first CTF zero).")
        form.addParallelSection(threads=1, mpi=0)

    # --------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self) -> None:
        self._insertPerTomogramSteps(self.preprocessStep, needsGPU=False)

    # --------------------------- STEPS functions ------------------------------
    def preprocessStep(self, tsId: str) -> None:
        """Run ``bilayer preprocess <step>`` on one tomogram; a failure is listed, not raised."""
        self._runEngine(tsId, self._preprocessArgs(tsId))

    # --------------------------- UTILS functions ------------------------------
    def _preprocessArgs(self, tsId: str) -> list[str]:
        """The engine's argv (after ``bilayer``) for one tomogram: the form's options go in a settings
        file, under the engine's own names, with the Scipion sampling rate as the input's voxel size."""
        settings = os.path.abspath(self._getTmpPath(f"{tsId}_preprocess.json"))
        values = {**self._options(), "voxel_size": float(self._itemsByTsId[tsId].getSamplingRate())}
        with open(settings, "w") as f:
            json.dump(values, f, indent=2)
        return ["preprocess", self._step(), self._inputLink(tsId), "--settings", settings,
                "--out", self._outputFiles(tsId)[PreprocessOutput.TOMOGRAMS.value], "--overwrite"]

    def _options(self) -> dict:
        """The engine options the form sets, by the engine's names (choices as the engine's values)."""
        values = {name: getattr(self, param.value).get() for name, param in PARAM_OF_OPTION.items()}
        values["step"] = self._step()
        values["frequencies"] = defaults.frequency_grids()[values["frequencies"]]
        if values["target_spectrum"]:
            values["target_spectrum"] = os.path.abspath(values["target_spectrum"])
        return values

    def _step(self) -> str:
        return defaults.preprocess_steps()[getattr(self, PreprocessParam.STEP.value).get()]

    def _outputSamplingRate(self) -> float | None:
        if self._step() == "rescale":
            return float(getattr(self, PreprocessParam.TARGET_VOXEL_SIZE.value).get())
        return None

    def _outputFiles(self, tsId: str) -> dict[str, str]:
        name = f"{tsId}{defaults.preprocess_suffix(self._step())}"
        return {PreprocessOutput.TOMOGRAMS.value: os.path.abspath(self._getExtraPath(name))}

    def _newItem(self, source: Tomogram, path: str) -> Tomogram:
        tomo = Tomogram()
        tomo.copyInfo(source)
        tomo.setFileName(path)
        rate = self._outputSamplingRate()
        tomo.setSamplingRate(rate if rate is not None else source.getSamplingRate())
        return tomo

    # --------------------------- INFO functions -------------------------------
    def _validate(self) -> list[str]:
        errors = list(super()._validate()) + self._inputErrors()
        values = self._options()
        if self._getInputSet() is not None and self._getInputSet().getSamplingRate():
            values["voxel_size"] = float(self._getInputSet().getSamplingRate())
        problem = defaults.preprocess_error(values)
        if problem:
            errors.append(f"Invalid preprocessing setting: {problem}.")
        return errors

    def _summary(self) -> list[str]:
        tomos = self._getInputSet()
        if tomos is None:
            return ["No tomograms chosen."]
        lines = [f"Tomograms: {tomos.getSize()} at {tomos.getSamplingRate():.2f} Å/px; step {self._step()}."]
        result = getattr(self, PreprocessOutput.TOMOGRAMS.value, None)
        if result is not None:
            lines.append(f"Preprocessed: {result.getSize()} of {tomos.getSize()}, at {result.getSamplingRate():.2f} "
                         "Å/px.")
        return lines + self._failureSummary()

    def _methods(self) -> list[str]:
        tomos = self._getInputSet()
        if tomos is None:
            return []
        what = {"rescale": "resampled by Fourier cropping or padding to "
                           f"{getattr(self, PreprocessParam.TARGET_VOXEL_SIZE.value).get()} Å/px",
                "match-spectrum": "filtered to match a reference amplitude spectrum",
                "deconvolve": "filtered with a Wiener-like CTF deconvolution"}[self._step()]
        return [f"{tomos.getSize()} tomograms ({tomos.getSamplingRate():.2f} Å/px) were {what} with Bilayer "
                f"{__version__}, following the preprocessing of MemBrain-seg (MemBrain v2 [{CITATION_MEMBRAIN_V2}])."]

    def _citations(self) -> list[str]:
        return [CITATION_MEMBRAIN_V2]
