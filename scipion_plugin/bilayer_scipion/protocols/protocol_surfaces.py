"""Membrane surfaces and their measures with ``bilayer measure``, one step per mask."""

from __future__ import annotations

import csv
import enum
import os
import statistics
from collections.abc import Iterable
from typing import Any, ClassVar

from bilayer import __version__
from bilayer.io.naming import MESH_SUFFIXES, mesh_name, output_name
from pyworkflow import BETA
from pyworkflow.protocol import LEVEL_ADVANCED, BooleanParam, EnumParam, FloatParam, IntParam, PointerParam
from pyworkflow.utils import Message
from tomo.objects import SetOfTomoMasks, TomoMask

from bilayer_scipion.constants import CITATION_MEMBRAIN_V2
from bilayer_scipion.objects import BilayerSurface, BilayerSurfaceTable, SetOfBilayerSurfaces, SetOfBilayerSurfaceTables
from bilayer_scipion.protocols.protocol_base import FAILED_OUTPUT, ProtBilayerBase, file_path

__all__ = ["ProtBilayerSurfaces", "SurfacesOutput", "SurfacesParam", "engine_defaults", "mesh_formats",
           "missing_tomograms", "read_table"]


class SurfacesParam(str, enum.Enum):
    """Form names of the surfaces protocol's parameters."""

    MASKS = "inputMasks"
    LABELLED = "labelled"
    THICKNESS = "measureThickness"
    SPACING = "spacing"
    SMOOTHING = "smoothing"
    MIN_SIZE = "minSize"
    SCALE = "curvatureScale"
    FORMAT = "meshFormat"


class SurfacesOutput(str, enum.Enum):
    """Output names: the meshes (one item per membrane), the tables (one per mask), the failed masks."""

    SURFACES = "membraneSurfaces"
    TABLES = "surfaceTables"
    FAILED = FAILED_OUTPUT


#: The ``bilayer measure`` option behind each form parameter that is passed as a value.
_OPTIONS = {SurfacesParam.SPACING: "--spacing", SurfacesParam.SMOOTHING: "--smoothing",
            SurfacesParam.MIN_SIZE: "--min-size", SurfacesParam.SCALE: "--scale"}


def engine_defaults() -> dict[str, Any]:
    """``bilayer measure``'s option defaults by parameter name (spacing, smoothing, min_size, scale, ...):
    the form shows what the command would do without the option."""
    from bilayer.cli_surfaces import measure_command

    return {param.name: param.default for param in measure_command.params}


def mesh_formats() -> list[str]:
    """The mesh formats the engine writes, its default (PLY, which carries the per-vertex values) first."""
    return [suffix.lstrip(".") for suffix in MESH_SUFFIXES]


def option_error(option: str, value: Any) -> str | None:
    """``bilayer measure``'s own message when it would refuse ``option value``, else None."""
    import click
    from bilayer.cli_surfaces import measure_command

    try:
        measure_command.make_context("measure", ["mask.mrc", option, str(value)])
    except click.ClickException as e:
        return e.format_message()
    return None


def missing_tomograms(masks: Iterable[TomoMask]) -> list[str]:
    """The tsIds of ``masks`` whose tomogram (``getVolName()``) is not a file: their thickness cannot be
    measured."""
    return [mask.getTsId() for mask in masks
            if not mask.getVolName() or not os.path.isfile(file_path(mask.getVolName()))]


