"""The names of a tomogram's outputs: ``<stem><suffix>`` in the output folder (DESIGN.md §3).

The one owner of these names: the command line, the Python API, the Scipion protocols and the
RELION jobs all ask here, so a rename happens in one place.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from pathlib import Path

from bilayer.errors import ConfigError

__all__ = ["MESH_SUFFIXES", "OUTPUT_SUFFIXES", "mesh_label", "mesh_name", "output_name", "output_paths",
           "surface_picture_name", "threshold_mask_name"]

#: Output kinds and the ending each adds to the input's stem.
OUTPUT_SUFFIXES: dict[str, str] = {
    "mask": "_seg.mrc",
    "scores": "_scores.mrc",
    "components": "_components.mrc",
    "skeleton": "_skeleton.mrc",
    "uncertainty": "_uncertainty.mrc",
    "preview": "_preview.png",
    "spectrum": "_spectrum.tsv",
    "matched": "_matched.mrc",
    "deconvolved": "_deconv.mrc",
    "rescaled": "_rescaled.mrc",
    "meshes": "_meshes.json",
    "surfaces": "_surfaces.csv",
    "surface_histograms": "_surface_histograms.png",
}

#: Mesh formats a membrane's surface is written in (bilayer.surfaces.mesh_io), the first the default:
#: PLY carries the per-vertex values.
MESH_SUFFIXES: tuple[str, ...] = (".ply", ".obj", ".stl", ".glb")
_MESH_INFIX = "_membrane"


def output_name(source: str | os.PathLike, kind: str) -> str:
    """The file name of ``source``'s output of ``kind`` (e.g. ``tomo.mrc``, mask → ``tomo_seg.mrc``)."""
    try:
        suffix = OUTPUT_SUFFIXES[kind]
    except KeyError as e:
        raise ConfigError(f"unknown output kind {kind!r}; use one of {', '.join(OUTPUT_SUFFIXES)}") from e
    return f"{Path(source).stem}{suffix}"


def output_paths(source: str | os.PathLike, out_dir: str | os.PathLike, kinds: Iterable[str]) -> dict[str, Path]:
    """``{kind: out_dir / output_name(source, kind)}`` for each of ``kinds``, in their order."""
    return {kind: Path(out_dir) / output_name(source, kind) for kind in kinds}


def threshold_mask_name(scores: str | os.PathLike, threshold: float) -> str:
    """The mask of ``scores`` (a ``<stem>_scores.mrc``) at ``threshold``: ``<stem>_seg_t<threshold>.mrc``
    (``tomo_scores.mrc``, 1.5 → ``tomo_seg_t1.5.mrc``; the threshold as Python's shortest ``g`` form)."""
    if not math.isfinite(threshold):
        raise ConfigError(f"threshold {threshold!r} must be a finite number")
    stem = Path(scores).stem.removesuffix(Path(OUTPUT_SUFFIXES["scores"]).stem)
    mask = Path(OUTPUT_SUFFIXES["mask"])
    return f"{stem}{mask.stem}_t{threshold:g}{mask.suffix}"


def mesh_name(source: str | os.PathLike, label: int, suffix: str = MESH_SUFFIXES[0]) -> str:
    """The mesh of membrane ``label`` of the mask ``source``: ``<stem>_membrane<label><suffix>``
    (``tomo_seg.mrc``, 3 → ``tomo_seg_membrane3.ply``); ``suffix`` one of :data:`MESH_SUFFIXES`."""
    if suffix not in MESH_SUFFIXES:
        raise ConfigError(f"unknown mesh format {suffix!r}; use one of {', '.join(MESH_SUFFIXES)}")
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or label < 0:
        raise ConfigError(f"a membrane label is a whole number 0 or more, got {label!r}")
    return f"{Path(source).stem}{_MESH_INFIX}{int(label)}{suffix}"


def mesh_label(path: str | os.PathLike) -> int | None:
    """The membrane label in a name made by :func:`mesh_name` (``tomo_seg_membrane3.ply`` → 3), else None."""
    path = Path(path)
    stem, _, label = path.stem.rpartition(_MESH_INFIX)
    if path.suffix.lower() not in MESH_SUFFIXES or not stem or not label.isdigit() or not label.isascii():
        return None
    return int(label)


def surface_picture_name(source: str | os.PathLike, value: str) -> str:
    """The picture of ``source``'s membrane meshes coloured by the per-vertex ``value``:
    ``<stem>_surface_<value>.png`` (``tomo_seg.mrc``, mean_curvature → ``tomo_seg_surface_mean_curvature.png``)."""
    if not value or not all(c.isalnum() or c == "_" for c in value) or not value.isascii():
        raise ConfigError(f"value name {value!r} must be letters, digits and underscores")
    return f"{Path(source).stem}_surface_{value}.png"
