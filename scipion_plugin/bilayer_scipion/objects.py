"""Scipion objects of the plugin: a trained Bilayer model; membrane surfaces and their tables."""

from __future__ import annotations

import os

import pyworkflow.object as pwobj
from pwem.objects import EMFile, EMObject, EMSet

__all__ = ["BilayerModel", "BilayerSurface", "BilayerSurfaceTable", "SetOfBilayerSurfaceTables",
           "SetOfBilayerSurfaces"]


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


class BilayerSurface(EMFile):
    """One membrane's triangle mesh written by ``bilayer measure`` (its midsurface, in Å in the
    tomogram's frame; PLY carries the per-vertex values) with that membrane's row of the table.

    scipion-em-tomo's ``MeshPoint`` / ``SetOfMeshes`` are point clouds (Coordinate3D), with no
    triangles, so the mesh is kept as a file. Values are the engine's, in nm (None where they do not
    apply: volume of an open sheet, thickness where unresolved or not measured).

    Attributes:
        _tsId: the tomogram (mask) it belongs to.
        _label: the membrane's label in the mask (connected component, or the label of a labelled mask).
        _closed: True for a closed (watertight) surface, e.g. a vesicle.
        _vertices: number of mesh vertices.
        _area: area, nm².
        _volume: enclosed volume where closed, nm³.
        _meanCurvature: median mean curvature, 1/nm (+ for a sphere seen from outside).
        _nearestDistance: smallest distance to another membrane, nm.
        _nearestLabel: the label of that membrane.
        _thickness: bilayer thickness of the membrane's mean profile, nm.
        _volName: the tomogram file the mask came from.
    """

    def __init__(self, filename: str | None = None, **kwargs) -> None:
        super().__init__(filename, **kwargs)
        self._tsId = pwobj.String()
        self._label = pwobj.Integer()
        self._closed = pwobj.Boolean()
        self._vertices = pwobj.Integer()
        self._area = pwobj.Float()
        self._volume = pwobj.Float()
        self._meanCurvature = pwobj.Float()
        self._nearestDistance = pwobj.Float()
        self._nearestLabel = pwobj.Integer()
        self._thickness = pwobj.Float()
        self._volName = pwobj.String()

    def getTsId(self) -> str:
        return self._tsId.get()

    def getLabel(self) -> int:
        return self._label.get()

    def isClosed(self) -> bool:
        return bool(self._closed.get())

    def getVertexCount(self) -> int:
        return self._vertices.get()

    def getArea(self) -> float:
        """Area, nm²."""
        return self._area.get()

    def getVolume(self) -> float | None:
        """Enclosed volume, nm³ (None for an open surface)."""
        return self._volume.get()

    def getMeanCurvature(self) -> float | None:
        """Median mean curvature, 1/nm."""
        return self._meanCurvature.get()

    def getNearestDistance(self) -> float | None:
        """Smallest distance to another membrane, nm (None when alone)."""
        return self._nearestDistance.get()

    def getNearestLabel(self) -> int | None:
        return self._nearestLabel.get()

    def getThickness(self) -> float | None:
        """Bilayer thickness, nm (None when unresolved or not measured)."""
        return self._thickness.get()

    def getVolName(self) -> str:
        return self._volName.get()

    def __str__(self) -> str:
        kind = "closed" if self.isClosed() else "open"
        return f"Membrane surface {self.getTsId()} #{self.getLabel()} ({kind}, {self.getArea() or 0:.0f} nm²)"


class SetOfBilayerSurfaces(EMSet):
    """The membrane surfaces of a set of masks, one item per membrane."""

    ITEM_TYPE = BilayerSurface


class BilayerSurfaceTable(EMFile):
    """One mask's per-membrane table (``<tsId>_surfaces.csv``, the engine's columns) with its
    histograms (``<tsId>_surface_histograms.png``; empty when the mask had no membrane).

    Attributes:
        _tsId: the tomogram (mask).
        _membranes: rows in the table (membranes measured).
        _histograms: the histograms picture.
        _volName: the tomogram file the mask came from.
    """

    def __init__(self, filename: str | None = None, **kwargs) -> None:
        super().__init__(filename, **kwargs)
        self._tsId = pwobj.String()
        self._membranes = pwobj.Integer()
        self._histograms = pwobj.String()
        self._volName = pwobj.String()

    def getTsId(self) -> str:
        return self._tsId.get()

    def getMembraneCount(self) -> int:
        return self._membranes.get()

    def getHistogramsFile(self) -> str:
        return self._histograms.get() or ""

    def getVolName(self) -> str:
        return self._volName.get()

    def __str__(self) -> str:
        return f"Membrane table {self.getTsId()} ({self.getMembraneCount()} membranes, {self.getFileName()})"


class SetOfBilayerSurfaceTables(EMSet):
    """The per-membrane tables of a set of masks, one item per mask."""

    ITEM_TYPE = BilayerSurfaceTable
