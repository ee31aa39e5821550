"""Scipion objects of the plugin: a trained Bilayer model."""

from __future__ import annotations

import os

import pyworkflow.object as pwobj
from pwem.objects import EMObject

__all__ = ["BilayerModel"]


class BilayerModel(EMObject):
    """A network trained or fine-tuned by Bilayer: its checkpoint and the run that made it.

    The segment protocol takes it as its model. Paths are as the protocol wrote them
    (relative to the project folder, Scipion's convention).

    Attributes:
        _checkpoint: the ``.bilayer.pt`` file (lowest validation loss; the last network when
            trained without validation).
        _runFolder: the engine's run folder (``metrics.csv``, ``curves.png``, ``config.json``).
        _samplingRate: Å per voxel of the training tomograms, stored in the checkpoint too.
        _fineTuned: True when it started from another model.
    """

    def __init__(self, checkpoint: str | None = None, runFolder: str | None = None,
                 samplingRate: float | None = None, fineTuned: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self._checkpoint = pwobj.String(checkpoint)
        self._runFolder = pwobj.String(runFolder)
        self._samplingRate = pwobj.Float(samplingRate)
        self._fineTuned = pwobj.Boolean(fineTuned)

    def getPath(self) -> str:
        """The checkpoint file."""
        return self._checkpoint.get()

    def getRunFolder(self) -> str:
        return self._runFolder.get()

    def getCurvesFile(self) -> str:
        """The engine's plot of the training curves (``curves.png``)."""
        return os.path.join(self.getRunFolder(), "curves.png")

    def getMetricsFile(self) -> str:
        """The engine's per-epoch table (``metrics.csv``)."""
        return os.path.join(self.getRunFolder(), "metrics.csv")

    def getSamplingRate(self) -> float:
        return self._samplingRate.get()

    def isFineTuned(self) -> bool:
        return bool(self._fineTuned.get())

    def __str__(self) -> str:
        kind = "fine-tuned" if self.isFineTuned() else "trained"
        return f"Bilayer model ({kind} at {self.getSamplingRate() or 0:.2f} Å/px, {self.getPath()})"
