"""Morphometrics of membrane surfaces: per-vertex curvatures and nearest-membrane distances on the
meshes, and one summary row per membrane (the CSV table of ``bilayer measure``).

Meshes are in Å (:mod:`bilayer.surfaces.mesh`); the values attached here and the table are in nm:
curvature in 1/nm (mean) and 1/nm² (Gaussian), distances in nm, area in nm², volume in nm³.
Statistics are over vertices (the re-meshed surfaces have evenly spaced vertices), leaving out
those where a value is not defined (NaN: curvature next to an open rim, no other membrane,
thickness unresolved).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bilayer.surfaces.curvature import vertex_curvatures
from bilayer.surfaces.distance import NearestMembrane, nearest_membrane_distances
from bilayer.surfaces.mesh import Mesh

__all__ = ["MEASURED_VALUES", "PROFILE_COLUMNS", "SURFACE_COLUMNS", "curvature_values", "distance_values", "measure_meshes",
           "surface_table"]

_NM = 10.0  # Å per nm

MEASURED_VALUES = ("mean_curvature", "gaussian_curvature", "nearest_distance", "nearest_label")

SURFACE_COLUMNS = (
    "label", "closed", "vertices", "area_nm2", "volume_nm3",
    "mean_curvature_mean_per_nm", "mean_curvature_median_per_nm", "mean_curvature_sd_per_nm",
    "gaussian_curvature_mean_per_nm2", "gaussian_curvature_median_per_nm2", "gaussian_curvature_sd_per_nm2",
    "nearest_distance_min_nm", "nearest_distance_median_nm", "nearest_label",
    "thickness_median_nm", "thickness_sd_nm", "thickness_resolved_fraction", "thickness_quality_median",
    "membrane_thickness_nm", "membrane_thickness_resolved", "membrane_thickness_quality",
)
#: Columns from the membrane's mean density profile (bilayer.surfaces.thickness), filled by whoever
#: measured the thickness (None in :func:`surface_table`'s rows).
PROFILE_COLUMNS = SURFACE_COLUMNS[-3:]


def measure_meshes(meshes: list[Mesh], scale: float | None = None,
                   max_distance: float | None = None) -> list[Mesh]:
    """The meshes with per-vertex values attached: ``mean_curvature`` (1/nm), ``gaussian_curvature``
    (1/nm²), ``nearest_distance`` (nm to the nearest other mesh) and ``nearest_label`` (its label).
    NaN where not defined.

    Args:
        meshes: the membranes of one tomogram (Å, one frame): distances are between them.
        scale: curvature patch radius in Å (:func:`bilayer.surfaces.curvature.vertex_curvatures`;
            ``None``: three edge lengths).
        max_distance: Å; membranes farther than this are not searched for (NaN).
    """
    distances = nearest_membrane_distances(meshes, max_distance)
    return [mesh.with_values(**curvature_values(mesh, scale), **distance_values(near))
            for mesh, near in zip(meshes, distances)]


def curvature_values(mesh: Mesh, scale: float | None = None) -> dict[str, np.ndarray]:
    """``mean_curvature`` (1/nm) and ``gaussian_curvature`` (1/nm²) of one mesh, as :attr:`Mesh.values`."""
    mean, gaussian = vertex_curvatures(mesh, scale)
    return {"mean_curvature": mean * _NM, "gaussian_curvature": gaussian * _NM**2}


def distance_values(near: NearestMembrane) -> dict[str, np.ndarray]:
    """``nearest_distance`` (nm) and ``nearest_label`` (NaN where none) of one mesh, as :attr:`Mesh.values`."""
    return {"nearest_distance": near.distance / _NM, "nearest_label": np.where(near.label > 0, near.label, np.nan)}


def surface_table(meshes: list[Mesh], scale: float | None = None,
                  max_distance: float | None = None) -> list[dict[str, Any]]:
    """One row per membrane, keyed by :data:`SURFACE_COLUMNS` (None where a value does not apply:
    the volume of an open surface, thickness columns when the meshes carry no ``thickness``).
    Meshes that do not all carry :data:`MEASURED_VALUES` are measured first
    (:func:`measure_meshes` with ``scale`` and ``max_distance``)."""
    if not all(name in mesh.values for mesh in meshes for name in MEASURED_VALUES):
        meshes = measure_meshes(meshes, scale, max_distance)
    return [_row(mesh) for mesh in meshes]


def _row(mesh: Mesh) -> dict[str, Any]:
    values = mesh.values
    mean = _summary(values["mean_curvature"])
    gaussian = _summary(values["gaussian_curvature"])
    distance = values["nearest_distance"]
    closest = int(np.nanargmin(distance)) if np.isfinite(distance).any() else None
    row = {
        "label": int(mesh.label),
        "closed": bool(mesh.closed),
        "vertices": mesh.vertex_count,
        "area_nm2": mesh.area() / _NM**2,
        "volume_nm3": float(mesh.to_trimesh().volume) / _NM**3 if mesh.closed else None,
        "mean_curvature_mean_per_nm": mean[0],
        "mean_curvature_median_per_nm": mean[1],
        "mean_curvature_sd_per_nm": mean[2],
        "gaussian_curvature_mean_per_nm2": gaussian[0],
        "gaussian_curvature_median_per_nm2": gaussian[1],
        "gaussian_curvature_sd_per_nm2": gaussian[2],
        "nearest_distance_min_nm": None if closest is None else float(distance[closest]),
        "nearest_distance_median_nm": None if closest is None else float(np.nanmedian(distance)),
        "nearest_label": None if closest is None else int(values["nearest_label"][closest]),
    }
    row.update(_thickness(values))
    return {name: row.get(name) for name in SURFACE_COLUMNS}


def _thickness(values: dict[str, np.ndarray]) -> dict[str, Any]:
    """Thickness columns (nm) from ``values["thickness"]`` (Å, NaN where unresolved) and
    ``values["thickness_quality"]``; None where the mesh carries no thickness."""
    empty = {"thickness_median_nm": None, "thickness_sd_nm": None,
             "thickness_resolved_fraction": None, "thickness_quality_median": None}
    thickness = values.get("thickness")
    if thickness is None:
        return empty
    resolved = np.isfinite(thickness)
    quality = values.get("thickness_quality")
    _, median, sd = _summary(thickness / _NM)
    return {
        "thickness_median_nm": median,
        "thickness_sd_nm": sd,
        "thickness_resolved_fraction": float(resolved.mean()) if thickness.size else None,
        "thickness_quality_median": _summary(quality)[1] if quality is not None else None,
    }


def _summary(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Mean, median and standard deviation of the finite values; Nones when there are none."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None, None, None
    return float(finite.mean()), float(np.median(finite)), float(finite.std())
