"""Segmentation of whole tomograms: predictor → threshold → post-processing, in memory or to files.

:func:`segment_volume` returns :class:`Volume` objects and touches no disk beyond reading its input
(and the temporary file of TTA passes). :func:`segment_plans` streams checked tomograms
(:func:`~bilayer.infer.preflight.plan_segmentation`) to ``<stem>_seg.mrc`` (and ``_scores``,
``_uncertainty``, masks at extra thresholds ``_seg_t<t>``, ``_components``, ``_skeleton``,
``_preview.png`` on request) slab by slab, so its memory does not grow with the tomogram (components
and skeleton aside); every output carries the input's voxel size and origin, and a tomogram's
outputs appear together when all are complete, or not at all. :func:`segment_file` does both for
one file.

In a batch, a tomogram that fails during the work (a constant tomogram, say) leaves no outputs and
the others go on; an output that cannot be written (a full disk) stops the batch, keeping the
tomograms finished before it, each complete.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from bilayer.errors import BilayerError, OutputError
from bilayer.infer.blend import EmitFn, ProgressFn, SlabCollector
from bilayer.infer.config import OutputOptions
from bilayer.infer.predictor import Predictor
from bilayer.infer.preflight import TomogramPlan, plan_segmentation
from bilayer.infer.uncertainty import UncertaintySmoother
from bilayer.io import HEADER_BYTES, OutputGroup, Volume, ensure_output_dir, open_volume_writer, output_group, \
    write_volume
from bilayer.postprocess import connected_components, skeletonize
from bilayer.postprocess.threshold import ThresholdWriters

__all__ = ["Segmentation", "SegmentReport", "segment_file", "segment_plans", "segment_planned", "segment_volume"]


@dataclass(frozen=True)
class Segmentation:
    """The results for one tomogram, each with the input's geometry.

    Attributes:
        mask: int8, 1 where the score exceeds the threshold.
        scores, components, skeleton, uncertainty: when asked for (:class:`OutputOptions`).
        extra_masks: ``{threshold: int8 mask}`` for the extra thresholds asked for.
    """

    mask: Volume
    scores: Volume | None = None
    components: Volume | None = None
    skeleton: Volume | None = None
    uncertainty: Volume | None = None
    extra_masks: Mapping[float, Volume] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentReport:
    """What :func:`segment_planned` wrote, for summaries."""

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


def segment_volume(tomogram: Volume, predictor: Predictor, *, outputs: OutputOptions = OutputOptions(),
                   progress: ProgressFn | None = None) -> Segmentation:
    """Segment membranes in ``tomogram``; results in memory (see :func:`segment_file` for files)."""
    collector = SlabCollector(tomogram.shape)
    threshold = predictor.config.threshold
    spread = SlabCollector(tomogram.shape) if outputs.uncertainty else None
    sink = _SpreadSink(tomogram.shape, outputs.smooth_uncertainty, spread) if spread is not None else None

    def emit(z_start: int, scores: np.ndarray) -> None:
        collector(z_start, scores)
        if sink is not None:
            sink.mask(z_start, scores > threshold)

    predictor.predict(tomogram, emit=emit, progress=progress, uncertainty=sink)
    scores = collector.scores
    mask = (scores > threshold).astype(np.int8)
    return Segmentation(
        mask=tomogram.with_data(mask),
        scores=tomogram.with_data(scores) if outputs.scores else None,
        components=tomogram.with_data(connected_components(mask, min_size=outputs.min_size).labels)
        if outputs.components else None,
        skeleton=tomogram.with_data(skeletonize(mask).astype(np.int8)) if outputs.skeleton else None,
        uncertainty=tomogram.with_data(spread.scores) if spread is not None else None,
        extra_masks={t: tomogram.with_data((scores > t).astype(np.int8)) for t in outputs.extra_thresholds},
    )


def segment_file(source: str | os.PathLike, out_dir: str | os.PathLike, predictor: Predictor, *,
                 voxel_size: float | None = None, outputs: OutputOptions = OutputOptions(),
                 overwrite: bool = False, progress: ProgressFn | None = None) -> SegmentReport:
    """Check, then segment one tomogram file into ``out_dir``, streaming slab by slab.

    Raises:
        BilayerError: a bad input or an output that may not be written (found before any work; see
            :func:`~bilayer.infer.preflight.plan_segmentation`), or a failure during the work; no
            output is left then.
    """
    (plan,) = plan_segmentation([source], ensure_output_dir(out_dir), predictor, outputs, voxel_size=voxel_size,
                                overwrite=overwrite)
    return segment_planned(plan, predictor, outputs, overwrite=overwrite, progress=progress)


def segment_plans(plans: Sequence[TomogramPlan], predictor: Predictor, outputs: OutputOptions, *,
                  overwrite: bool = False, progress: Callable[[TomogramPlan], ProgressFn | None] | None = None,
                  ) -> Iterator[tuple[TomogramPlan, SegmentReport | BilayerError]]:
    """Segment checked tomograms one after the other; yields each with its report or its error.

    A tomogram that fails leaves no outputs and the next one follows; after an :class:`OutputError`
    (a full disk, say) the batch stops, as every later tomogram would fail the same way.
    """
    for plan in plans:
        try:
            report = segment_planned(plan, predictor, outputs, overwrite=overwrite,
                                     progress=progress(plan) if progress else None)
        except OutputError as e:
            yield plan, e
            return
        except BilayerError as e:
            yield plan, e
            continue
        yield plan, report


def segment_planned(plan: TomogramPlan, predictor: Predictor, outputs: OutputOptions, *, overwrite: bool = False,
                    progress: ProgressFn | None = None) -> SegmentReport:
    """Segment one checked tomogram; its outputs appear together at the end, or not at all."""
    started = time.perf_counter()
    volume, paths = plan.volume, plan.outputs
    threshold = predictor.config.threshold
    geometry = dict(voxel_size=volume.voxel_size, origin=volume.origin, overwrite=overwrite, protect=[volume.path])
    label = [f"bilayer segment {plan.source.name} threshold {threshold:g}"]
    extra = {t: paths[kind] for t, kind in outputs.extra_mask_kinds.items()}
    membrane = 0
    spread_label = [f"bilayer segment {plan.source.name} uncertainty"]
    with output_group() as group:
        with open_volume_writer(paths["mask"], volume.shape, np.int8, labels=label, group=group, **geometry) \
                as mask_out, _optional_writer(paths.get("scores"), volume.shape, label, geometry, group) as scores_out, \
                _optional_writer(paths.get("uncertainty"), volume.shape, spread_label, geometry, group) as spread_out, \
                ThresholdWriters(extra, volume, label=f"bilayer segment {plan.source.name}", group=group,
                                 overwrite=overwrite, protect=[volume.path]) as extra_out:
            sink = _SpreadSink(volume.shape, outputs.smooth_uncertainty, spread_out.write) if spread_out else None

            def emit(z_start: int, scores: np.ndarray) -> None:
                nonlocal membrane
                mask = scores > threshold
                membrane += int(np.count_nonzero(mask))
                mask_out.write(z_start, mask.astype(np.int8))
                if scores_out is not None:
                    scores_out.write(z_start, scores)
                extra_out.write(z_start, scores)
                if sink is not None:
                    sink.mask(z_start, mask)

            predictor.predict(volume, emit=emit, progress=progress, uncertainty=sink)
        count = _post_process(paths, volume, outputs, overwrite, label, group)
    return SegmentReport(plan.source, paths, membrane / volume.data.size, count, time.perf_counter() - started)


class _SpreadSink:
    """The predictor's ``uncertainty`` target: each raw-variance slab goes to ``target``, through
    MemBrain-seg's smoothing (:class:`UncertaintySmoother`) when ``smooth``, paired with the mask of
    the same sections that the scores' ``emit`` passed to :meth:`mask` just before."""

    def __init__(self, shape: tuple[int, int, int], smooth: bool, target: EmitFn) -> None:
        self._target = target
        self._smoother = UncertaintySmoother(shape, target) if smooth else None
        self._mask: tuple[int, np.ndarray] | None = None

    def mask(self, z_start: int, mask: np.ndarray) -> None:
        if self._smoother is not None:
            self._mask = (z_start, mask)

    def __call__(self, z_start: int, variance: np.ndarray) -> None:
        if self._smoother is None:
            self._target(z_start, variance)
            return
        if self._mask is None or self._mask[0] != z_start or self._mask[1].shape != variance.shape:
            raise BilayerError(f"uncertainty of sections from z={z_start} came without their scores first; "
                               "this is a bug in Bilayer, please report it")
        self._smoother(z_start, variance, self._mask[1])
        self._mask = None


