"""Pre-flight checks: every input opened and checked, every output named, memory and disk
estimated, before the first window is predicted.

A segmentation run either does its work or says why it cannot and writes nothing: an unreadable,
truncated, 2-D or non-finite tomogram, an implausible header voxel size, two inputs that would
write the same output, an output that exists (without ``overwrite``) or would replace an input, a
run that cannot fit the memory or the disk. :func:`plan_segmentation` returns one
:class:`TomogramPlan` per input, or raises :class:`PreflightError` listing every problem (one line
each, naming the file and the fix).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from bilayer.errors import BilayerError, PreflightError
from bilayer.infer.blend import slab_buffer_bytes
from bilayer.infer.config import OutputOptions
from bilayer.infer.grid import WindowGrid
from bilayer.infer.passes import temporary_bytes
from bilayer.infer.uncertainty import smoothing_bytes
from bilayer.io import Volume, check_output_path, file_identity, read_tomogram
from bilayer.io.volume import PLAUSIBLE_VOXEL_SIZE, check_plausible_voxel_size
from bilayer.resources import available_memory

if TYPE_CHECKING:
    from bilayer.infer.predictor import Predictor, WindowPlan

__all__ = ["MAX_UPSAMPLING", "PLAUSIBLE_VOXEL_SIZE", "PreflightError", "TomogramPlan", "available_memory",
           "check_memory", "check_voxel_size", "memory_estimate", "output_bytes", "plan_segmentation"]

#: The most a window may be up-sampled to the model's voxel size (e.g. 80 Å voxels for a 10 Å model).
MAX_UPSAMPLING = 8.0

_PROCESS_BYTES = 600 * 1024**2  # the interpreter with torch loaded, measured on CPU: 460-520 MB
_NETWORK_BYTES_PER_CHANNEL = 3.5  # forward-pass bytes per voxel per first-level channel and dtype byte
_PREVIEW_BYTES = 4 * 1024**2
_DISK_MARGIN = 64 * 1024**2
#: Bytes per voxel of each output kind (components: uint16 labels).
_BYTES_PER_VOXEL = {"mask": 1, "scores": 4, "components": 2, "skeleton": 1, "uncertainty": 4}
_PASS_SLAB_COPIES = 8  # float32 slabs a pass's running sums take while one slab is updated (read, computed, new)


@dataclass(frozen=True)
class TomogramPlan:
    """One checked tomogram, opened memory-mapped, with its outputs and estimates."""

    volume: Volume
    outputs: dict[str, Path]
    windows: WindowPlan
    memory_bytes: int
    output_bytes: int
    temporary_bytes: int = 0
    """Bytes of the temporary file of test-time augmentation passes (0: none)."""

    @property
    def source(self) -> Path:
        return self.volume.path  # type: ignore[return-value]


def check_voxel_size(volume: Volume, predictor: Predictor, *, given: bool) -> None:
    """Refuse a voxel size that is implausible (from a header) or that the model cannot use.

    Raises:
        BilayerError: anisotropic voxels, a header voxel size outside :data:`PLAUSIBLE_VOXEL_SIZE`
            (unless ``given``), or windows that would be up-sampled more than :data:`MAX_UPSAMPLING`.
    """
    name = volume.path or "the tomogram"
    size = volume.isotropic_voxel_size
    check_plausible_voxel_size(volume, given=given)
    ratio = size / predictor.info.voxel_size
    if predictor.config.rescale and ratio > MAX_UPSAMPLING:
        raise BilayerError(f"{name}: voxel size {size:g} Å is {ratio:.0f}x the model's "
                           f"{predictor.info.voxel_size:g} Å; "
                           f"windows would be up-sampled more than {MAX_UPSAMPLING:g}x; check --voxel-size, or "
                           "use a model trained at this voxel size")


def memory_estimate(shape: Sequence[int], windows: WindowPlan, predictor: Predictor, *,
                    scores_in_memory: bool = False, outputs: OutputOptions | None = None) -> int:
    """Peak bytes of host memory segmenting a tomogram of ``shape`` is expected to take.

    The process with torch and the weights, the score slabs (:func:`slab_buffer_bytes`), the windows
    held (the batch, its prefetched successor, the predictions and their weighted copies, the eight
    mirrored copies with TTA, the resampled windows), and on the CPU the network's forward pass,
    measured for Bilayer's lean network as about 3.5 bytes per voxel, first-level channel and byte
    of the compute dtype. With ``outputs`` asking for uncertainty: the running sums of the passes
    per slab and the smoothing (:func:`~bilayer.infer.uncertainty.smoothing_bytes`); in memory
    (``scores_in_memory``) also the uncertainty map and the masks at extra thresholds.
    """
    batch = predictor.config.batch_size
    roi_bytes = 4 * windows.roi**3
    held = 4 * batch * roi_bytes + (16 * roi_bytes if predictor.config.tta else 0)
    if windows.rescale:
        held += 3 * batch * 4 * windows.window**3
    network = 0
    if predictor.device.type == "cpu":
        channels = predictor.info.network.filters[0]
        network = int(_NETWORK_BYTES_PER_CHANNEL * channels * predictor.compute_dtype.itemsize
                      * windows.window**3 * batch)
    slabs = slab_buffer_bytes(shape, (windows.roi,) * 3, predictor.config.overlap)
    scores = 4 * math.prod(shape) if scores_in_memory else 0
    return _PROCESS_BYTES + predictor.weight_bytes + held + network + slabs + scores + \
        _output_memory(shape, windows, predictor, outputs, scores_in_memory)


def _output_memory(shape: Sequence[int], windows: WindowPlan, predictor: Predictor, outputs: OutputOptions | None,
                   in_memory: bool) -> int:
    """Bytes the uncertainty (and, in memory, the extra masks) add to a segmentation."""
    if outputs is None:
        return 0
    voxels = math.prod(shape)
    need = voxels * len(outputs.extra_thresholds) if in_memory else 0
    if outputs.uncertainty:
        step = min(WindowGrid.plan(shape, (windows.roi,) * 3, predictor.config.overlap).step_z, shape[0])
        need += _PASS_SLAB_COPIES * 4 * step * shape[1] * shape[2]
        if outputs.smooth_uncertainty:
            need += smoothing_bytes(shape, step)
        if in_memory:
            need += 4 * voxels
    return need


def check_memory(volume: Volume, windows: WindowPlan, predictor: Predictor, memory: int | None, *,
                 scores_in_memory: bool = False, outputs: OutputOptions | None = None) -> int:
    """The :func:`memory_estimate` for ``volume``, refused when over ``memory`` bytes (``None``: unknown).

    Raises:
        BilayerError: the run cannot fit; the message names the tomogram and the fixes.
    """
    need = memory_estimate(volume.shape, windows, predictor, scores_in_memory=scores_in_memory, outputs=outputs)
    if memory is not None and need > memory:
        how = "in memory " if scores_in_memory else ""
        raise BilayerError(f"{volume.path or 'the tomogram'}: segmenting it {how}needs about {_gb(need)} of memory "
                           f"(windows of {windows.roi}³ voxels), {_gb(memory)} is available; give a smaller --window or "
                           "--batch-size, turn off --tta, check the voxel size, or use a machine with more memory")
    return need


def output_bytes(shape: Sequence[int], kinds: Sequence[str], extra_masks: int = 0) -> int:
    """Bytes the outputs ``kinds`` (and ``extra_masks`` masks at extra thresholds) of a tomogram of
    ``shape`` take on disk (headers included)."""
    voxels = math.prod(shape)
    return sum(_PREVIEW_BYTES if kind == "preview" else 1024 + _BYTES_PER_VOXEL[kind] * voxels for kind in kinds) + \
        extra_masks * (1024 + _BYTES_PER_VOXEL["mask"] * voxels)


def plan_segmentation(sources: Sequence[str | os.PathLike], out_dirs: str | os.PathLike | Sequence[str | os.PathLike],
                      predictor: Predictor, outputs: OutputOptions, *,
                      voxel_size: float | None | Sequence[float | None] = None, overwrite: bool = False,
                      memory: int | None = -1) -> list[TomogramPlan]:
    """Check every input and output of a run before any work; see the module docstring.

    Args:
        sources: the tomogram files.
        out_dirs: the output folder, or one per source (they must exist).
        predictor: the loaded model and its inference options.
        outputs: which outputs to write.
        voxel_size: Å for every tomogram, or one per source (``None``: that header's), replacing the
            headers' (and their plausibility check).
        overwrite: replace existing outputs.
        memory: bytes of memory to plan for; -1: :func:`available_memory`; ``None``: no check.

    Raises:
        PreflightError: every problem found, one line each.
    """
    folders = [Path(out_dirs)] * len(sources) if isinstance(out_dirs, (str, os.PathLike)) else \
        [Path(d) for d in out_dirs]
    sizes = list(voxel_size) if isinstance(voxel_size, Sequence) else [voxel_size] * len(sources)
    memory = available_memory() if memory == -1 else memory
    problems: list[str] = []
    plans: list[TomogramPlan] = []
    seen_inputs: dict[Path, Path] = {}
    claimed: dict[Path, Path] = {}
    for source, folder, size in zip(sources, folders, sizes):
        source = Path(source)
        key = file_identity(source)
        if key in seen_inputs:
            also = "" if seen_inputs[key] == source else f" (also as {seen_inputs[key]})"
            problems.append(f"{source} is given twice{also}; give each tomogram once")
            continue
        seen_inputs[key] = source
        try:
            plan = _plan_one(source, folder, predictor, outputs, size, overwrite, sources, memory)
        except BilayerError as e:
            problems.append(" ".join(str(e).split()))
            continue
        for path in plan.outputs.values():
            other = claimed.setdefault(path, source)
            if other != source:
                problems.append(f"{other} and {source} would both write {path}; rename one, or segment them into "
                                "separate output folders")
                break
        plans.append(plan)
    problems += _disk_problems(plans)
    if problems:
        raise PreflightError(problems)
    return plans


def _plan_one(source: Path, folder: Path, predictor: Predictor, outputs: OutputOptions, voxel_size: float | None,
              overwrite: bool, inputs: Sequence[str | os.PathLike], memory: int | None) -> TomogramPlan:
    volume = read_tomogram(source, voxel_size=voxel_size)
    check_voxel_size(volume, predictor, given=voxel_size is not None)
    paths = outputs.paths(source, folder)
    for path in paths.values():
        check_output_path(path, overwrite=overwrite, protect=inputs)
    windows = predictor.window_plan(volume.shape, volume.isotropic_voxel_size)
    need = check_memory(volume, windows, predictor, memory, outputs=outputs)
    passes = predictor.tta_passes(volume.shape, windows.roi, uncertainty=outputs.uncertainty)
    return TomogramPlan(volume, paths, windows, need, output_bytes(volume.shape, outputs.kinds,
                                                                   len(outputs.extra_thresholds)),
                        temporary_bytes(volume.shape, outputs.uncertainty) if passes else 0)


def _disk_problems(plans: Sequence[TomogramPlan]) -> list[str]:
    """A line per output folder whose disk cannot take the outputs planned there, and one if the
    temporary folder cannot take the largest temporary file of TTA passes (one exists at a time)."""
    need: dict[Path, int] = {}
    for plan in plans:
        folder = next(iter(plan.outputs.values())).parent
        need[folder] = need.get(folder, 0) + plan.output_bytes
    problems = []
    for folder, size in need.items():
        free = _free_bytes(folder)
        if free is not None and size + _DISK_MARGIN > free:
            problems.append(f"{folder}: the outputs need about {_gb(size)}, the disk has {_gb(free)} free; free some "
                            "space or choose another output folder (--out)")
    temporary = max((plan.temporary_bytes for plan in plans), default=0)
    folder = Path(tempfile.gettempdir())
    free = _free_bytes(folder) if temporary else None
    if free is not None and temporary + _DISK_MARGIN > free:
        problems.append(f"{folder}: test-time augmentation passes need a temporary file of about {_gb(temporary)}, "
                        f"the disk has {_gb(free)} free; set TMPDIR to a folder with more room")
    return problems


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _gb(n: int) -> str:
    return f"{n / 1024**3:.1f} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"
