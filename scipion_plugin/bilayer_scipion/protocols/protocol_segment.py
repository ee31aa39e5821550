"""Segment membranes in a set of tomograms with ``bilayer segment``, one step per tomogram."""

from __future__ import annotations

import enum
import os

from pyworkflow import BETA
from pyworkflow.protocol import GE, GPU_LIST, USE_GPU, BooleanParam, EnumParam, FloatParam, IntParam, \
    LEVEL_ADVANCED, PointerParam, StringParam
from pyworkflow.protocol.constants import MODE_RESTART
from pyworkflow.utils import Message
from tomo.objects import SetOfTomoMasks, SetOfTomograms, TomoMask, Tomogram

from bilayer import __version__
from bilayer.errors import BilayerError
from bilayer_scipion import defaults
from bilayer_scipion.constants import CITATION_MEMBRAIN_V2
from bilayer_scipion.protocols.model_choice import add_model_params, model_args, model_description, model_errors
from bilayer_scipion.protocols.protocol_base import FAILED_OUTPUT, ProtBilayerBase

__all__ = ["OPTIONS_ELSEWHERE", "ProtBilayerSegment", "SegmentOutput", "SegmentParam", "threshold_output"]


class SegmentParam(str, enum.Enum):
    """Form names of the segment protocol's parameters (the model's are in ``ModelParam``)."""

    TOMOGRAMS = "inputTomograms"
    THRESHOLD = "threshold"
    TTA = "tta"
    TTA_GRID = "ttaGrid"
    WINDOW = "window"
    FIT_WINDOW = "fitWindow"
    OVERLAP = "overlap"
    PADDING = "padding"
    RESCALE = "rescale"
    RESCALE_LIKE_MEMBRAIN = "rescaleLikeMembrain"
    SCORES = "keepScores"
    COMPONENTS = "keepComponents"
    MIN_SIZE = "minSize"
    SKELETON = "keepSkeleton"
    UNCERTAINTY = "keepUncertainty"
    SMOOTH_UNCERTAINTY = "smoothUncertainty"
    EXTRA_THRESHOLDS = "extraThresholds"
    PRECISION = "precision"
    BATCH_SIZE = "batchSize"


#: Engine options (``SegmentOptions.names()``) this protocol sets otherwise than by a SegmentParam of
#: the same name, and how.
OPTIONS_ELSEWHERE = {
    "model": "the model parameters (ModelParam)",
    "device": "Scipion's GPU parameters (useGpu, gpuList)",
    "voxel_size": "the sampling rate of the input set, always passed",
    "preview": "not written: Scipion's viewers show the masks",
}


class SegmentOutput(str, enum.Enum):
    """Output names: one SetOfTomoMasks per kind, and the tomograms that failed. The masks at each
    extra threshold are one more SetOfTomoMasks each, named by :func:`threshold_output`."""

    MASKS = "tomoMasks"
    SCORES = "tomoScores"
    COMPONENTS = "tomoComponents"
    SKELETONS = "tomoSkeletons"
    UNCERTAINTY = "tomoUncertainty"
    FAILED = FAILED_OUTPUT


#: The engine's output kind behind each mask-like output.
_KINDS = {SegmentOutput.MASKS: "mask", SegmentOutput.SCORES: "scores", SegmentOutput.COMPONENTS: "components",
          SegmentOutput.SKELETONS: "skeleton", SegmentOutput.UNCERTAINTY: "uncertainty"}


def threshold_output(threshold: float) -> str:
    """The output set of the masks at an extra threshold, an identifier as Scipion needs one:
    ``tomoMasksT1p5`` for 1.5, ``tomoMasksTm0p5`` for -0.5."""
    text = f"{threshold:g}".replace("-", "m").replace(".", "p").replace("+", "")
    return f"{SegmentOutput.MASKS.value}T{text}"


