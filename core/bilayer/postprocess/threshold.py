"""Masks from a scores file at any thresholds, without running the network again.

``bilayer segment --scores`` keeps the network's logits; a mask at another threshold is then only
``scores > t``. :func:`threshold_scores` reads the scores memory-mapped and writes one int8 mask
per threshold slab by slab (memory bounded whatever the tomogram's size), with the scores' voxel
size and origin. All masks of one scores file appear together when complete, or none does; every
input and output is checked before the first slab.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bilayer import checks
from bilayer.errors import ConfigError
from bilayer.io import OutputGroup, Volume, check_output_path, open_volume_writer, output_group, read_volume
from bilayer.io.naming import threshold_mask_name

__all__ = ["ThresholdPlan", "ThresholdWriters", "ThresholdedMasks", "plan_thresholds", "threshold_scores",
           "write_thresholds"]

_SLAB_BYTES = 64 * 1024**2  # scores read per slab


@dataclass(frozen=True)
class ThresholdPlan:
    """A checked scores file (opened memory-mapped) and the mask each threshold gets."""

    scores: Path
    volume: Volume
    paths: dict[float, Path]


@dataclass(frozen=True)
class ThresholdedMasks:
    """The masks written from one scores file: per threshold, its path and membrane fraction."""

    scores: Path
    paths: dict[float, Path]
    membrane_fraction: dict[float, float]

    def summary(self) -> str:
        """One line per mask for the console."""
        return "\n".join(f"{self.paths[t]}  threshold {t:g}  membrane {100 * self.membrane_fraction[t]:.2f}%"
                         for t in self.paths)


def plan_thresholds(scores: str | os.PathLike, thresholds: Sequence[float], out_dir: str | os.PathLike | None = None,
                    *, voxel_size: float | None = None, overwrite: bool = False,
                    protect: Sequence[str | os.PathLike] = ()) -> ThresholdPlan:
    """Open and check ``scores`` and name its masks (in ``out_dir``, else beside it), before any work.

    Raises:
        BilayerError: an unreadable scores file, no or bad thresholds, two thresholds giving one file
            name, or a mask that exists (without ``overwrite``) or would replace an input.
    """
    values = [checks.number("threshold", t) for t in thresholds]
    if not values:
        raise ConfigError("give at least one threshold (-t 0 -t 1.5 ...); the scores are logits, 0 is probability 0.5")
    volume = read_volume(scores, voxel_size=voxel_size)
    if volume.data.dtype.kind != "f":
        raise ConfigError(f"{scores} holds {volume.data.dtype} values, not scores; give the float32 "
                          "<stem>_scores.mrc that bilayer segment --scores writes")
    folder = Path(out_dir) if out_dir is not None else Path(scores).parent
    paths: dict[float, Path] = {}
    for t in dict.fromkeys(values):  # repeats once, in the order given
        path = folder / threshold_mask_name(scores, t)
        if path in paths.values():
            raise ConfigError(f"thresholds {[k for k, p in paths.items() if p == path][0]!r} and {t!r} both name "
                              f"{path.name}; give thresholds that differ in their first 6 digits")
        paths[t] = check_output_path(path, overwrite=overwrite, protect=[scores, *protect])
    return ThresholdPlan(Path(scores), volume, paths)


def threshold_scores(scores: str | os.PathLike, thresholds: Sequence[float], out_dir: str | os.PathLike | None = None,
                     *, voxel_size: float | None = None, overwrite: bool = False) -> ThresholdedMasks:
    """Write ``<stem>_seg_t<t>.mrc`` (int8: 1 where the score exceeds ``t``) for each threshold.

    Args:
        scores: a float scores file (``<stem>_scores.mrc``).
        thresholds: the thresholds (logits); repeats are written once.
        out_dir: where the masks go (an existing folder); ``None``: beside the scores.
        voxel_size: Å, replacing the scores' header (and stamped into the masks).
        overwrite: replace existing masks.

    Raises:
        BilayerError: see :func:`plan_thresholds`; or the disk fills (nothing is left then).
    """
    return write_thresholds(plan_thresholds(scores, thresholds, out_dir, voxel_size=voxel_size, overwrite=overwrite),
                            overwrite=overwrite)


def write_thresholds(plan: ThresholdPlan, *, overwrite: bool = False) -> ThresholdedMasks:
    """Write the masks of a checked :class:`ThresholdPlan`, slab by slab; all appear together or none."""
    volume, paths = plan.volume, plan.paths
    depth, y, x = volume.shape
    per_slab = max(1, _SLAB_BYTES // (4 * y * x))
    with output_group() as group, ThresholdWriters(paths, volume, label=f"bilayer threshold {plan.scores.name}",
                                                  group=group, overwrite=overwrite, protect=[plan.scores]) as masks:
        for z in range(0, depth, per_slab):
            masks.write(z, np.asarray(volume.data[z:z + per_slab], dtype=np.float32))
    total = math.prod(volume.shape)
    return ThresholdedMasks(plan.scores, paths, {t: masks.counts[t] / total for t in paths})


class ThresholdWriters:
    """Int8 mask writers, one per threshold, fed with score slabs: the one place that turns scores
    into masks at other thresholds (``bilayer threshold`` and ``bilayer segment --extra-threshold``).

    A context manager; the files join ``group`` (they appear with the group's other outputs).

    Args:
        paths: ``{threshold: mask file}``.
        like: the scores' shape, voxel size and origin (a :class:`Volume`; its data is not read).
        label: the MRC label (``> t`` is added per mask).
        group, overwrite, protect: as :func:`~bilayer.io.open_volume_writer`.

    Attributes:
        counts: membrane voxels written so far, per threshold.
    """

    def __init__(self, paths: Mapping[float, Path], like: Volume, *, label: str, group: OutputGroup,
                 overwrite: bool = False, protect: Sequence[str | os.PathLike] = ()) -> None:
        self._paths, self._like, self._label = dict(paths), like, label
        self._group, self._overwrite, self._protect = group, overwrite, list(protect)
        self.counts = dict.fromkeys(self._paths, 0)
        self._stack = contextlib.ExitStack()
        self._writers: dict[float, Any] = {}

    def __enter__(self) -> ThresholdWriters:
        like = self._like
        with self._stack as stack:
            self._writers = {t: stack.enter_context(open_volume_writer(
                path, like.shape, np.int8, like.voxel_size, like.origin, overwrite=self._overwrite,
                protect=self._protect, labels=[f"{self._label} > {t:g}"], group=self._group))
                for t, path in self._paths.items()}
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> bool | None:
        return self._stack.__exit__(*exc)

    def write(self, z_start: int, scores: np.ndarray) -> None:
        """Write sections ``z_start:z_start + len(scores)`` of every mask: 1 where the score exceeds its threshold."""
        for t, writer in self._writers.items():
            mask = scores > t
            self.counts[t] += int(np.count_nonzero(mask))
            writer.write(z_start, mask.astype(np.int8))