def _post_process(paths: dict[str, Path], volume: Volume, outputs: OutputOptions, overwrite: bool,
                  label: list[str], group: OutputGroup) -> int | None:
    """Components, skeleton and preview from the mask just finished (read back memory-mapped)."""
    if not (outputs.components or outputs.skeleton or outputs.preview):
        return None
    mask = group.memmap(paths["mask"], np.int8, volume.shape, HEADER_BYTES)
    count = None
    common = dict(voxel_size=volume.voxel_size, origin=volume.origin, overwrite=overwrite,
                  protect=[volume.path], labels=label, group=group)
    if outputs.components:
        found = connected_components(np.asarray(mask), min_size=outputs.min_size)
        count = found.count
        write_volume(paths["components"], found.labels, dtype=found.mrc_dtype, **common)
    if outputs.skeleton:
        write_volume(paths["skeleton"], skeletonize(np.asarray(mask)).astype(np.int8), **common)
    if outputs.preview:
        from bilayer.viz import write_preview

        title = f"{volume.path.name if volume.path else ''} → mask"
        write_preview(paths["preview"], volume, np.asarray(mask), title=title,
                      overwrite=overwrite, protect=[volume.path], group=group)
    return count


def _optional_writer(path: Path | None, shape: tuple[int, int, int], label: list[str],
                     geometry: dict, group: OutputGroup) -> AbstractContextManager:
    """A float32 writer for ``path``, or a context giving ``None`` when no path is wanted."""
    if path is None:
        return nullcontext()
    return open_volume_writer(path, shape, np.float32, labels=label, group=group, **geometry)
