"""An annotator's corrections applied to a patch's labels (MemBrain-seg's ``merge_corrections``).

MemBrain-seg's MITK workflow: for a patch ``<case>``, the annotator saves masks into the folder
``<corrections>/<case>/``: ``Remove*`` (voxels wrongly marked membrane), ``Add*`` (membrane the
labels miss) and ``Ignore*`` (voxels too unsure to train on), any number of each, as NRRD (what
MITK saves), NIfTI or MRC of the patch's shape; a voxel belongs to a mask where its value is
not 0, and masks of one kind are united. They are applied in MemBrain-seg's order, each
overriding the one before where they overlap:

    labels → 0 where Remove → 1 where Add → 2 where Ignore → 2 on the ignore border

so Ignore wins over Add, and Add over Remove. The border is the one the patch was extracted
with (its header's record, :func:`~bilayer.annotation.extract.read_patch_record`), else
MemBrain-seg's 16 voxels. Unlike MemBrain-seg, which writes to a third folder, the corrected
labels replace the patch's label file in the dataset (atomically, all patches of one call
together), so ``bilayer train`` / ``finetune`` read them at once; the correction files are only
read. Applying the same corrections again changes nothing.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bilayer import checks
from bilayer.annotation._nifti import nifti_bytes, nifti_description
from bilayer.annotation.extract import DEFAULT_BORDER, IGNORE, read_patch_record, with_ignore_border
from bilayer.data.folder import read_array
from bilayer.data.layout import NIFTI_SUFFIXES, Split, volume_suffix
from bilayer.errors import BilayerWarning, ConfigError, InputFileError, VoxelSizeError
from bilayer.io import atomic_open, output_group, read_header, read_volume, write_volume

__all__ = ["CORRECTION_KINDS", "CORRECTION_SUFFIXES", "Corrections", "merge_corrections", "merge_dataset",
           "read_corrections"]

#: The kinds of correction masks, in the order they are applied (a later one wins).
CORRECTION_KINDS = ("remove", "add", "ignore")
#: Endings a correction mask may have.
CORRECTION_SUFFIXES = (".nrrd", *NIFTI_SUFFIXES, ".mrc")


@dataclass(frozen=True)
class Corrections:
    """The united masks of one patch, boolean (z, y, x) arrays of its shape, and the files read."""

    remove: np.ndarray
    add: np.ndarray
    ignore: np.ndarray
    files: tuple[Path, ...] = ()

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> Corrections:
        return cls(*(np.zeros(shape, dtype=bool) for _ in CORRECTION_KINDS))


def merge_corrections(patch_labels: np.ndarray, corrections: Corrections, *,
                      border: int = DEFAULT_BORDER) -> np.ndarray:
    """``patch_labels`` (0, 1, 2) with ``corrections`` applied: 0 where Remove, then 1 where Add,
    then 2 where Ignore, then 2 on the outer ``border`` voxels; int8, a new array."""
    border = checks.number("border", border, 0, integer=True)
    labels = np.asarray(patch_labels)
    for kind in CORRECTION_KINDS:
        if getattr(corrections, kind).shape != labels.shape:
            raise ConfigError(f"the {kind} mask has shape {getattr(corrections, kind).shape}, the patch "
                              f"{labels.shape}; give masks drawn on this patch")
    merged = labels.astype(np.int8)
    merged[corrections.remove] = 0
    merged[corrections.add] = 1
    merged[corrections.ignore] = IGNORE
    return with_ignore_border(merged, border)


def read_corrections(folder: str | os.PathLike, shape: tuple[int, int, int]) -> Corrections:
    """The ``Add*``, ``Remove*`` and ``Ignore*`` masks in ``folder`` (names case-insensitive), united per kind.

    Files with other names are skipped with a warning, as MemBrain-seg does.

    Raises:
        InputFileError: a mask is unreadable, not 3-D, or not of ``shape``.

    Warns:
        BilayerWarning: a file that is no correction mask by its name.
    """
    folder = Path(folder)
    masks = {kind: np.zeros(shape, dtype=bool) for kind in CORRECTION_KINDS}
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        kind = next((k for k in CORRECTION_KINDS if entry.name.lower().startswith(k)), None)
        if kind is None or not entry.name.lower().endswith(CORRECTION_SUFFIXES):
            warnings.warn(f"{entry} is not a correction mask by its name (Add*, Remove*, Ignore* as "
                          f"{', '.join(CORRECTION_SUFFIXES)}); skipped", BilayerWarning, stacklevel=2)
            continue
        mask = _read_mask(entry)
        if mask.shape != tuple(shape):
            raise InputFileError(f"{entry} has shape {mask.shape} (z, y, x) but its patch has {tuple(shape)}; draw "
                                 "the corrections on the patch itself")
        masks[kind] |= mask != 0
        files.append(entry)
    return Corrections(**masks, files=tuple(files))


def merge_dataset(dataset: str | os.PathLike, corrections: str | os.PathLike, *, patch: str | None = None,
                  border: int | None = None) -> list[Path]:
    """Apply the corrections in ``corrections/<case>/`` to the labels of each such case of ``dataset``.

    Every case (of either split) with a corrections folder is merged, or only ``patch``. Each
    corrected label file replaces the old one in its own format, atomically and together.

    Args:
        border: the ignore border; default: the patch's recorded one, else 16 (MemBrain-seg).

    Returns:
        The label files written.

    Raises:
        InputFileError: no corrections folder names a case, ``patch`` is no case or has no
            folder, or a mask is bad; nothing is written.

    Warns:
        BilayerWarning: corrections folders that name no case; folders without masks (left alone).
    """
    dataset, corrections = Path(dataset), Path(corrections)
    if not corrections.is_dir():
        raise InputFileError(f"{corrections} is not a folder; give the folder holding one <patch>/ folder of "
                             "Add*/Remove*/Ignore* masks per patch")
    labels = _label_files(dataset)
    folders = {entry.name: entry for entry in sorted(corrections.iterdir())
               if entry.is_dir() and not entry.name.startswith(".")}
    if patch is not None:
        if patch not in labels:
            raise InputFileError(f"{dataset} has no patch {patch!r}; give the name of a label file without its "
                                 "ending (e.g. one under labelsTr/)")
        if patch not in folders:
            raise InputFileError(f"{corrections} has no folder {patch}/; put that patch's Add*/Remove*/Ignore* "
                                 "masks in it")
        chosen = [patch]
    else:
        chosen = [case for case in folders if case in labels]
        strays = [name for name in folders if name not in labels]
        if strays:
            warnings.warn(f"{corrections}: folders {', '.join(strays[:10])} name no patch of {dataset}; left alone",
                          BilayerWarning, stacklevel=2)
        if not chosen:
            raise InputFileError(f"no folder in {corrections} is named after a patch of {dataset}; name each folder "
                                 "after its patch's label file without its ending")
    written = []
    with output_group() as group:
        for case in chosen:
            path = labels[case]
            current = read_array(path)
            found = read_corrections(folders[case], current.shape)
            if not found.files:
                warnings.warn(f"{folders[case]} holds no Add*, Remove* or Ignore* mask; {path} left alone",
                              BilayerWarning, stacklevel=2)
                continue
            record = read_patch_record(path)
            width = border if border is not None else record.border if record else DEFAULT_BORDER
            merged = merge_corrections(current, found, border=width)
            _rewrite(path, merged, found.files, group)
            written.append(path)
    return written


def _label_files(dataset: Path) -> dict[str, Path]:
    """Every label file of the dataset by case id (both splits)."""
    found: dict[str, Path] = {}
    for split in Split:
        folder = dataset / split.folders[1]
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                suffix = volume_suffix(entry.name)
                if suffix and entry.is_file():
                    found.setdefault(entry.name[: -len(suffix)], entry)
    if not found:
        raise InputFileError(f"{dataset} holds no label files (labelsTr/, labelsVal/); give the dataset folder "
                             "bilayer patches extract wrote")
    return found


def _read_mask(path: Path) -> np.ndarray:
    if not path.name.lower().endswith(".nrrd"):
        return read_array(path)
    import nrrd

    try:
        data, _ = nrrd.read(str(path), index_order="C")  # C order: (z, y, x), as the patch
    except Exception as e:  # pynrrd raises many kinds on a damaged file
        raise InputFileError(f"{path} is not a readable NRRD file ({e}); save the mask again") from e
    data = np.squeeze(data) if data.ndim > 3 else data
    if data.ndim != 3:
        raise InputFileError(f"{path} holds a {data.ndim}-D image; save one 3-D mask per file")
    return data


def _rewrite(path: Path, labels: np.ndarray, sources: Iterable[Path], group: object) -> None:
    """Replace the label file ``path`` with ``labels`` in its own format, keeping its geometry."""
    note = f"corrected from {', '.join(p.name for p in sources)}"[:80]
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        stored = labels.astype(np.uint8)
        description = nifti_description(path) or note
        with atomic_open(path, overwrite=True, group=group) as f:  # type: ignore[arg-type]
            f.write(nifti_bytes(stored, like=path, description=description,
                                compress=path.name.lower().endswith(".gz")))
        return
    header = read_header(path)
    kept = [text for text in (bytes(t).decode("ascii", "replace").rstrip() for t in header.label[1: int(header.nlabl)])
            if not text.startswith("corrected from")]
    try:
        old = read_volume(path, check_finite=False)
    except VoxelSizeError:  # a label file without a voxel size keeps having none
        old = read_volume(path, voxel_size=1.0, check_finite=False)
    write_volume(path, labels, voxel_size=old.voxel_size, origin=old.origin, overwrite=True,
                 labels=[*kept[:8], note], group=group)  # type: ignore[arg-type]
