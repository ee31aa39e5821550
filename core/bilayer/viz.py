"""Preview pictures: three orthogonal central slices of a tomogram, with an optional mask.

The layout is the orthogonal view of tomogram viewers: XY (top left), XZ below it sharing
x, ZY to its right sharing y, each at the volume's centre and in physical proportions, so
the missing-wedge elongation along z is seen as it is. With a mask, the same view is drawn
twice, plain on the left and with labels 1 (membrane) and 2 (ignore) translucent on the
right, so what is under the mask stays visible. Grey levels are clipped at robust percentiles.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from bilayer.errors import ConfigError
from bilayer.io.atomic import OutputGroup, atomic_open
from bilayer.io.volume import Volume

__all__ = ["central_slices", "render_preview", "write_preview"]

_MEMBRANE_RGBA = (1.0, 0.35, 0.0, 0.45)
_IGNORE_RGBA = (0.0, 0.75, 1.0, 0.35)
_CLIP_PERCENTILES = (0.5, 99.5)


def central_slices(data: np.ndarray, slab: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The XY (y, x), XZ (z, x) and ZY (y, z) central slices, each averaged over ``slab`` voxels.

    Only the voxels of the three slabs are read, so a memory-mapped tomogram stays on disk
    except for those.
    """
    if data.ndim != 3:
        raise ConfigError(f"a preview needs a 3-D (z, y, x) volume, got shape {data.shape}")
    if slab < 1:
        raise ConfigError(f"slab must be at least 1 voxel, got {slab}")

    def centred(axis: int) -> slice:
        n = data.shape[axis]
        start = max(0, n // 2 - slab // 2)
        return slice(start, min(n, start + slab))

    xy = np.asarray(data[centred(0)], dtype=np.float32).mean(axis=0)
    xz = np.asarray(data[:, centred(1)], dtype=np.float32).mean(axis=1)
    zy = np.asarray(data[:, :, centred(2)], dtype=np.float32).mean(axis=2).T
    return xy, xz, zy


def render_preview(
    image: np.ndarray | Volume,
    mask: np.ndarray | Volume | None = None,
    *,
    voxel_size: float | Sequence[float] | None = None,
    title: str = "",
    slab: int = 1,
    width_inches: float = 8.0,
    dpi: int = 100,
) -> bytes:
    """Render the orthogonal preview as PNG bytes.

    Args:
        image: the tomogram (z, y, x).
        mask: labels or a binary mask of the same shape; 1 membrane, 2 ignore.
        voxel_size: Å, one value or (z, y, x); taken from ``image`` if it is a Volume.
            Used for physical proportions and a scale bar; without it voxels are cubes.
        title: a line above the picture (file name, parameters).
        slab: voxels averaged across each slice (thicker slabs show noisy membranes better).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    if isinstance(image, Volume):
        voxel_size = image.voxel_size if voxel_size is None else voxel_size
        image = image.data
    mask_data = mask.data if isinstance(mask, Volume) else mask
    if mask_data is not None and mask_data.shape != image.shape:
        raise ConfigError(f"mask shape {mask_data.shape} differs from the tomogram's {image.shape}")
    vs = np.broadcast_to(np.asarray(voxel_size if voxel_size is not None else 1.0, dtype=float), (3,))
    extent = np.asarray(image.shape) * vs  # (z, y, x) in Å (or voxels)
    grey = central_slices(image, slab)
    lo, hi = np.percentile(np.concatenate([g.ravel() for g in grey]), _CLIP_PERCENTILES)
    overlays = central_slices(mask_data, 1) if mask_data is not None else (None, None, None)

    ez, ey, ex = extent
    gap = 0.03 * max(ex, ey)
    block_w, block_h = ex + gap + ez, ey + gap + ez  # one orthogonal view, in Å
    blocks = [(None, None, None)] if mask_data is None else [(None, None, None), overlays]
    separation = 2 * gap
    total_w = len(blocks) * block_w + (len(blocks) - 1) * separation
    heading_inches = 0.45 if title else 0.3
    fig = Figure(figsize=(width_inches * total_w / block_w, width_inches * block_h / block_w + heading_inches), dpi=dpi)
    top = 1.0 - heading_inches / fig.get_figheight()
    for index, labels3 in enumerate(blocks):  # the plain view, then the same view with the mask
        x0 = index * (block_w + separation)
        panels = {  # name: (slice, overlay, (left, bottom, width, height) in Å within the figure)
            "XY": (grey[0], labels3[0], (x0, ez + gap, ex, ey)),
            "XZ": (grey[1], labels3[1], (x0, 0.0, ex, ez)),
            "ZY": (grey[2], labels3[2], (x0 + ex + gap, ez + gap, ez, ey)),
        }
        for name, (plane, labels, (left, bottom, width, height)) in panels.items():
            ax = fig.add_axes((left / total_w, top * bottom / block_h, width / total_w, top * height / block_h))
            ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", aspect="auto")
            if labels is not None:
                ax.imshow(_label_rgba(labels), interpolation="nearest", aspect="auto")
            ax.set_axis_off()
            ax.text(0.02, 0.97, name, color="yellow", fontsize=9, va="top", transform=ax.transAxes)
            if name == "XY" and voxel_size is not None:
                _scale_bar(ax, plane.shape[1], float(vs[2]))
    heading = "\n".join(t for t in (title, _legend_text(image.shape, voxel_size, mask_data is not None)) if t)
    fig.suptitle(heading, fontsize=8, y=1.0 - 0.04 / fig.get_figheight(), va="top")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def write_preview(
    path: str | os.PathLike,
    image: np.ndarray | Volume,
    mask: np.ndarray | Volume | None = None,
    *,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike] = (),
    group: OutputGroup | None = None,
    **options: object,
) -> Path:
    """Write :func:`render_preview`'s PNG atomically to ``path`` (with ``group``'s other outputs);
    options as there."""
    png = render_preview(image, mask, **options)  # type: ignore[arg-type]
    with atomic_open(path, overwrite=overwrite, protect=protect, group=group) as f:
        f.write(png)
    return Path(path)


def _legend_text(shape: tuple[int, ...], voxel_size: object, has_mask: bool) -> str:
    lines = [f"{shape[0]}×{shape[1]}×{shape[2]} voxels (z, y, x)"]
    if voxel_size is not None:
        sizes = sorted({f"{v:.4g}" for v in np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))})
        lines.append(f"voxel {'/'.join(sizes)} Å")
    if has_mask:
        lines.append("orange: membrane, blue: ignore")
    return "   ".join(lines)


def _label_rgba(labels: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    rounded = np.rint(labels)
    rgba[rounded == 1] = _MEMBRANE_RGBA
    rgba[rounded == 2] = _IGNORE_RGBA
    return rgba


def _scale_bar(ax: object, width_px: int, voxel_size: float) -> None:
    """A bar of a round length (10 nm, 20 nm, 50 nm ...) about a fifth of the panel wide."""
    target_nm = width_px * voxel_size / 10.0 / 5.0
    nice = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
    length_nm = max([n for n in nice if n <= target_nm] or [nice[0]])
    length_px = length_nm * 10.0 / voxel_size
    x0 = 0.04 * width_px
    y = ax.get_ylim()[0] * 0.94  # type: ignore[attr-defined]
    ax.plot([x0, x0 + length_px], [y, y], color="white", linewidth=3, solid_capstyle="butt")  # type: ignore[attr-defined]
    height_px = ax.get_ylim()[0]  # type: ignore[attr-defined]
    ax.text(x0 + length_px / 2, y - 0.02 * height_px, f"{length_nm:g} nm", color="white",  # type: ignore[attr-defined]
            fontsize=8, ha="center", va="bottom")
