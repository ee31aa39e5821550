"""Surface skeletons and connected membranes of existing masks, one step per mask."""

from __future__ import annotations

import enum
import os

from pyworkflow import BETA
from pyworkflow.protocol import GE, BooleanParam, IntParam, PointerParam
from pyworkflow.utils import Message
from tomo.objects import SetOfTomoMasks, TomoMask, Tomogram

from bilayer import __version__
from bilayer_scipion import defaults
from bilayer_scipion.constants import CITATION_MEMBRAIN_V2
from bilayer_scipion.protocols.protocol_base import FAILED_OUTPUT, ProtBilayerBase

__all__ = ["ProtBilayerSkeleton", "SkeletonOutput", "SkeletonParam"]


class SkeletonParam(str, enum.Enum):
    """Form names of the skeleton protocol's parameters."""

    MASKS = "inputMasks"
    SKELETON = "doSkeleton"
    COMPONENTS = "doComponents"
    MIN_SIZE = "minSize"


class SkeletonOutput(str, enum.Enum):
    """Output names: skeletons, components, and the masks that failed."""

    SKELETONS = "tomoSkeletons"
    COMPONENTS = "tomoComponents"
    FAILED = FAILED_OUTPUT


class ProtBilayerSkeleton(ProtBilayerBase):
    """Skeletonize membrane masks and/or label their connected membranes with Bilayer.

    The skeleton is MemBrain-seg's one-voxel surface skeleton (Hessian-based); components
    are the connected membranes (26-connectivity) numbered by size, 1 the largest. Any
    SetOfTomoMasks works (every non-zero voxel is membrane). Outputs are named by tsId,
    carry the masks' sampling rate in their headers and link to the masks' tomograms. A
    mask that fails is listed in the summary and in the output failedTomograms.
    """

    # --------------------------- ATTRIBUTES -----------------------------------
    _label = "skeletonize membranes"
    _devStatus = BETA
    _possibleOutputs = {SkeletonOutput.SKELETONS.value: SetOfTomoMasks,
                        SkeletonOutput.COMPONENTS.value: SetOfTomoMasks,
                        SkeletonOutput.FAILED.value: SetOfTomoMasks}
    _INPUT = SkeletonParam.MASKS.value

    # --------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form) -> None:  # noqa: ANN001
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(SkeletonParam.MASKS.value, PointerParam, pointerClass="SetOfTomoMasks", important=True,
                      label="Membrane masks",
                      help="Segmentations to process (e.g. the output of Bilayer segment); every non-zero voxel "
                           "counts as membrane. Their Scipion sampling rate (Å/px) goes into the outputs' headers.")
        form.addParam(SkeletonParam.SKELETON.value, BooleanParam, default=True, label="Skeletonize?",
                      help="Output MemBrain-seg's one-voxel surface skeleton of each mask (tomoSkeletons).")
        form.addParam(SkeletonParam.COMPONENTS.value, BooleanParam, default=False, label="Label connected membranes?",
                      help="Output the connected membranes (26-connectivity), numbered by size with 1 the "
                           "largest (tomoComponents).")
        form.addParam(SkeletonParam.MIN_SIZE.value, IntParam, default=0, validators=[GE(0)],
                      condition=SkeletonParam.COMPONENTS.value, label="Smallest membrane (voxels)",
                      help="Drop connected membranes smaller than this many voxels; 0 keeps all.")
        form.addParallelSection(threads=1, mpi=0)

    # --------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self) -> None:
        self._insertPerTomogramSteps(self.skeletonStep, needsGPU=False)

    # --------------------------- STEPS functions ------------------------------
    def skeletonStep(self, tsId: str) -> None:
        """Run ``bilayer skeletonize`` and/or ``bilayer components`` on one mask."""
        # Scipion's sampling rate, not the mask header's, goes into the outputs.
        common = [self._inputLink(tsId), "--out", os.path.abspath(self._getExtraPath()),
                  "--voxel-size", repr(float(self._itemsByTsId[tsId].getSamplingRate())), "--overwrite"]
        calls = []
        if self._value(SkeletonParam.SKELETON):
            calls.append(["skeletonize", *common])
        if self._value(SkeletonParam.COMPONENTS):
            calls.append(["components", *common, "--min-size", str(self._value(SkeletonParam.MIN_SIZE))])
        for args in calls:
            if not self._runEngine(tsId, args).ok:
                return

    # --------------------------- UTILS functions ------------------------------
    def _value(self, param: SkeletonParam):  # noqa: ANN202  (the parameter's own type)
        return getattr(self, param.value).get()

    def _outputFiles(self, tsId: str) -> dict[str, str]:
        files = {}
        if self._value(SkeletonParam.SKELETON):
            files[SkeletonOutput.SKELETONS.value] = self._getExtraPath(f"{tsId}{defaults.output_suffix('skeleton')}")
        if self._value(SkeletonParam.COMPONENTS):
            files[SkeletonOutput.COMPONENTS.value] = self._getExtraPath(
                f"{tsId}{defaults.output_suffix('components')}")
        return files

    def _newItem(self, source: Tomogram, path: str) -> TomoMask:
        mask = TomoMask()
        mask.copyInfo(source)
        mask.setFileName(path)
        mask.setVolName(source.getVolName() if isinstance(source, TomoMask) else source.getFileName())
        return mask

    # --------------------------- INFO functions -------------------------------
    def _validate(self) -> list[str]:
        errors = list(super()._validate()) + self._inputErrors()
        if not (self._value(SkeletonParam.SKELETON) or self._value(SkeletonParam.COMPONENTS)):
            errors.append("Choose at least one output: skeletons or connected membranes.")
        return errors

    def _summary(self) -> list[str]:
        masks = self._getInputSet()
        if masks is None:
            return ["No masks chosen."]
        lines = [f"Masks: {masks.getSize()} at {masks.getSamplingRate():.2f} Å/px."]
        for output in (SkeletonOutput.SKELETONS, SkeletonOutput.COMPONENTS):
            result = getattr(self, output.value, None)
            if result is not None:
                lines.append(f"{output.value}: {result.getSize()} of {masks.getSize()}.")
        return lines + self._failureSummary()

    def _methods(self) -> list[str]:
        masks = self._getInputSet()
        if masks is None:
            return []
        done = " and ".join(word for word, param in (("surface skeletons", SkeletonParam.SKELETON),
                                                      ("connected membranes", SkeletonParam.COMPONENTS))
                            if self._value(param))
        return [f"The {done} of {masks.getSize()} membrane segmentations were computed with Bilayer {__version__}, "
                f"following MemBrain-seg of MemBrain v2 [{CITATION_MEMBRAIN_V2}]."]

    def _citations(self) -> list[str]:
        return [CITATION_MEMBRAIN_V2]
