"""Pictures of membrane surfaces: histograms of their per-vertex measures, and the meshes coloured by one.

Values are shown in nm units (curvature 1/nm, Gaussian curvature 1/nm², thickness and distances
nm), whatever unit a mesh stores them in (:data:`PLOT_VALUES` says). Histograms draw every membrane
together, stacked and coloured per membrane, on shared bins. The mesh picture shows the surfaces
three ways, as tomogram viewers do: from above (XY, looking down z), from the side (XZ) and
obliquely, orthographic and in physical proportions, with one colour bar; NaN (a value not defined
there: an unresolved thickness, curvature at a rim) is drawn grey. Big meshes are drawn from a
coarser copy (vertex clustering: one vertex per cell of a grid, the cells' size set by the face
budget) so a picture takes seconds. PNGs are written atomically
like every output (:func:`bilayer.io.atomic_open`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bilayer.errors import ConfigError
from bilayer.io.atomic import OutputGroup, atomic_open
from bilayer.surfaces.mesh import Mesh

__all__ = ["HISTOGRAM_VALUES", "PLOT_VALUES", "PlotValue", "histograms_png", "mesh_png", "render_histograms",
           "render_mesh_picture", "render_pictures"]

_NAN_RGBA = (0.62, 0.62, 0.62, 1.0)
#: (title, elevation, azimuth, the axis pointing at the viewer, whose ticks are left out)
_VIEWS = (("XY (from +z)", 90.0, -90.0, "z"), ("XZ (from −y)", 0.0, -90.0, "y"), ("oblique", 28.0, -58.0, ""))
_MAX_FACES = 12_000  # per picture: above this, coarser copies are drawn, each mesh its share by faces
_MIN_FACES = 200  # the least share of a mesh
_CELL_WIDENING = 1.2  # cells cut a curved surface obliquely: ~1.4 × the faces of a flat one (an icosphere)
_CLIP_PERCENTILES = (1.0, 99.0)
_MIN_DEPTH = 0.25  # the least box side, as a fraction of the longest
_PICTURE_BYTES_PER_VERTEX = 150  # memory of drawing one picture of meshes this big (the decimation's copies)


@dataclass(frozen=True)
class PlotValue:
    """How a per-vertex value is shown: its axis label (with the shown unit) and the factor from the
    unit the mesh stores it in to the shown one."""

    label: str
    scale: float = 1.0


#: The per-vertex values the surface layer attaches (bilayer.surfaces.measures / thickness), as shown.
PLOT_VALUES: dict[str, PlotValue] = {
    "mean_curvature": PlotValue("mean curvature (1/nm)"),
    "gaussian_curvature": PlotValue("Gaussian curvature (1/nm²)"),
    "thickness": PlotValue("bilayer thickness (nm)", 0.1),  # stored in Å
    "nearest_distance": PlotValue("distance to the nearest other membrane (nm)"),
}
#: The histograms drawn by default, one panel each.
HISTOGRAM_VALUES: tuple[str, ...] = ("mean_curvature", "gaussian_curvature", "thickness", "nearest_distance")


def render_histograms(meshes: Sequence[Mesh], values: Sequence[str] = HISTOGRAM_VALUES, *, title: str = "",
                      dpi: int = 100) -> bytes:
    """Histograms of per-vertex ``values`` over ``meshes`` as PNG bytes: one panel per value, every
    membrane stacked on shared bins and coloured by label; a panel without data says so."""
    fig = _figure(2 * 4.2 if len(values) > 1 else 4.8, 3.4 * ((len(values) + 1) // 2) + 0.4, dpi)
    columns = 2 if len(values) > 1 else 1
    colours = _membrane_colours(len(meshes))
    for index, name in enumerate(values):
        ax = fig.add_subplot((len(values) + columns - 1) // columns, columns, index + 1)
        shown = _shown(name)
        having = [i for i, m in enumerate(meshes) if name in m.values]  # a membrane keeps its colour in every panel
        per_mesh = [shown.scale * meshes[i].values[name] for i in having]
        finite = [a[np.isfinite(a)] for a in per_mesh]
        ax.set_xlabel(shown.label, fontsize=9)
        if not any(len(a) for a in finite):
            why = "no membrane has this value" if not per_mesh else "not defined at any vertex"
            ax.text(0.5, 0.5, f"no data: {why}", ha="center", va="center", transform=ax.transAxes, fontsize=9)
            ax.set_yticks([])
            continue
        lo, hi = np.percentile(np.concatenate(finite), (0.5, 99.5))
        bins = np.linspace(lo, hi, 41) if hi > lo else np.linspace(lo - 0.5, lo + 0.5, 41)
        labelled = [(a, meshes[i].label, colours[i]) for a, i in zip(finite, having) if len(a)]
        below = np.zeros(len(bins) - 1)
        for a, label, colour in labelled:  # stacked: one filled step outline per membrane (not a bar per bin)
            above = below + np.histogram(np.clip(a, bins[0], bins[-1]), bins=bins)[0]
            ax.stairs(above, bins, baseline=below, fill=True, color=colour, label=f"membrane {label}")
            below = above
        ax.set_xlim(bins[0], bins[-1])
        undefined = sum(int(np.size(a) - np.size(f)) for a, f in zip(per_mesh, finite))
        total = sum(int(np.size(a)) for a in per_mesh)
        median = float(np.median(np.concatenate(finite)))
        ax.set_title(f"median {median:.3g}; {undefined} of {total} vertices undefined", fontsize=8)
        ax.set_ylabel("vertices", fontsize=9)
        if 1 < len(labelled) <= 12:
            ax.legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def render_mesh_picture(meshes: Sequence[Mesh], value: str, *, title: str = "", dpi: int = 100,
                        max_faces: int = _MAX_FACES) -> bytes:
    """The meshes coloured by the per-vertex ``value`` as PNG bytes: three orthographic views (XY, XZ,
    oblique) in nm, one colour bar in the value's shown unit (:data:`PLOT_VALUES`), NaN grey.

    Raises:
        ConfigError: no mesh, or no mesh carries ``value``.
    """
    from matplotlib import cm
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    if not meshes:
        raise ConfigError("no membrane meshes to draw")
    if not any(value in m.values for m in meshes):
        have = sorted({k for m in meshes for k in m.values})
        raise ConfigError(f"no mesh carries the value {value!r}; choose one of {', '.join(have) or '(none)'}")
    shown = _shown(value)
    total = sum(len(m.faces) for m in meshes)
    drawn = [_decimated(m, value, max(_MIN_FACES, max_faces * len(m.faces) // max(total, 1))) for m in meshes]
    triangles = np.concatenate([v[f] for v, f, _ in drawn]) / 10.0  # nm
    face_values = np.concatenate([shown.scale * vals[f].mean(axis=1) for _, f, vals in drawn])
    norm, cmap = _colour_scale(face_values)
    rgba = cmap(norm(np.nan_to_num(face_values)))
    rgba[~np.isfinite(face_values)] = _NAN_RGBA

    lo, hi = triangles.reshape(-1, 3).min(axis=0), triangles.reshape(-1, 3).max(axis=0)
    # a flat sheet gets some depth around it, so a side view shows it as a line, not a sliver of ticks
    span = np.maximum(hi - lo, _MIN_DEPTH * max(float((hi - lo).max()), 1.0))
    lo = (lo + hi) / 2 - span / 2
    fig = _figure(14.0, 4.9, dpi)
    for index, (name, elevation, azimuth, towards_viewer) in enumerate(_VIEWS):
        ax = fig.add_axes((0.01 + index * 0.3, 0.06, 0.29, 0.84), projection="3d")
        # edges in the faces' colours: a sheet seen edge-on is still a line
        ax.add_collection3d(Poly3DCollection(triangles, facecolors=rgba, edgecolors=rgba, linewidths=0.3,
                                             shade=True))
        ax.set_xlim(lo[0], lo[0] + span[0])
        ax.set_ylim(lo[1], lo[1] + span[1])
        ax.set_zlim(lo[2], lo[2] + span[2])
        ax.set_box_aspect(tuple(span))  # a copy: matplotlib scales the array it is given in place
        ax.set_proj_type("ortho")
        ax.view_init(elev=elevation, azim=azimuth)
        ax.set_xlabel("x (nm)", fontsize=8)
        ax.set_ylabel("y (nm)", fontsize=8)
        ax.set_zlabel("z (nm)", fontsize=8)
        ax.tick_params(labelsize=7)
        if towards_viewer:
            getattr(ax, f"set_{towards_viewer}ticks")([])
            getattr(ax, f"set_{towards_viewer}label")("")
        ax.set_title(name, fontsize=9)
    bar = fig.add_axes((0.925, 0.15, 0.012, 0.66))
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), cax=bar).set_label(shown.label, fontsize=8)
    bar.tick_params(labelsize=7)
    undefined = int((~np.isfinite(face_values)).sum())
    heading = f"{title}   " if title else ""
    fig.suptitle(f"{heading}{len(meshes)} membrane(s), {len(face_values)} faces drawn"
                 + (f", grey: {shown.label.split(' (')[0]} not defined ({undefined} faces)" if undefined else ""),
                 fontsize=9)
    return _png(fig)


def render_pictures(meshes: Sequence[Mesh], values: Sequence[str], *,
                    workers: int | None = None) -> tuple[bytes, dict[str, bytes]]:
    """:func:`render_histograms` of ``meshes`` and :func:`render_mesh_picture` for each of ``values``, as
    PNG bytes, drawn side by side in worker processes when the meshes are big enough to be worth it
    (:func:`~bilayer.surfaces.parallel.map_membranes`; ``workers`` as there): matplotlib draws on one
    core, and a tomogram's four pictures took 4 s one after the other."""
    from bilayer.surfaces.parallel import map_membranes

    wanted = sorted({*HISTOGRAM_VALUES, *values})
    light = [Mesh(m.vertices, m.faces, label=m.label, closed=m.closed,
                  values={k: v for k, v in m.values.items() if k in wanted}) for m in meshes]
    tasks = [("histograms", "")] + [("mesh", value) for value in values]
    size = _PICTURE_BYTES_PER_VERTEX * sum(m.vertex_count for m in meshes)
    drawn = map_membranes(_render, tasks, workers=workers, task_bytes=[size] * len(tasks), shared={"meshes": light})
    return drawn[0], dict(zip(values, drawn[1:]))