def read_table(path: str) -> list[dict[str, str]]:
    """The rows of a ``<stem>_surfaces.csv`` (the engine's columns, values as text; empty where None)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _number(text: str, kind: type = float) -> Any:
    return kind(float(text)) if text not in ("", None) else None


class ProtBilayerSurfaces(ProtBilayerBase):
    """Mesh every membrane of membrane masks and measure it with Bilayer (``bilayer measure``).

    Each membrane (connected component, or label of a labelled mask) becomes a smooth, evenly
    re-meshed triangle mesh of its midsurface, in Å in the tomogram's frame (it overlays the
    tomogram in ChimeraX, napari or Blender), closed for vesicles and open for sheets. Per
    membrane: area, enclosed volume, mean and Gaussian curvature, distance to the nearest other
    membrane and, from the mask's tomogram, the bilayer thickness (reported as unresolved rather
    than guessed). Outputs: the meshes (one item per membrane), the per-membrane tables with
    their histograms (one item per mask), and the masks that failed.
    """

    # --------------------------- ATTRIBUTES -----------------------------------
    _label = "membrane surfaces and measures"
    _devStatus = BETA
    _possibleOutputs: ClassVar[dict[str, type]] = {SurfacesOutput.SURFACES.value: SetOfBilayerSurfaces,
                        SurfacesOutput.TABLES.value: SetOfBilayerSurfaceTables,
                        SurfacesOutput.FAILED.value: SetOfTomoMasks}
    _INPUT = SurfacesParam.MASKS.value

    # --------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form) -> None:
        engine = engine_defaults()
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(SurfacesParam.MASKS.value, PointerParam, pointerClass="SetOfTomoMasks", important=True,
                      label="Membrane masks",
                      help="Segmentations to mesh (e.g. the masks of Bilayer segment membranes); every non-zero "
                           "voxel is membrane, split into connected membranes. Their Scipion sampling rate (Å/px) "
                           "is used, not the file headers'.")
        form.addParam(SurfacesParam.LABELLED.value, BooleanParam, default=False, label="Masks are labelled?",
                      help="Yes: each value of a mask is one membrane (e.g. connected membranes of Bilayer skeletonize "
                           "membranes, or a hand-split segmentation), one mesh per label. No: one mesh per connected "
                           "membrane (26-connectivity).")
        form.addParam(SurfacesParam.THICKNESS.value, BooleanParam, default=True, label="Measure bilayer thickness?",
                      help="Measure each membrane's bilayer thickness (distance between the two leaflets, nm) from "
                           "the density profile of the mask's tomogram along the mesh normals; where the two "
                           "leaflets are not resolved it is reported as unresolved, not guessed. Needs each mask's "
                           "tomogram, on the same grid.")
        form.addParam(SurfacesParam.SPACING.value, FloatParam, default=engine["spacing"], allowsNull=True,
                      label="Vertex spacing (Å)",
                      help="Distance between mesh vertices (edge length) in Å. Empty: the voxel size. Larger values "
                           "give lighter meshes and faster measures.")
        form.addParam(SurfacesParam.SMOOTHING.value, IntParam, default=engine["smoothing"], expertLevel=LEVEL_ADVANCED,
                      label="Smoothing iterations",
                      help="Taubin smoothing iterations of the surface (0: none); they keep the surface in place "
                           "while removing the voxel steps.")
        form.addParam(SurfacesParam.MIN_SIZE.value, IntParam, default=engine["min_size"], label="Smallest membrane (voxels)",
                      help="Leave out membranes of fewer voxels than this (specks of noise); 0 keeps all.")
        form.addParam(SurfacesParam.SCALE.value, FloatParam, default=engine["scale"], allowsNull=True,
                      expertLevel=LEVEL_ADVANCED, label="Curvature scale (Å)",
                      help="Size of the surface patch over which curvatures are estimated, Å. Empty: three vertex "
                           "spacings. Larger values average out noise and small bumps.")
        form.addParam(SurfacesParam.FORMAT.value, EnumParam, choices=mesh_formats(), default=0,
                      label="Mesh format",
                      help="File format of the meshes: PLY carries every per-vertex value (curvature, distance, "
                           "thickness; ChimeraX, Blender, napari, MeshLab); OBJ and STL the surface only; GLB is the "
                           "CryoET Data Portal's format.")
        form.addParallelSection(threads=1, mpi=0)

    # --------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self) -> None:
        self._insertPerTomogramSteps(self.measureStep, needsGPU=False)

    # --------------------------- STEPS functions ------------------------------
    def measureStep(self, tsId: str) -> None:
        """Run ``bilayer measure`` on one mask; a failure is listed, not raised."""
        self._runEngine(tsId, self._measureArgs(tsId))

    def createOutputStep(self, tsId: str) -> None:
        """Register the mask's table and one surface per row of it, or list the mask as failed."""
        with self._lock:
            if tsId in self.getFailures():
                self._addFailed(tsId)
                return
            mask = self._itemsByTsId[tsId]
            table = self._getExtraPath(output_name(f"{tsId}.mrc", "surfaces"))
            if not os.path.isfile(table):
                self._recordFailure(tsId, f"the engine finished but did not write {table}")
                self._addFailed(tsId)
                return
            rows = read_table(table)
            meshes = {row["label"]: self._getExtraPath(mesh_name(f"{tsId}.mrc", int(row["label"]), self._suffix()))
                      for row in rows}
            missing = [path for path in meshes.values() if not os.path.isfile(path)]
            if missing:
                self._recordFailure(tsId, f"the engine finished but did not write {', '.join(missing)}")
                self._addFailed(tsId)
                return
            histograms = self._getExtraPath(output_name(f"{tsId}.mrc", "surface_histograms"))
            item = BilayerSurfaceTable(table)
            item._tsId.set(tsId)
            item._membranes.set(len(rows))
            item._histograms.set(histograms if os.path.isfile(histograms) else "")
            item._volName.set(mask.getVolName())
            self._append(SurfacesOutput.TABLES, [item])
            if rows:
                self._append(SurfacesOutput.SURFACES, [self._surface(tsId, row, meshes[row["label"]]) for row in rows])

    # --------------------------- UTILS functions ------------------------------
    def _value(self, param: SurfacesParam):
        return getattr(self, param.value).get()

    def _suffix(self) -> str:
        return MESH_SUFFIXES[self._value(SurfacesParam.FORMAT)]

    def _measureArgs(self, tsId: str) -> list[str]:
        """The engine's argv (after ``bilayer``) for one mask: outputs ``extra/<tsId>_...``, at the
        Scipion sampling rate, with the mask's tomogram when thickness is asked for."""
        mask = self._itemsByTsId[tsId]
        link = self._inputLink(tsId)
        args = ["measure", link, "--out", os.path.abspath(self._getExtraPath()),
                "--voxel-size", repr(float(mask.getSamplingRate())), "--format", mesh_formats()[self._value(
                    SurfacesParam.FORMAT)], "--overwrite"]
        for param, option in _OPTIONS.items():
            if self._value(param) is not None:
                args += [option, str(self._value(param))]
        if self._value(SurfacesParam.THICKNESS):
            args += ["--tomogram", os.path.abspath(file_path(mask.getVolName()))]
        if self._value(SurfacesParam.LABELLED):
            args += ["--components", link]
        return args

    def _surface(self, tsId: str, row: dict[str, str], path: str) -> BilayerSurface:
        """The output item of one table row (the engine's columns and units)."""
        surface = BilayerSurface(path)
        surface._tsId.set(tsId)
        surface._label.set(int(row["label"]))
        surface._closed.set(row["closed"] == "True")
        surface._vertices.set(_number(row["vertices"], int))
        surface._area.set(_number(row["area_nm2"]))
        surface._volume.set(_number(row["volume_nm3"]))
        surface._meanCurvature.set(_number(row["mean_curvature_median_per_nm"]))
        surface._nearestDistance.set(_number(row["nearest_distance_min_nm"]))
        surface._nearestLabel.set(_number(row["nearest_label"], int))
        surface._thickness.set(_number(row["membrane_thickness_nm"]))
        surface._volName.set(self._itemsByTsId[tsId].getVolName())
        return surface

    def _append(self, output: SurfacesOutput, items: list[Any]) -> None:
        """Append ``items`` to ``output`` (created on first use) and store it."""
        outputSet = self._outputSet(output.value, self._possibleOutputs[output.value])
        for item in items:
            outputSet.append(item)
        outputSet.write()
        self._store(outputSet)

    def _surfaces(self) -> list[BilayerSurface]:
        surfaces = getattr(self, SurfacesOutput.SURFACES.value, None)
        return [] if surfaces is None else [item.clone() for item in surfaces.iterItems()]

    # --------------------------- INFO functions -------------------------------
    def _validate(self) -> list[str]:
        errors = list(super()._validate()) + self._inputErrors()
        for param, option in _OPTIONS.items():
            if self._value(param) is not None:
                problem = option_error(option, self._value(param))
                if problem:
                    errors.append(f"Invalid surface setting: {problem}")
        masks = self._getInputSet()
        if masks is not None and self._value(SurfacesParam.THICKNESS):
            missing = missing_tomograms(masks.iterItems())
            if missing:
                errors.append(f"The tomograms of {', '.join(missing)} are not files, so their bilayer thickness "
                              "cannot be measured; set Measure bilayer thickness? to No, or give masks that point at "
                              "their tomograms (e.g. the masks of Bilayer segment membranes).")
        return errors

    def _summary(self) -> list[str]:
        masks = self._getInputSet()
        if masks is None:
            return ["No masks chosen."]
        lines = [f"Masks: {masks.getSize()} at {masks.getSamplingRate():.2f} Å/px."]
        surfaces = self._surfaces()
        tables = getattr(self, SurfacesOutput.TABLES.value, None)
        if tables is not None:
            closed = sum(s.isClosed() for s in surfaces)
            area = sum(s.getArea() or 0.0 for s in surfaces)
            lines.append(f"{len(surfaces)} membrane(s) ({closed} closed) in {tables.getSize()} mask(s), "
                         f"{area:.0f} nm² in all; tables in {SurfacesOutput.TABLES.value}.")
            lines += self._thicknessLines(surfaces)
            byTsId: dict[str, list[BilayerSurface]] = {}
            for surface in surfaces:
                byTsId.setdefault(surface.getTsId(), []).append(surface)
            for tsId, items in sorted(byTsId.items()):
                lines.append(f"  - {tsId}: {len(items)} membrane(s), {sum(s.isClosed() for s in items)} closed, "
                             f"areas {', '.join(f'{s.getArea():.0f}' for s in items)} nm²")
        return lines + self._failureSummary()

    def _thicknessLines(self, surfaces: list[BilayerSurface]) -> list[str]:
        if not self._value(SurfacesParam.THICKNESS) or not surfaces:
            return []
        resolved = [s.getThickness() for s in surfaces if s.getThickness() is not None]
        if not resolved:
            return [f"Bilayer thickness: unresolved in all {len(surfaces)} membrane(s)."]
        return [(f"Bilayer thickness: median {statistics.median(resolved):.2f} nm over the {len(resolved)} of "
                f"{len(surfaces)} membrane(s) where the leaflets are resolved.")]

    def _methods(self) -> list[str]:
        masks = self._getInputSet()
        if masks is None:
            return []
        thickness = (", and bilayer thickness from the tomograms' density profiles along the surface normals"
                     if self._value(SurfacesParam.THICKNESS) else "")
        return [(f"The membranes of {masks.getSize()} segmentations were meshed (midsurface, Taubin smoothing, "
                f"uniform re-meshing) and measured with Bilayer {__version__} (area, enclosed volume, mean and "
                f"Gaussian curvature, distance to the nearest membrane{thickness}), in the manner of MemBrain v2's "
                f"surface modules [{CITATION_MEMBRAIN_V2}] and the surface-morphometrics pipeline (Barad et al., "
                "J Cell Biol 2023).")]

    def _citations(self) -> list[str]:
        return [CITATION_MEMBRAIN_V2]
