"""Cut annotation patches out of tomograms and their labels with ``bilayer patches``, one step per
tomogram: the first half of MemBrain-seg's annotation loop (its ``patch_corrections``), in Scipion."""

from __future__ import annotations

import enum
import os
from pathlib import Path

from pyworkflow import BETA
from pyworkflow.protocol import GE, EnumParam, IntParam, LEVEL_ADVANCED, PointerParam
from pyworkflow.utils import Message
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import SetOfTomoMasks, SetOfTomograms, TomoMask, Tomogram

from bilayer import __version__
from bilayer.annotation.extract import DEFAULT_BORDER, DEFAULT_SIZE, patch_case
from bilayer.annotation.positions import read_positions, write_positions
from bilayer.data.layout import Split, dataset_paths
from bilayer_scipion.constants import CITATION_MEMBRAIN_V2
from bilayer_scipion.protocols.protocol_base import FAILED_OUTPUT, ProtBilayerBase, file_path

__all__ = ["PatchesOutput", "PatchesParam", "PositionSource", "ProtBilayerExtractPatches"]


class PatchesParam(str, enum.Enum):
    """Form names of the extract-patches protocol's parameters."""

    TOMOGRAMS = "inputTomograms"
    LABELS = "inputLabels"
    SOURCE = "positionSource"
    UNCERTAINTY = "inputUncertainty"
    COUNT = "count"
    COORDINATES = "inputCoordinates"
    SIZE = "patchSize"
    BORDER = "border"
    SPLIT = "split"


class PositionSource(enum.IntEnum):
    """Where the patch centres come from (the index of the form's choice)."""

    SUGGESTED = 0
    COORDINATES = 1


class PatchesOutput(str, enum.Enum):
    """Output names: the patches' images and labels (paired by tsId = patch name), and the failures."""

    IMAGES = "patchTomograms"
    LABELS = "patchLabels"
    FAILED = FAILED_OUTPUT


_SPLITS = [Split.TRAIN.value, Split.VAL.value]