def _render(kind: str, value: str, *, meshes: Sequence[Mesh]) -> bytes:
    return render_histograms(meshes) if kind == "histograms" else render_mesh_picture(meshes, value)


def histograms_png(
    path: str | os.PathLike, meshes: Sequence[Mesh], values: Sequence[str] = HISTOGRAM_VALUES, *,
    title: str = "", overwrite: bool = False, protect: Iterable[str | os.PathLike] = (),
    group: OutputGroup | None = None,
) -> Path:
    """Write :func:`render_histograms`'s PNG atomically to ``path``."""
    return _write(path, render_histograms(meshes, values, title=title), overwrite, protect, group)


def mesh_png(
    path: str | os.PathLike, meshes: Sequence[Mesh], value: str, *, title: str = "",
    max_faces: int = _MAX_FACES, overwrite: bool = False, protect: Iterable[str | os.PathLike] = (),
    group: OutputGroup | None = None,
) -> Path:
    """Write :func:`render_mesh_picture`'s PNG atomically to ``path``."""
    return _write(path, render_mesh_picture(meshes, value, title=title, max_faces=max_faces), overwrite, protect,
                  group)


def _write(path: str | os.PathLike, png: bytes, overwrite: bool, protect: Iterable[str | os.PathLike],
           group: OutputGroup | None) -> Path:
    with atomic_open(path, overwrite=overwrite, protect=protect, group=group) as f:
        f.write(png)
    return Path(path)


