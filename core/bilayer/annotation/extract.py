"""Training patches cut from a tomogram and its labels, in the dataset layout ``bilayer train`` reads.

MemBrain-seg's ``extract_patches``, with three differences:

- **Near the border.** MemBrain-seg refuses a centre within half a patch of the tomogram's
  border (its issue 33). Here the box is shifted inside the tomogram instead, so it keeps its
  full size and holds only real voxels (no padding that the network would learn from): the
  centre then lies off the patch's middle, but inside it. Only a tomogram smaller than the patch
  along some axis is refused.
- **Names** record the tomogram and the centre as given: case ``<tomogram stem>_x<X>_y<Y>_z<Z>``
  (:func:`patch_case`), so a rerun writes the same names (refused unless ``overwrite``) and
  ``bilayer patches merge`` finds each patch's corrections folder by that name. The labels'
  header also records the box and the ignore border (:func:`read_patch_record`).
- **Format.** MRC by default (the patch's voxel size and its place in the tomogram in the
  header); NIfTI (``.nii.gz``, MemBrain-seg's, for annotators using MITK) on request.

Labels keep their values (0 background, 1 membrane, 2 ignore), and the outer ``border`` voxels
of every face become 2 (ignore), as MemBrain-seg's 16: where the annotator sees a patch without
its surroundings, its labels are least sure. All patches of one call appear together or none.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bilayer import checks
from bilayer.annotation._nifti import nifti_bytes, nifti_description
from bilayer.data.layout import IMAGE_TAG, LABEL_VALUES, NIFTI_SUFFIXES, Split, case_id, dataset_paths, volume_suffix
from bilayer.errors import ConfigError, InputFileError, OutputError
from bilayer.io import Volume, atomic_open, check_output_path, ensure_output_dir, output_group
from bilayer.io.mrc import read_header, read_volume
from bilayer.io.mrc_writer import write_volume

__all__ = ["DEFAULT_BORDER", "DEFAULT_SIZE", "IGNORE", "PatchFormat", "PatchRecord", "extract_patches",
           "patch_case", "patch_start", "read_patch_record", "with_ignore_border"]

#: MemBrain-seg's patch edge and ignore border, in voxels.
DEFAULT_SIZE = 160
DEFAULT_BORDER = 16
#: The ignore label.
IGNORE = 2
_RECORD = re.compile(r"bilayer patch box x(\d+) y(\d+) z(\d+) size (\d+) border (\d+)")


class PatchFormat(str, enum.Enum):
    """The file format of written patches."""

    MRC = "mrc"
    NIFTI = "nifti"

    @property
    def ending(self) -> str:
        return ".mrc" if self is PatchFormat.MRC else NIFTI_SUFFIXES[0]


@dataclass(frozen=True)
class PatchRecord:
    """Where a patch came from, as its labels' header records it.

    Attributes:
        start: (z, y, x) of the patch's first voxel in the tomogram.
        size: the patch edge in voxels.
        border: the ignore border in voxels.
    """

    start: tuple[int, int, int]
    size: int
    border: int

    def text(self) -> str:
        """The record as one header line (≤80 characters)."""
        z, y, x = self.start
        return f"bilayer patch box x{x} y{y} z{z} size {self.size} border {self.border}"


def patch_start(shape: Sequence[int], centre: Sequence[int], size: int) -> tuple[int, int, int]:
    """(z, y, x) start of the ``size``³ box centred on ``centre``, shifted to lie inside ``shape``.

    The box spans ``centre - size // 2`` to ``centre - size // 2 + size`` where it fits.
    """
    return tuple(int(min(max(c - size // 2, 0), n - size)) for c, n in zip(centre, shape))  # type: ignore[return-value]


def patch_case(name: str, centre: Sequence[int]) -> str:
    """The case id of the patch of tomogram ``name`` (its stem) at ``centre`` (z, y, x):
    ``<name>_x<X>_y<Y>_z<Z>``."""
    z, y, x = (int(c) for c in centre)
    return case_id(f"{name}_x{x}_y{y}_z{z}")


def with_ignore_border(labels: np.ndarray, border: int) -> np.ndarray:
    """A copy of ``labels`` whose outer ``border`` voxels on every face are :data:`IGNORE`."""
    out = np.array(labels, copy=True)
    if border > 0:
        for axis in range(out.ndim):
            index = [slice(None)] * out.ndim
            index[axis] = slice(0, border)
            out[tuple(index)] = IGNORE
            index[axis] = slice(out.shape[axis] - border, None)
            out[tuple(index)] = IGNORE
    return out


def read_patch_record(path: str | os.PathLike) -> PatchRecord | None:
    """The record :func:`extract_patches` left in a patch label file (MRC labels or NIfTI
    description), or None for a file without one (MemBrain-seg's patches, say)."""
    path = Path(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        lines = [nifti_description(path)]
    else:
        header = read_header(path)
        lines = [bytes(label).decode("ascii", "replace") for label in header.label[: int(header.nlabl)]]
    for line in lines:
        found = _RECORD.search(line)
        if found:
            x, y, z, size, border = (int(v) for v in found.groups())
            return PatchRecord((z, y, x), size, border)
    return None


def extract_patches(tomogram: str | os.PathLike | Volume, labels: str | os.PathLike | Volume,
                    centres: Sequence[Sequence[int]] | np.ndarray, out_dataset: str | os.PathLike, *,
                    size: int = DEFAULT_SIZE, border: int = DEFAULT_BORDER, split: Split | str = Split.TRAIN,
                    fmt: PatchFormat | str = PatchFormat.MRC, name: str | None = None,
                    voxel_size: float | None = None, overwrite: bool = False) -> list[Path]:
    """Cut a ``size``³ image/label patch around each (z, y, x) centre into ``split`` of ``out_dataset``.

    Args:
        tomogram: the tomogram (an MRC file or a :class:`~bilayer.io.Volume`).
        labels: its labels of the same shape (0 background, 1 membrane, 2 ignore): a
            segmentation such as ``bilayer segment``'s ``_seg.mrc``, or ground truth.
        centres: (z, y, x) voxel positions, one per patch (see :mod:`.positions`).
        out_dataset: the dataset folder (``imagesTr/``, ``labelsTr/``, … are made as needed).
        size: patch edge in voxels (MemBrain-seg: 160).
        border: voxels of each face set to ignore (MemBrain-seg: 16); ``2 * border < size``.
        split: ``"train"`` or ``"val"``.
        fmt: ``"mrc"`` or ``"nifti"``.
        name: the tomogram's name in the case ids (default: its file stem).
        voxel_size: Å, replacing the tomogram header's.
        overwrite: replace this call's cases if they exist.

    Returns:
        The files written: image, label, image, label, … in the order of ``centres``.

    Raises:
        ConfigError: a bad size, border, split or format, or a centre given twice.
        InputFileError: unreadable inputs, shapes that differ, a tomogram smaller than the
            patch, a centre outside the tomogram, or label values other than 0, 1, 2.
        OutputError: a name is taken (without ``overwrite``) or cannot be written; nothing is.
    """
    split, fmt = checks.choice("split", split, Split), checks.choice("format", fmt, PatchFormat)
    border = checks.number("border", border, 0, integer=True)
    size = checks.number("size", size, 1, integer=True)
    if size <= 2 * border:
        raise ConfigError(f"a {size}³ patch leaves nothing inside its ignore border of {border} voxels; give a size "
                          f"above {2 * border} or a smaller border")
    tomo = tomogram if isinstance(tomogram, Volume) else read_volume(tomogram, voxel_size=voxel_size)
    seg = labels if isinstance(labels, Volume) else read_volume(labels, voxel_size=tomo.voxel_size, check_finite=False)
    tomo_name, seg_name = _label(tomo, "the tomogram"), _label(seg, "the labels")
    if seg.shape != tomo.shape:
        raise InputFileError(f"{seg_name} has shape {seg.shape} (z, y, x) but {tomo_name} has {tomo.shape}; give the "
                             "labels made on this tomogram's grid (a mask of a rescaled copy must be put back onto "
                             "it first)")
    if min(tomo.shape) < size:
        raise InputFileError(f"{tomo_name} ({'x'.join(map(str, tomo.shape))} voxels, z, y, x) is smaller than a "
                             f"{size}³ patch; give a smaller --size (at most {min(tomo.shape)})")
    zyx = _checked_centres(centres, tomo.shape, tomo_name)
    stem = name or (Path(tomo.path).stem if tomo.path else "patch")
    cases = [patch_case(stem, c) for c in zyx]
    paths = [dataset_paths(out_dataset, split, case, fmt.ending) for case in cases]
    _check_outputs(Path(out_dataset), split, cases, paths, overwrite, [p for p in (tomo.path, seg.path) if p])
    starts = [patch_start(tomo.shape, c, size) for c in zyx]
    for start in starts:  # every label value is checked before anything is written
        _checked_labels(seg.data[_box(start, size)], seg_name, start)
    for folder in Split(split).folders:
        ensure_output_dir(Path(out_dataset) / folder)
    written: list[Path] = []
    with output_group() as group:
        for start, (image_path, label_path) in zip(starts, paths):
            box = _box(start, size)
            record = [PatchRecord(start, size, border).text(), f"from {Path(tomo.path).name if tomo.path else stem}"]
            image = np.asarray(tomo.data[box])
            label = with_ignore_border(_checked_labels(seg.data[box], seg_name, start), border)
            origin = tuple(o + s * v for o, s, v in zip(tomo.origin, start, tomo.voxel_size))
            _write(image_path, image, tomo.voxel_size, origin, record, fmt, overwrite, group)
            _write(label_path, label, tomo.voxel_size, origin, record, fmt, overwrite, group)
            written += [image_path, label_path]
    return written


def _label(volume: Volume, what: str) -> str:
    return str(volume.path) if volume.path else what


def _box(start: Sequence[int], size: int) -> tuple[slice, slice, slice]:
    return tuple(slice(s, s + size) for s in start)  # type: ignore[return-value]


def _checked_centres(centres: Sequence[Sequence[int]] | np.ndarray, shape: tuple[int, int, int],
                     tomo_name: str) -> list[tuple[int, int, int]]:
    zyx = np.asarray(centres)
    if zyx.size == 0:
        raise ConfigError(f"no patch centres given for {tomo_name}; give at least one x,y,z")
    if zyx.ndim != 2 or zyx.shape[1] != 3 or zyx.dtype.kind not in "iu":
        raise ConfigError(f"patch centres must be (z, y, x) voxel indices, one row per patch; got shape {zyx.shape}")
    out, seen = [], set()
    for z, y, x in zyx.tolist():
        if not all(0 <= c < n for c, n in zip((z, y, x), shape)):
            nz, ny, nx = shape
            raise InputFileError(f"centre x={x} y={y} z={z} lies outside {tomo_name} (x 0-{nx - 1}, y 0-{ny - 1}, "
                                 f"z 0-{nz - 1}); give positions in voxels of this tomogram")
        if (z, y, x) in seen:
            raise ConfigError(f"centre x={x} y={y} z={z} is given twice; give each patch once")
        seen.add((z, y, x))
        out.append((z, y, x))
    return out


def _checked_labels(crop: np.ndarray, seg_name: str, start: Sequence[int]) -> np.ndarray:
    crop = np.asarray(crop)
    extra = sorted(set(np.unique(crop).tolist()) - set(LABEL_VALUES))
    if extra:
        z, y, x = start
        shown = ", ".join(f"{v:g}" for v in extra[:5])
        raise InputFileError(f"{seg_name} holds values {shown} in the patch at x{x} y{y} z{z} (expected only 0 "
                             "background, 1 membrane, 2 ignore); give a mask or labels, not scores or components")
    return crop.astype(np.int8)


def _check_outputs(root: Path, split: Split, cases: list[str], paths: list[tuple[Path, Path]], overwrite: bool,
                   protect: list[Path]) -> None:
    """Refuse, before writing, a name that is taken: by this call's own files without ``overwrite``,
    or by a file of the same case with another ending (which the dataset reader would pair instead)."""
    finals = {p for pair in paths for p in pair}
    for image_path, label_path in paths:
        for path in (image_path, label_path):
            check_output_path(path, overwrite=overwrite, protect=protect)
    image_dir, label_dir = (root / folder for folder in split.folders)
    taken = []
    for folder, stems in ((image_dir, {c + IMAGE_TAG for c in cases} | set(cases)), (label_dir, set(cases))):
        if folder.is_dir():
            taken += [entry for entry in sorted(folder.iterdir()) if entry not in finals
                      and (suffix := volume_suffix(entry.name)) and entry.name[: -len(suffix)] in stems]
    if taken:
        raise OutputError(f"{', '.join(map(str, taken[:5]))} already hold(s) these patches in another format; remove "
                          "them or choose another dataset folder")


def _write(path: Path, data: np.ndarray, voxel_size: tuple[float, float, float], origin: tuple[float, ...],
           record: list[str], fmt: PatchFormat, overwrite: bool, group: object) -> None:
    if fmt is PatchFormat.MRC:
        write_volume(path, data, voxel_size=voxel_size, origin=origin, labels=record, overwrite=overwrite,
                     group=group)  # type: ignore[arg-type]
        return
    stored = data.astype(np.uint8) if data.dtype == np.int8 else data  # MITK reads segmentations as uint8
    with atomic_open(path, overwrite=overwrite, group=group) as f:  # type: ignore[arg-type]
        f.write(nifti_bytes(stored, voxel_size=voxel_size, description=record[0]))
