"""Viewers: the training curves of a Bilayer train / fine-tune run."""

from __future__ import annotations

import os

from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, MessageView, Viewer

from bilayer_scipion.objects import BilayerModel
from bilayer_scipion.protocols import ProtBilayerTrain

__all__ = ["BilayerTrainingViewer"]


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