def _shown(name: str) -> PlotValue:
    return PLOT_VALUES.get(name, PlotValue(name.replace("_", " ")))


def _figure(width: float, height: float, dpi: int):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, facecolor="white")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def _membrane_colours(count: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "turbo"]
    return [palette(i if count <= 10 else i / max(count - 1, 1)) for i in range(count)]


def _colour_scale(values: np.ndarray):
    """A diverging scale centred on 0 for signed values (curvature), else a sequential one; limits at
    robust percentiles so a few extreme vertices do not wash the picture out."""
    from matplotlib import colormaps, colors

    finite = values[np.isfinite(values)]
    if not len(finite):
        return colors.Normalize(0.0, 1.0), colormaps["viridis"]
    lo, hi = np.percentile(finite, _CLIP_PERCENTILES)
    if lo < 0 < hi:
        limit = float(max(-lo, hi))
        return colors.Normalize(-limit, limit), colormaps["RdBu_r"]
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return colors.Normalize(float(lo), float(hi)), colormaps["viridis"]


def _decimated(mesh: Mesh, value: str, max_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices, faces, per-vertex ``value`` or NaN) of ``mesh`` with about ``max_faces`` faces at
    most: vertex clustering on a grid of cells sized for that many faces (a flat surface of area A
    cut into cells of side c has about 2A/c² faces; a curved one more, hence the widening), each cell's vertices merged into their mean and
    their value into the mean of the finite ones (NaN where none is). A picture's simplification: fast
    (a million faces in a fraction of a second), and the shape holds at the picture's scale."""
    vertices, faces = mesh.vertices, mesh.faces
    values = mesh.values.get(value, np.full(len(vertices), np.nan))
    if len(faces) <= max_faces:
        return np.asarray(vertices, np.float64), np.asarray(faces, np.int64), np.asarray(values, np.float64)
    cell = _CELL_WIDENING * np.sqrt(2.0 * max(mesh.area(), 1e-12) / max_faces)
    grid = np.floor((vertices - vertices.min(axis=0)) / cell).astype(np.int64)
    span = grid.max(axis=0) + 1
    _, cluster = np.unique((grid[:, 0] * span[1] + grid[:, 1]) * span[2] + grid[:, 2], return_inverse=True)
    cluster = cluster.ravel()
    count = np.bincount(cluster)
    merged = np.stack([np.bincount(cluster, vertices[:, axis]) / count for axis in range(3)], axis=1)
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        merged_values = np.bincount(cluster, np.where(finite, values, 0.0)) / np.bincount(cluster, finite)
    kept = cluster[faces]
    kept = kept[(kept[:, 0] != kept[:, 1]) & (kept[:, 1] != kept[:, 2]) & (kept[:, 0] != kept[:, 2])]
    return merged, kept, merged_values