class ProtBilayerSegment(ProtBilayerBase):
    """Segment membranes in tomograms with Bilayer (the MemBrain v2 / MemBrain-seg method).

    Each tomogram is segmented in its own step, so several run at once with more threads
    or GPUs. The Scipion sampling rate is passed to the engine (the network resamples
    windows to its own voxel size) and written into every output's header. Outputs are
    named by tsId and linked to their tomograms. A tomogram that fails is listed in the
    summary and in the output failedTomograms; the others complete.
    """

    # --------------------------- ATTRIBUTES -----------------------------------
    _label = "segment membranes"
    _devStatus = BETA
    _possibleOutputs = {SegmentOutput.MASKS.value: SetOfTomoMasks, SegmentOutput.SCORES.value: SetOfTomoMasks,
                        SegmentOutput.COMPONENTS.value: SetOfTomoMasks, SegmentOutput.SKELETONS.value: SetOfTomoMasks,
                        SegmentOutput.UNCERTAINTY.value: SetOfTomoMasks, SegmentOutput.FAILED.value: SetOfTomograms}
    _INPUT = SegmentParam.TOMOGRAMS.value

    # --------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form) -> None:  # noqa: ANN001
        engine, kept = defaults.inference(), defaults.outputs()
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(SegmentParam.TOMOGRAMS.value, PointerParam, pointerClass="SetOfTomograms", important=True,
                      label="Tomograms",
                      help="Tomograms to segment. Their Scipion sampling rate (Å/px) is used, not the file headers'.")
        add_model_params(form, purpose="segment the membranes")
        form.addParam(SegmentParam.THRESHOLD.value, FloatParam, default=engine.threshold, label="Threshold",
                      help="A voxel is membrane where the network's score (a logit, unitless) exceeds this. "
                           "Higher values give thinner, surer masks; lower values find fainter membranes.")
        form.addParam(SegmentParam.TTA.value, BooleanParam, default=engine.tta, label="Test-time augmentation?",
                      help="Average the 8 mirrored copies of every window: slightly better masks, 8x slower.")
        form.addParam(SegmentParam.TTA_GRID.value, EnumParam, choices=defaults.tta_grids(), default=0,
                      condition=SegmentParam.TTA.value, expertLevel=LEVEL_ADVANCED, label="Mirrored windows",
                      help="Where the mirrored copies' windows go: membrain mirrors the tomogram, then places "
                           "windows (MemBrain-seg's exact scores); window mirrors each window in place (one "
                           "pass, eight with the uncertainty map; slightly different scores).")
        form.addParam(SegmentParam.RESCALE.value, BooleanParam, default=engine.rescale, expertLevel=LEVEL_ADVANCED,
                      label="Rescale to the model's voxel size?",
                      help="Resample each window to the voxel size (Å) the model was trained at, and back. "
                           "Turn off only for tomograms already at the model's voxel size.")
        form.addParam(SegmentParam.RESCALE_LIKE_MEMBRAIN.value, BooleanParam, default=engine.rescale_like_membrain,
                      condition=SegmentParam.RESCALE.value, expertLevel=LEVEL_ADVANCED,
                      label="Rescale like MemBrain-seg?",
                      help="Resample exactly as MemBrain-seg, including its (old/new)³ intensity scaling; "
                           "No keeps intensities.")

        form.addSection(label="Outputs")
        form.addParam(SegmentParam.SCORES.value, BooleanParam, default=kept.scores, label="Keep the scores?",
                      help="Also output the network's scores (float32 logits, membrane where > threshold) "
                           "as the set tomoScores.")
        form.addParam(SegmentParam.COMPONENTS.value, BooleanParam, default=kept.components,
                      label="Label connected membranes?",
                      help="Also output the connected membranes (26-connectivity), numbered by size "
                           "(1 = largest), as the set tomoComponents.")
        form.addParam(SegmentParam.MIN_SIZE.value, IntParam, default=kept.min_size, validators=[GE(0)],
                      condition=SegmentParam.COMPONENTS.value, label="Smallest membrane (voxels)",
                      help="Drop connected membranes smaller than this many voxels from the components; "
                           "0 keeps all.")
        form.addParam(SegmentParam.SKELETON.value, BooleanParam, default=kept.skeleton, label="Skeletonize?",
                      help="Also output MemBrain-seg's one-voxel surface skeleton of each mask as the set "
                           "tomoSkeletons.")
        form.addParam(SegmentParam.UNCERTAINTY.value, BooleanParam, default=kept.uncertainty,
                      condition=SegmentParam.TTA.value, label="Uncertainty map?",
                      help="Also output how much the 8 mirrored copies of test-time augmentation disagree, as the "
                           "set tomoUncertainty (float32): the variance of their membrane probabilities "
                           "(probability², 0 where they agree; MemBrain-seg's uncertainty map). Needs test-time "
                           "augmentation. Bright regions are where the masks are least sure: the places to check "
                           "or annotate first.")
        form.addParam(SegmentParam.SMOOTH_UNCERTAINTY.value, BooleanParam, default=kept.smooth_uncertainty,
                      condition=f"{SegmentParam.TTA.value} and {SegmentParam.UNCERTAINTY.value}",
                      expertLevel=LEVEL_ADVANCED, label="Smooth the uncertainty map?",
                      help="MemBrain-seg's smoothing: voxels of a mask take the value of its membrane's core (so "
                           "the map says how sure the membrane is, not where its edge falls), then a 5×5-voxel "
                           "median in each z section. No: the raw variance.")
        form.addParam(SegmentParam.EXTRA_THRESHOLDS.value, StringParam, default="",
                      label="Extra thresholds",
                      help="More masks from the same scores, without running the network again: one set "
                           "tomoMasksT<threshold> per threshold (logits, unitless, like Threshold), e.g. "
                           "'0.5, 1.5' gives tomoMasksT0p5 and tomoMasksT1p5. Separate them with commas or "
                           "spaces; empty: none.")

        form.addSection(label="Sliding window")
        form.addParam(SegmentParam.WINDOW.value, IntParam, default=engine.window, expertLevel=LEVEL_ADVANCED,
                      label="Window size (voxels)",
                      help="Edge of the cubic windows the network sees, in the model's voxels (a multiple of 32). "
                           "Smaller windows need less GPU memory but see less context.")
        form.addParam(SegmentParam.FIT_WINDOW.value, BooleanParam, default=engine.fit_window,
                      expertLevel=LEVEL_ADVANCED, label="Fit window to tomogram?",
                      help="Let the window grow by up to 32 voxels where that predicts fewer voxels, e.g. one "
                           "window instead of eight 160³ ones for a 162³ tomogram. No places the windows "
                           "exactly as MemBrain-seg does.")
        form.addParam(SegmentParam.OVERLAP.value, FloatParam, default=engine.overlap, expertLevel=LEVEL_ADVANCED,
                      label="Window overlap (fraction)",
                      help="Fraction of a window shared with each neighbour, in [0, 1). MemBrain-seg uses 0.5; "
                           "0.25 is faster.")
        form.addParam(SegmentParam.PADDING.value, EnumParam, choices=defaults.paddings(), default=0,
                      expertLevel=LEVEL_ADVANCED, label="Padding of thin tomograms",
                      help="What fills a window past the faces of a tomogram thinner than the window (often "
                           "along z): reflect mirrors the tomogram; zeros is MemBrain-seg's (its exact "
                           "scores), which can make the network mark the noise of thin tomograms.")
        form.addParam(SegmentParam.PRECISION.value, EnumParam, choices=defaults.precisions(), default=0,
                      expertLevel=LEVEL_ADVANCED, label="Arithmetic",
                      help="Number format of the network: auto uses bfloat16 where the hardware has it "
                           "(GPUs, recent CPUs), else float32. float16 needs a GPU.")
        form.addParam(SegmentParam.BATCH_SIZE.value, IntParam, default=engine.batch_size, validators=[GE(1)],
                      expertLevel=LEVEL_ADVANCED, label="Windows per batch",
                      help="Windows predicted together; more is faster on a large GPU.")
        form.addHidden(USE_GPU, BooleanParam, default=True, label="Use GPU?",
                       help="Segment on GPUs (the CPU when none is visible); No runs on the CPU.")
        form.addHidden(GPU_LIST, StringParam, default="0", label="GPU IDs",
                       help="GPUs to use, e.g. '0 1'. With several threads each running tomogram gets its own GPU.")
        form.addParallelSection(threads=1, mpi=0)

    # --------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self) -> None:
        self._insertPerTomogramSteps(self.segmentStep, needsGPU=True)

    # --------------------------- STEPS functions ------------------------------
    def segmentStep(self, tsId: str) -> None:
        """Run ``bilayer segment`` on one tomogram; a failure is listed, not raised."""
        self._runEngine(tsId, self._segmentArgs(tsId))

    # --------------------------- UTILS functions ------------------------------
    def _segmentArgs(self, tsId: str) -> list[str]:
        """The engine's argv (after ``bilayer``) for one tomogram. ``--out`` is the extra folder, one
        run folder (:mod:`bilayer.batch.runner`) shared by the steps: a finished tomogram is skipped,
        and ``--overwrite`` only matters for an extra folder of a Bilayer before run folders (it
        replaces that folder's outputs)."""
        tomo = self._itemsByTsId[tsId]
        return ["segment", self._inputLink(tsId), "--out", os.path.abspath(self._getExtraPath()),
                *self._optionArgs(float(tomo.getSamplingRate()))]

    def _optionArgs(self, samplingRate: float) -> list[str]:
        """The engine's options for tomograms at ``samplingRate`` Å/px, the same for every step."""
        args = ["--voxel-size", repr(samplingRate),
                "--threshold", repr(float(self._value(SegmentParam.THRESHOLD))),
                "--tta" if self._value(SegmentParam.TTA) else "--no-tta",
                "--tta-grid", defaults.tta_grids()[self._value(SegmentParam.TTA_GRID)],
                "--window", str(self._value(SegmentParam.WINDOW)),
                "--fit-window" if self._value(SegmentParam.FIT_WINDOW) else "--fixed-window",
                "--overlap", repr(float(self._value(SegmentParam.OVERLAP))),
                "--padding", self._padding(),
                "--precision", self._precision(),
                "--batch-size", str(self._value(SegmentParam.BATCH_SIZE)),
                *model_args(self), *self._deviceArgs(), "--no-preview", "--overwrite"]
        if not self._value(SegmentParam.RESCALE):
            args.append("--no-rescale")
        elif self._value(SegmentParam.RESCALE_LIKE_MEMBRAIN):
            args.append("--rescale-like-membrain")
        if self._value(SegmentParam.SCORES):
            args.append("--scores")
        if self._value(SegmentParam.COMPONENTS):
            args += ["--components", "--min-size", str(self._value(SegmentParam.MIN_SIZE))]
        if self._value(SegmentParam.SKELETON):
            args.append("--skeleton")
        if self._uncertainty():
            args.append("--uncertainty")
            if not self._value(SegmentParam.SMOOTH_UNCERTAINTY):
                args.append("--raw-uncertainty")
        if (self._value(SegmentParam.EXTRA_THRESHOLDS) or "").strip():
            args += ["--extra-threshold", self._value(SegmentParam.EXTRA_THRESHOLDS)]  # the engine reads the text
        return args

    def _changedSettings(self) -> list[str]:
        """The engine settings that differ from those the extra folder's run was made with (none
        when it has no run yet, or when a Restart empties it first). Read through the engine's own
        rules: the options ``bilayer segment`` would run with and the run record's comparison."""
        from bilayer.batch.runner import changed_run_settings
        from bilayer.cli_segment import segment_options_from_args

        tomos = self._getInputSet()
        if self.runMode.get() == MODE_RESTART or tomos is None:
            return []
        options = segment_options_from_args(["tomogram.mrc", *self._optionArgs(float(tomos.getSamplingRate()))])
        return changed_run_settings(self._getExtraPath(), options)

    def _value(self, param: SegmentParam):  # noqa: ANN202  (the parameter's own type)
        return getattr(self, param.value).get()

    def _uncertainty(self) -> bool:
        """Whether the uncertainty map is made: asked for, with test-time augmentation (the form hides
        the question without it)."""
        return bool(self._value(SegmentParam.TTA) and self._value(SegmentParam.UNCERTAINTY))

    def _precision(self) -> str:
        return defaults.precisions()[self._value(SegmentParam.PRECISION)]

    def _padding(self) -> str:
        return defaults.paddings()[self._value(SegmentParam.PADDING)]

    def _wanted(self) -> list[SegmentOutput]:
        wanted = [SegmentOutput.MASKS]
        for output, param in ((SegmentOutput.SCORES, SegmentParam.SCORES),
                              (SegmentOutput.COMPONENTS, SegmentParam.COMPONENTS),
                              (SegmentOutput.SKELETONS, SegmentParam.SKELETON)):
            if self._value(param):
                wanted.append(output)
        if self._uncertainty():
            wanted.append(SegmentOutput.UNCERTAINTY)
        return wanted

    def _outputFiles(self, tsId: str) -> dict[str, str]:
        files = {output.value: self._getExtraPath(f"{tsId}{defaults.output_suffix(_KINDS[output])}")
                 for output in self._wanted()}
        for threshold, name in defaults.extra_masks(f"{tsId}.mrc", self._value(SegmentParam.EXTRA_THRESHOLDS)).items():
            files[threshold_output(threshold)] = self._getExtraPath(name)
        return files

    def _newItem(self, source: Tomogram, path: str) -> TomoMask:
        mask = TomoMask()
        mask.copyInfo(source)
        mask.setFileName(path)
        mask.setVolName(source.getFileName())
        return mask

    # --------------------------- INFO functions -------------------------------
    def _validate(self) -> list[str]:
        errors = list(super()._validate())
        errors += self._inputErrors()
        errors += model_errors(self)
        problem = defaults.inference_error(
            window=self._value(SegmentParam.WINDOW), overlap=self._value(SegmentParam.OVERLAP),
            threshold=self._value(SegmentParam.THRESHOLD), batch_size=self._value(SegmentParam.BATCH_SIZE),
            precision=self._precision(), padding=self._padding(),
            tta_grid=defaults.tta_grids()[self._value(SegmentParam.TTA_GRID)])
        if problem:
            errors.append(f"Invalid segmentation setting: {problem}.")
        problem = defaults.outputs_error(
            self._value(SegmentParam.TTA), uncertainty=self._uncertainty(),
            extra_thresholds=self._value(SegmentParam.EXTRA_THRESHOLDS) or ())
        if problem:
            errors.append(f"Invalid output setting: {problem}.")
        if not errors:
            errors += self._continueErrors()
        return errors

    def _continueErrors(self) -> list[str]:
        """Continuing a run whose finished tomograms were made with other parameters would mix them
        in one output set: refuse, naming the parameters (engine option names) and the two ways on."""
        try:
            changed = self._changedSettings()
        except BilayerError as e:
            return [f"Cannot read this run's earlier settings: {e}"]
        if not changed:
            return []
        names = ", ".join("model" if name == "model_id" else name for name in changed)
        return [f"The tomograms segmented so far used other parameters ({names}). Set them back to continue "
                "this run, or Restart it to segment every tomogram with the new ones."]

    def _summary(self) -> list[str]:
        tomos = self._getInputSet()
        if tomos is None:
            return ["No tomograms chosen."]
        lines = [f"Tomograms: {tomos.getSize()} at {tomos.getSamplingRate():.2f} Å/px (passed to Bilayer and "
                 "written into every output header).",
                 f"Model: {model_description(self)}; threshold {self._value(SegmentParam.THRESHOLD):g}, "
                 f"window {self._value(SegmentParam.WINDOW)}, test-time augmentation "
                 f"{'on' if self._value(SegmentParam.TTA) else 'off'}."]
        extra = defaults.extra_masks("", self._value(SegmentParam.EXTRA_THRESHOLDS))
        if extra:
            listed = ", ".join(f"{t:g} ({threshold_output(t)})" for t in extra)
            lines.append(f"Masks at extra thresholds: {listed}.")
        if SegmentOutput.UNCERTAINTY in self._wanted():
            how = "smoothed as MemBrain-seg does" if self._value(SegmentParam.SMOOTH_UNCERTAINTY) else "raw"
            lines.append(f"Uncertainty ({SegmentOutput.UNCERTAINTY.value}): variance of the membrane probability over "
                         f"the 8 mirrored copies, {how}.")
        masks = getattr(self, SegmentOutput.MASKS.value, None)
        if masks is not None:
            lines.append(f"Segmented: {masks.getSize()} of {tomos.getSize()}.")
        return lines + self._failureSummary()

    def _methods(self) -> list[str]:
        tomos = self._getInputSet()
        if tomos is None:
            return []
        return [f"Membranes were segmented in {tomos.getSize()} tomograms ({tomos.getSamplingRate():.2f} Å/px) with "
                f"Bilayer {__version__}, an implementation of the MemBrain-seg method of MemBrain v2 "
                f"[{CITATION_MEMBRAIN_V2}], using the {model_description(self)}, a sliding window of "
                f"{self._value(SegmentParam.WINDOW)} voxels"
                f"{' with 8-fold test-time augmentation' if self._value(SegmentParam.TTA) else ''} and a score "
                f"threshold of {self._value(SegmentParam.THRESHOLD):g}."]

    def _citations(self) -> list[str]:
        return [CITATION_MEMBRAIN_V2]
