"""Viewers: the training curves of a Bilayer train / fine-tune run; the membrane surfaces' tables and histograms."""

from __future__ import annotations

import os
from typing import ClassVar

from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, MessageView, Viewer

from bilayer_scipion.objects import BilayerModel, SetOfBilayerSurfaceTables
from bilayer_scipion.protocols import ProtBilayerSurfaces, ProtBilayerTrain
from bilayer_scipion.protocols.protocol_surfaces import SurfacesOutput

__all__ = ["BilayerSurfaceHistogramsViewer", "BilayerTrainingViewer", "surface_histograms"]


class BilayerTrainingViewer(Viewer):
    """Show the learning curves the engine drew (``curves.png``: losses, validation Dice and
    Surface-Dice per epoch) for a train protocol or its model."""

    _label = "training curves"
    _targets = [ProtBilayerTrain, BilayerModel]
    _environments = [DESKTOP_TKINTER]

    def _visualize(self, obj, **kwargs) -> list:  # noqa: ANN001, ANN003  (Scipion's viewer signature)
        curves = obj.getCurvesFile()
        if not os.path.isfile(curves):
            return [MessageView(f"No training curves yet ({curves}); they appear after the first epoch.",
                                title="Bilayer training", tkParent=self.getTkRoot())]
        plotter = Plotter(windowTitle="Bilayer training curves", figsize=(10, 4))
        axes = plotter.getFigure().add_subplot(111)
        axes.imshow(_read_png(curves))
        axes.set_axis_off()
        return [plotter]


def _read_png(path: str):  # noqa: ANN202  (a matplotlib image array)
    import matplotlib.image

    return matplotlib.image.imread(path)


def surface_histograms(obj: ProtBilayerSurfaces | SetOfBilayerSurfaceTables | None) -> dict[str, str]:
    """``{tsId: histograms PNG}`` of a surfaces protocol's tables (or of a set of tables), masks
    without membranes left out."""
    if isinstance(obj, ProtBilayerSurfaces):
        obj = getattr(obj, SurfacesOutput.TABLES.value, None)
    if obj is None:
        return {}
    return {table.getTsId(): table.getHistogramsFile() for table in obj.iterItems() if table.getHistogramsFile()}


class BilayerSurfaceHistogramsViewer(Viewer):
    """Show the histograms the engine drew for each mask (``<tsId>_surface_histograms.png``: mean and
    Gaussian curvature, bilayer thickness and nearest-membrane distance, in nm, stacked per membrane).
    The sets themselves (one row per membrane / per mask) open in Scipion's table viewer (MDViewer,
    which takes any EMSet)."""

    _label = "surface histograms"
    _targets: ClassVar[list[type]] = [ProtBilayerSurfaces, SetOfBilayerSurfaceTables]
    _environments: ClassVar[list[str]] = [DESKTOP_TKINTER]

    def _visualize(self, obj: ProtBilayerSurfaces | SetOfBilayerSurfaceTables, **kwargs: object) -> list:
        pictures = {tsId: path for tsId, path in surface_histograms(obj).items() if os.path.isfile(path)}
        if not pictures:
            return [MessageView("No surface histograms yet: they appear as masks with membranes are measured.",
                                title="Bilayer surfaces", tkParent=self.getTkRoot())]
        views = []
        for tsId, path in sorted(pictures.items()):
            plotter = Plotter(windowTitle=f"Bilayer surface histograms: {tsId}", figsize=(10, 7))
            axes = plotter.getFigure().add_subplot(111)
            axes.imshow(_read_png(path))
            axes.set_axis_off()
            views.append(plotter)
        return views