class ProtBilayerExtractPatches(ProtBilayerBase):
    """Cut training patches for annotation from tomograms and their labels with Bilayer.

    The patch centres are either suggested (the patches of highest mean uncertainty, from the
    uncertainty maps of *segment membranes*) or picked coordinates. Each patch's image and labels
    (the labels' outer border set to ignore, as MemBrain-seg does) go into a dataset folder in the
    layout ``bilayer train`` reads (``extra/dataset``), and into two sets paired by tsId (the patch
    name), which *train membrane model* takes after the labels are corrected. A patch near the
    tomogram's border is shifted inside it instead of failing.
    """

    # --------------------------- ATTRIBUTES -----------------------------------
    _label = "extract annotation patches"
    _devStatus = BETA
    _possibleOutputs = {PatchesOutput.IMAGES.value: SetOfTomograms, PatchesOutput.LABELS.value: SetOfTomoMasks,
                        PatchesOutput.FAILED.value: SetOfTomograms}
    _INPUT = PatchesParam.TOMOGRAMS.value

    # --------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form) -> None:  # noqa: ANN001
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(PatchesParam.TOMOGRAMS.value, PointerParam, pointerClass="SetOfTomograms", important=True,
                      label="Tomograms", help="Tomograms to cut patches from; their Scipion sampling rate is used.")
        form.addParam(PatchesParam.LABELS.value, PointerParam, pointerClass="SetOfTomoMasks", important=True,
                      label="Labels",
                      help="Labels of the same tomograms, paired by tsId: a segmentation to correct (segment "
                           "membranes' tomoMasks) or 0/1/2 labels (2 = ignore).")
        form.addParam(PatchesParam.SOURCE.value, EnumParam, choices=["suggested by uncertainty", "coordinates"],
                      default=PositionSource.SUGGESTED.value, label="Patch centres",
                      help="suggested: the patches of highest mean uncertainty, not overlapping; coordinates: "
                           "picked 3D coordinates, one patch each.")
        form.addParam(PatchesParam.UNCERTAINTY.value, PointerParam, pointerClass="SetOfTomoMasks", allowsNull=True,
                      condition=f"{PatchesParam.SOURCE.value}=={PositionSource.SUGGESTED.value}",
                      label="Uncertainty maps",
                      help="segment membranes' tomoUncertainty (with test-time augmentation), paired by tsId.")
        form.addParam(PatchesParam.COUNT.value, IntParam, default=5, validators=[GE(1)],
                      condition=f"{PatchesParam.SOURCE.value}=={PositionSource.SUGGESTED.value}",
                      label="Patches per tomogram")
        form.addParam(PatchesParam.COORDINATES.value, PointerParam, pointerClass="SetOfCoordinates3D",
                      allowsNull=True, condition=f"{PatchesParam.SOURCE.value}=={PositionSource.COORDINATES.value}",
                      label="Coordinates", help="Patch centres, with the tomograms' tsIds.")
        form.addParam(PatchesParam.SIZE.value, IntParam, default=DEFAULT_SIZE, validators=[GE(1)],
                      label="Patch size (voxels)", help="Edge of the cubic patches (MemBrain-seg's).")
        form.addParam(PatchesParam.BORDER.value, IntParam, default=DEFAULT_BORDER, validators=[GE(0)],
                      expertLevel=LEVEL_ADVANCED, label="Ignore border (voxels)",
                      help="Voxels of each face of a patch labelled ignore (MemBrain-seg's): an annotator sees "
                           "the patch without its surroundings, so its labels there are least sure.")
        form.addParam(PatchesParam.SPLIT.value, EnumParam, choices=_SPLITS, default=0, expertLevel=LEVEL_ADVANCED,
                      label="Dataset part", help="Training or validation part of the dataset folder.")
        form.addParallelSection(threads=1, mpi=0)

    # --------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self) -> None:
        self._insertPerTomogramSteps(self.extractStep, needsGPU=False)

    # --------------------------- STEPS functions ------------------------------
    def extractStep(self, tsId: str) -> None:
        """Suggest or write the centres, then run ``bilayer patches extract`` for one tomogram."""
        positions = self._positionsFile(tsId)
        if self._source() is PositionSource.SUGGESTED:
            run = self._runEngine(tsId, ["patches", "suggest", self._pairedFile(PatchesParam.UNCERTAINTY, tsId),
                                         "--count", str(self._int(PatchesParam.COUNT)),
                                         "--size", str(self._int(PatchesParam.SIZE)), "--out", positions,
                                         "--overwrite"])
            if not run.ok:
                return
        else:
            centres = self._pickedCentres(tsId)
            if not centres:
                self._recordFailure(tsId, "no coordinates for this tomogram")
                return
            write_positions(positions, centres, overwrite=True)
        self._runEngine(tsId, ["patches", "extract", self._inputLink(tsId), "--labels",
                               self._pairedFile(PatchesParam.LABELS, tsId), "--at", positions,
                               "--size", str(self._int(PatchesParam.SIZE)),
                               "--border", str(self._int(PatchesParam.BORDER)), "--split", self._split(),
                               "--out", self._dataset(), "--voxel-size",
                               repr(float(self._itemsByTsId[tsId].getSamplingRate())), "--overwrite"])

    def createOutputStep(self, tsId: str) -> None:
        """Register every patch of ``tsId`` as a tomogram and its labels as a mask, paired by patch name."""
        with self._lock:
            if tsId in self.getFailures():
                self._addFailed(tsId)
                return
            source = self._itemsByTsId[tsId]
            images = self._outputSet(PatchesOutput.IMAGES.value, SetOfTomograms)
            labels = self._outputSet(PatchesOutput.LABELS.value, SetOfTomoMasks)
            for case, (image, label) in self._patchFiles(tsId).items():
                tomo = Tomogram()
                tomo.copyInfo(source)
                tomo.setTsId(case)
                tomo.setFileName(str(image))
                tomo.setOrigin()  # a patch's own centre, not the whole tomogram's
                images.append(tomo)
                mask = TomoMask()
                mask.copyInfo(tomo)
                mask.setFileName(str(label))
                mask.setVolName(str(image))
                labels.append(mask)
            for outputSet in (images, labels):
                outputSet.write()
                self._store(outputSet)

    # --------------------------- UTILS functions ------------------------------
    def _source(self) -> PositionSource:
        return PositionSource(getattr(self, PatchesParam.SOURCE.value).get())

    def _int(self, param: PatchesParam) -> int:
        return int(getattr(self, param.value).get())

    def _split(self) -> str:
        return _SPLITS[getattr(self, PatchesParam.SPLIT.value).get()]

    def _dataset(self) -> str:
        return os.path.abspath(self._getExtraPath("dataset"))

    def _positionsFile(self, tsId: str) -> str:
        return os.path.abspath(self._getExtraPath(f"{tsId}_positions.csv"))

    def _pairedFile(self, param: PatchesParam, tsId: str) -> str:
        """The file of the item of ``param``'s set with this tsId (a missing one fails in the engine)."""
        items = getattr(self, param.value).get()
        for item in items.iterItems(where=f"_tsId=='{tsId}'"):
            return os.path.abspath(file_path(item.getFileName()))
        return os.path.abspath(self._getTmpPath(f"{tsId}_has_no_{param.value}.mrc"))

    def _pickedCentres(self, tsId: str) -> list[tuple[int, int, int]]:
        """(z, y, x) voxels of the tomogram of the coordinates picked in it (scaled to its sampling rate)."""
        coordinates = getattr(self, PatchesParam.COORDINATES.value).get()
        scale = coordinates.getSamplingRate() / self._itemsByTsId[tsId].getSamplingRate()
        centres = []
        for coord in coordinates.iterCoordinates():
            if coord.getTomoId() == tsId:
                x, y, z = coord.getPosition(BOTTOM_LEFT_CORNER)
                centres.append((round(z * scale), round(y * scale), round(x * scale)))
        return centres

    def _patchFiles(self, tsId: str) -> dict[str, tuple[Path, Path]]:
        """{patch name: (image, labels)} the engine wrote for ``tsId`` (from the positions it used)."""
        files = {}
        for centre in read_positions(self._positionsFile(tsId)):
            case = patch_case(tsId, centre)
            image, label = dataset_paths(self._dataset(), self._split(), case)
            if image.is_file() and label.is_file():
                files[case] = (image, label)
        return files

    def _outputFiles(self, tsId: str) -> dict[str, str]:  # registration is per patch (createOutputStep)
        return {}

    def _newItem(self, source: Tomogram, path: str) -> Tomogram:  # not used: see createOutputStep
        raise NotImplementedError

    # --------------------------- INFO functions -------------------------------
    def _validate(self) -> list[str]:
        errors = list(super()._validate()) + self._inputErrors()
        needed = PatchesParam.UNCERTAINTY if self._source() is PositionSource.SUGGESTED else PatchesParam.COORDINATES
        if getattr(self, needed.value).get() is None:
            errors.append(f"Choose the {'uncertainty maps' if needed is PatchesParam.UNCERTAINTY else 'coordinates'} "
                          "the patch centres come from.")
        if self._int(PatchesParam.SIZE) <= 2 * self._int(PatchesParam.BORDER):
            errors.append("The patch size must be more than twice the ignore border.")
        return errors

    def _summary(self) -> list[str]:
        tomos = self._getInputSet()
        if tomos is None:
            return ["No tomograms chosen."]
        lines = [f"Tomograms: {tomos.getSize()}; patches of {self._int(PatchesParam.SIZE)}³ voxels."]
        images = getattr(self, PatchesOutput.IMAGES.value, None)
        if images is not None:
            lines.append(f"Patches: {images.getSize()}, in the dataset folder {self._dataset()} (bilayer train "
                         "reads it) and in the sets patchTomograms / patchLabels.")
        return lines + self._failureSummary()

    def _methods(self) -> list[str]:
        tomos = self._getInputSet()
        if tomos is None:
            return []
        how = ("at the places of highest uncertainty" if self._source() is PositionSource.SUGGESTED
               else "at picked positions")
        return [f"Patches of {self._int(PatchesParam.SIZE)}³ voxels were cut {how} from {tomos.getSize()} tomograms "
                f"for annotation with Bilayer {__version__}, following the annotation loop of MemBrain v2 "
                f"[{CITATION_MEMBRAIN_V2}]."]

    def _citations(self) -> list[str]:
        return [CITATION_MEMBRAIN_V2]
