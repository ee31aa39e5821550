"""What the per-tomogram protocols share: one engine run per tsId, outputs named by tsId,
sets created lazily, and failures that are listed instead of sinking the run.

A subclass names its input set (``_INPUT``), its engine step, the outputs each tomogram
gives (:meth:`_outputFiles`) and how a new output item links to its input
(:meth:`_newItem`). Steps: one engine step per tsId (they run in parallel), one
``createOutputStep`` per tsId, then one ``closeOutputStep`` that depends on all of them.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Callable

from pwem.protocols import EMProtocol
from pyworkflow.object import Pointer, Set, String
from pyworkflow.protocol import STEPS_PARALLEL
from pyworkflow.protocol.constants import USE_GPU
from tomo.objects import SetOfTomoMasks, SetOfTomograms, TomoMask, Tomogram

from bilayer_scipion.engine import EngineRun, run_engine

__all__ = ["FAILED_OUTPUT", "ProtBilayerBase", "file_path"]

logger = logging.getLogger(__name__)

_FORMAT_TAG = re.compile(r":[A-Za-z0-9]+$")  # Scipion's "file.st:mrc" format suffix
#: Name of the output that lists the tomograms (or masks) that failed.
FAILED_OUTPUT = "failedTomograms"


def file_path(fileName: str) -> str:
    """A Scipion file name without its format tag (``tomo.st:mrc`` → ``tomo.st``)."""
    return _FORMAT_TAG.sub("", fileName)


class ProtBilayerBase(EMProtocol):
    """Base of the per-tomogram Bilayer protocols (not offered in menus)."""

    stepsExecutionMode = STEPS_PARALLEL
    #: Name of the input set parameter; set by subclasses.
    _INPUT = ""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.failureReasons = String()  # JSON {tsId: why}, persisted for the summary
        self._itemsByTsId: dict[str, Tomogram] = {}

    # --------------------------- STEPS functions ------------------------------
    def _insertPerTomogramSteps(self, engineStep: Callable[[str], None], needsGPU: bool) -> None:
        """One engine step and one output step per tsId, then the closing step."""
        self._initialize()
        outputSteps = []
        for tsId in self._itemsByTsId:
            runId = self._insertFunctionStep(engineStep, tsId, prerequisites=[], needsGPU=needsGPU)
            outputSteps.append(self._insertFunctionStep(self.createOutputStep, tsId, prerequisites=[runId],
                                                        needsGPU=False))
        self._insertFunctionStep(self.closeOutputStep, prerequisites=outputSteps, needsGPU=False)

    def _initialize(self) -> None:
        self._itemsByTsId = {item.getTsId(): item.clone() for item in self._getInputSet()}

    def createOutputStep(self, tsId: str) -> None:
        """Register the files the engine wrote for ``tsId``, or list it as failed."""
        with self._lock:
            if tsId in self.getFailures():
                self._addFailed(tsId)
                return
            files = self._outputFiles(tsId)
            missing = [path for path in files.values() if not os.path.isfile(path)]
            if missing:
                self._recordFailure(tsId, f"the engine finished but did not write {', '.join(missing)}")
                self._addFailed(tsId)
                return
            for outputName, path in files.items():
                outputSet = self._outputSet(outputName, self._possibleOutputs.get(outputName, SetOfTomoMasks))
                outputSet.append(self._newItem(self._itemsByTsId[tsId], path))
                outputSet.write()
                self._store(outputSet)

    def closeOutputStep(self) -> None:
        """Close every output; fail the run only when no tomogram succeeded."""
        self._closeOutputSet()
        failures = self.getFailures()
        if failures and len(failures) >= len(self._itemsByTsId):
            listed = "; ".join(f"{tsId}: {why}" for tsId, why in sorted(failures.items()))
            raise RuntimeError(f"Bilayer failed on every tomogram ({listed})")

    # --------------------------- UTILS functions ------------------------------
    def _getInputPointer(self) -> Pointer:
        return getattr(self, self._INPUT)

    def _getInputSet(self) -> SetOfTomograms:
        return self._getInputPointer().get()

    def _runEngine(self, tsId: str, args: list[str]) -> EngineRun:
        """Run the engine for one tomogram; a failure is recorded, not raised."""
        run = run_engine(args, gpus=self._stepGpus(), threads=self._engineThreads(), tag=tsId)
        if not run.ok:
            self._recordFailure(tsId, run.error)
        return run

    def _stepGpus(self) -> list[int]:
        """The GPUs given to the running step (empty when the protocol runs on the CPU)."""
        if not self.usesGpu():
            return []
        executor = self._stepsExecutor
        gpus = executor.getGpuList() if executor is not None else self.getGpuList()
        return [int(gpu) for gpu in gpus]

    def _engineThreads(self) -> int | None:
        """CPU threads per engine process when several run at once (the machine's cores shared
        among them, so they do not oversubscribe it); None when steps run one at a time."""
        concurrent = self.numberOfThreads.get() - 1 if self.numberOfThreads.get() else 0
        if concurrent <= 1:
            return None
        return max(1, (os.cpu_count() or 1) // concurrent)

    def _deviceArgs(self) -> list[str]:
        """``--device``: the CPU, or the GPUs of the step (the CPU when none is visible)."""
        return ["--device", "auto" if self.usesGpu() else "cpu"]

    def usesGpu(self) -> bool:
        return bool(self.getAttributeValue(USE_GPU, False))

    def _inputLink(self, tsId: str) -> str:
        """A link named ``<tsId>.mrc`` to the item's file, so the engine's outputs are named by tsId. It
        lives in ``extra/inputs/`` (not ``tmp/``, which Scipion empties when the run ends), so the run
        folder's list of tomograms keeps naming files that exist (``bilayer status extra``)."""
        source = file_path(self._itemsByTsId[tsId].getFileName())
        folder = os.path.abspath(self._getExtraPath("inputs"))
        os.makedirs(folder, exist_ok=True)
        link = os.path.join(folder, f"{tsId}.mrc")
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(source), link)
        return link

    def _outputFiles(self, tsId: str) -> dict[str, str]:
        """{output set name: file the engine writes for ``tsId``}; set by subclasses."""
        raise NotImplementedError

    def _newItem(self, source: Tomogram, path: str) -> TomoMask:
        """An output mask for ``path``, linked to the tomogram ``source`` came from."""
        raise NotImplementedError

    def _outputSet(self, name: str, setClass: type) -> SetOfTomograms:
        """The output set ``name``, created (open, with the input's info) on first use."""
        outputSet = getattr(self, name, None)
        if outputSet is not None:
            outputSet.enableAppend()
            return outputSet
        outputSet = setClass.create(self._getPath(), template="tomograms%s.sqlite", suffix=name)
        outputSet.copyInfo(self._getInputSet())
        if self._outputSamplingRate() is not None:
            outputSet.setSamplingRate(self._outputSamplingRate())
        outputSet.setStreamState(Set.STREAM_OPEN)
        self._defineOutputs(**{name: outputSet})
        self._defineSourceRelation(self._getInputPointer(), outputSet)
        return outputSet

    def _outputSamplingRate(self) -> float | None:
        """Å/px of the outputs when it is not the input's (e.g. after rescaling); None keeps the input's."""
        return None

    def _recordFailure(self, tsId: str, why: str) -> None:
        with self._lock:
            failures = self.getFailures()
            failures[tsId] = why
            self.failureReasons.set(json.dumps(failures, sort_keys=True))
            self._store(self.failureReasons)
        logger.error("%s failed: %s", tsId, why)

    def _addFailed(self, tsId: str) -> None:
        failed = self._outputSet(FAILED_OUTPUT, type(self._getInputSet()))
        failed.append(self._itemsByTsId[tsId].clone())
        failed.write()
        self._store(failed)

    def getFailures(self) -> dict[str, str]:
        """{tsId: why} of the tomograms that failed so far."""
        return json.loads(self.failureReasons.get() or "{}")

    # --------------------------- INFO functions -------------------------------
    def _inputErrors(self) -> list[str]:
        """Problems of the input set that would make tsId-named outputs ambiguous."""
        inputSet = self._getInputSet()
        if inputSet is None:
            return []
        errors = []
        if not inputSet.getSamplingRate() or inputSet.getSamplingRate() <= 0:
            errors.append(f"The input {inputSet.getNameId()} has no sampling rate; import it with one.")
        tsIds = [item.getTsId() for item in inputSet.iterItems()]
        if any(not tsId for tsId in tsIds):
            errors.append("Every input item needs a tsId (outputs are named by it); import the tomograms again.")
        elif len(set(tsIds)) != len(tsIds):
            repeated = sorted({t for t in tsIds if tsIds.count(t) > 1})
            errors.append(f"tsIds must be unique, but {', '.join(repeated)} appear more than once.")
        return errors

    def _failureSummary(self) -> list[str]:
        failures = self.getFailures()
        if not failures:
            return []
        lines = [f"*{len(failures)} failed* (listed in output {FAILED_OUTPUT}):"]
        lines += [f"  - {tsId}: {why}" for tsId, why in sorted(failures.items())]
        return lines
