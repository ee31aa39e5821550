"""The one-call public entry: predictor → threshold → post-processing, in memory or to files.

:func:`segment` returns :class:`Volume` objects and touches no disk beyond reading its input.
:func:`segment_file` streams a tomogram to ``<stem>_seg.mrc`` (and ``_scores``,
``_components``, ``_skeleton``, ``_preview.png`` on request) slab by slab, so its memory does
not grow with the tomogram; every output carries the input's voxel size and origin, is checked
before any work starts, and appears atomically.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from bilayer.errors import ConfigError
from bilayer.infer.predictor import Predictor
from bilayer.infer.sliding import ProgressFn, SlabCollector
from bilayer.io import Volume, check_output_path, ensure_output_dir, open_volume_writer, read_volume, write_volume
from bilayer.postprocess import connected_components, skeletonize

__all__ = ["OutputOptions", "Segmentation", "SegmentReport", "output_paths", "segment", "segment_file"]

#: Output kinds and the suffix each adds to the input's stem (DESIGN.md §3).
SUFFIXES = {"mask": "_seg.mrc", "scores": "_scores.mrc", "components": "_components.mrc",
            "skeleton": "_skeleton.mrc", "preview": "_preview.png"}


@dataclass(frozen=True)
class OutputOptions:
    """What to produce besides the binary mask.

    Attributes:
        scores: keep the network's scores (float32 logits; membrane where > threshold).
        components: label connected membranes (26-connectivity), 1 = the largest.
        min_size: drop membranes smaller than this many voxels from the components.
        skeleton: MemBrain-seg's one-voxel surface skeleton of the mask.
        preview: a PNG of central slices with the mask (files only).
    """

    scores: bool = False
    components: bool = False
    min_size: int = 0
    skeleton: bool = False
    preview: bool = True

    def __post_init__(self) -> None:
        if self.min_size < 0:
            raise ConfigError(f"min_size {self.min_size} must be 0 or more voxels")


@dataclass(frozen=True)
class Segmentation:
    """The results for one tomogram, each with the input's geometry."""

    mask: Volume
    scores: Volume | None = None
    components: Volume | None = None
    skeleton: Volume | None = None


@dataclass(frozen=True)
class SegmentReport:
    """What :func:`segment_file` wrote, for summaries."""

    source: Path
    outputs: dict[str, Path]
    membrane_fraction: float
    components: int | None
    seconds: float

    def summary(self) -> str:
        """One line for the console."""
        parts = [f"{self.source.name}: membrane {100 * self.membrane_fraction:.2f}%"]
        if self.components is not None:
            parts.append(f"{self.components} components")
        parts.append(f"{self.seconds:.1f} s → {self.outputs['mask']}")
        return ", ".join(parts)


def segment(tomogram: Volume, predictor: Predictor, *, outputs: OutputOptions = OutputOptions(),
            progress: ProgressFn | None = None) -> Segmentation:
    """Segment membranes in ``tomogram``; results in memory (see :func:`segment_file` for files)."""
    collector = SlabCollector(tomogram.shape)
    predictor.predict(tomogram, emit=collector, progress=progress)
    scores = collector.scores
    mask = (scores > predictor.config.threshold).astype(np.int8)
    return Segmentation(
        mask=tomogram.with_data(mask),
        scores=tomogram.with_data(scores) if outputs.scores else None,
        components=tomogram.with_data(_components(mask, outputs.min_size)[0]) if outputs.components else None,
        skeleton=tomogram.with_data(skeletonize(mask).astype(np.int8)) if outputs.skeleton else None,
    )


def output_paths(source: str | os.PathLike, out_dir: str | os.PathLike, outputs: OutputOptions) -> dict[str, Path]:
    """The files :func:`segment_file` writes for ``source``, by kind."""
    stem = Path(source).stem
    wanted = {"mask": True, "scores": outputs.scores, "components": outputs.components,
              "skeleton": outputs.skeleton, "preview": outputs.preview}
    return {kind: Path(out_dir) / f"{stem}{SUFFIXES[kind]}" for kind, on in wanted.items() if on}


def segment_file(source: str | os.PathLike, out_dir: str | os.PathLike, predictor: Predictor, *,
                 voxel_size: float | Sequence[float] | None = None, outputs: OutputOptions = OutputOptions(),
                 overwrite: bool = False, progress: ProgressFn | None = None) -> SegmentReport:
    """Segment one tomogram file into ``out_dir``, streaming slab by slab.

    Raises:
        BilayerError: a bad input (see :func:`bilayer.io.read_volume`) or an output that may
            not be written; nothing is written then.
    """
    started = time.perf_counter()
    volume = read_volume(source, voxel_size=voxel_size)
    volume.isotropic_voxel_size  # fail before any work on anisotropic voxels
    paths = output_paths(source, ensure_output_dir(out_dir), outputs)
    for path in paths.values():
        check_output_path(path, overwrite=overwrite, protect=[volume.path])
    threshold = predictor.config.threshold
    geometry = dict(voxel_size=volume.voxel_size, origin=volume.origin, overwrite=overwrite, protect=[volume.path])
    label = [f"bilayer segment {Path(source).name} threshold {threshold:g}"]
    membrane = 0
    with open_volume_writer(paths["mask"], volume.shape, np.int8, labels=label, **geometry) as mask_out, \
            _optional_writer(paths.get("scores"), volume.shape, label, geometry) as scores_out:

        def emit(z_start: int, scores: np.ndarray) -> None:
            nonlocal membrane
            mask = scores > threshold
            membrane += int(np.count_nonzero(mask))
            mask_out.write(z_start, mask.astype(np.int8))
            if scores_out is not None:
                scores_out.write(z_start, scores)

        predictor.predict(volume, emit=emit, progress=progress)
    count = _post_process(paths, volume, outputs, overwrite, label)
    return SegmentReport(Path(source), paths, membrane / volume.data.size, count, time.perf_counter() - started)


def _post_process(paths: dict[str, Path], volume: Volume, outputs: OutputOptions, overwrite: bool,
                  label: list[str]) -> int | None:
    """Components, skeleton and preview from the mask just written (read back memory-mapped)."""
    if not (outputs.components or outputs.skeleton or outputs.preview):
        return None
    mask = read_volume(paths["mask"], voxel_size=volume.voxel_size, check_finite=False)
    count = None
    common = dict(voxel_size=volume.voxel_size, origin=volume.origin, overwrite=overwrite,
                  protect=[volume.path], labels=label)
    if outputs.components:
        labels, count = _components(np.asarray(mask.data), outputs.min_size)
        dtype = np.float32 if count > np.iinfo(np.uint16).max else None  # float32 holds integers to 2**24
        write_volume(paths["components"], labels, dtype=dtype, **common)
    if outputs.skeleton:
        write_volume(paths["skeleton"], skeletonize(np.asarray(mask.data)).astype(np.int8), **common)
    if outputs.preview:
        from bilayer.viz import write_preview

        write_preview(paths["preview"], volume, mask, title=f"{volume.path.name if volume.path else ''} → mask",
                      overwrite=overwrite, protect=[volume.path])
    return count


def _components(mask: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    found = connected_components(mask, min_size=min_size)
    return found.labels, found.count


def _optional_writer(path: Path | None, shape: tuple[int, int, int], label: list[str],
                     geometry: dict) -> AbstractContextManager:
    """A float32 writer for ``path``, or a context giving ``None`` when no path is wanted."""
    if path is None:
        return nullcontext()
    return open_volume_writer(path, shape, np.float32, labels=label, **geometry)
