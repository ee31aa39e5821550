"""Training folders in MemBrain-seg's layout: image/label pairs, found and checked up front.

A dataset folder holds ``imagesTr/`` and ``labelsTr/`` (training) and ``imagesVal/`` and
``labelsVal/`` (validation). Each label file ``<name><ext>`` pairs with the image
``<name>_0000<ext>`` (MemBrain-seg's and nnU-Net's naming) or ``<name><ext>``. Files are NIfTI
(``.nii.gz``, ``.nii``: what MemBrain-seg reads) or MRC (``.mrc``, ``.rec``, …). Labels hold
0 (background), 1 (membrane) and 2 (ignore). The names are defined once, in
:mod:`bilayer.data.layout`, which also writes such folders.

Every pair is checked before training starts: a missing partner, unreadable file, shape
mismatch or unexpected label value is collected, and one error lists every bad file, so a
user fixes the folder in one go instead of one crash per file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bilayer.data.layout import IMAGE_TAG, LABEL_VALUES, NIFTI_SUFFIXES, Split, volume_suffix
from bilayer.errors import BilayerError, InputFileError
from bilayer.io import read_volume

__all__ = ["LABEL_VALUES", "NIFTI_SUFFIXES", "PatchPair", "Split", "find_pairs", "read_array"]

_MAX_LISTED = 20


@dataclass(frozen=True)
class PatchPair:
    """One training example: an image file and its label file of the same shape.

    Attributes:
        name: the label file's name without its ending.
        image: the image file.
        label: the label file.
        shape: (z, y, x) in voxels.
    """

    name: str
    image: Path
    label: Path
    shape: tuple[int, int, int]


def find_pairs(root: str | os.PathLike, split: Split | str = Split.TRAIN, *, check_values: bool = True) -> list[PatchPair]:
    """All image/label pairs of ``split`` in the dataset folder ``root``, checked.

    Args:
        root: the dataset folder (with ``imagesTr/``, ``labelsTr/``, …).
        split: ``"train"`` or ``"val"``.
        check_values: read every label and check its values are among 0, 1, 2.

    Returns:
        The pairs, sorted by name.

    Raises:
        InputFileError: a folder is missing or empty, or files are bad; the message lists
            every bad file with its problem.
    """
    split = Split(split)
    root = Path(root)
    image_dir, label_dir = (root / name for name in split.folders)
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise InputFileError(f"dataset {root} has no {folder.name}/ folder; put the {split.value} images in "
                                 f"{split.folders[0]}/ and their labels in {split.folders[1]}/")
    images = {_stem(p): p for p in sorted(image_dir.iterdir()) if _stem(p) is not None}
    labels = {_stem(p): p for p in sorted(label_dir.iterdir()) if _stem(p) is not None}
    if not labels:
        raise InputFileError(f"{label_dir} holds no label files (.nii.gz, .nii or .mrc); add the {split.value} labels")
    problems: list[str] = []
    pairs = []
    used_images = set()
    for name, label in labels.items():
        image = images.get(name + IMAGE_TAG) or images.get(name)
        if image is None:
            problems.append(f"{label} has no image ({name}{IMAGE_TAG}.* or {name}.* in {image_dir.name}/)")
            continue
        used_images.add(image)
        pair = _check_pair(name, image, label, check_values, problems)
        if pair is not None:
            pairs.append(pair)
    problems += [f"{p} has no label in {label_dir.name}/" for p in images.values() if p not in used_images]
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED]) + (f"; and {len(problems) - _MAX_LISTED} more"
                                                        if len(problems) > _MAX_LISTED else "")
        raise InputFileError(f"dataset {root} ({split.value}) has {len(problems)} bad file(s): {listed}; "
                             "fix or remove them")
    return pairs


def read_array(path: str | os.PathLike) -> np.ndarray:
    """The voxels of a NIfTI or MRC file as a (z, y, x) array in memory.

    NIfTI arrays are stored (x, y, z) (as MemBrain-seg's SimpleITK writes its (z, y, x)
    patches); they are transposed to (z, y, x).

    Raises:
        InputFileError: the file cannot be read as a 3-D volume.
    """
    path = Path(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        return _read_nifti(path)
    return np.asarray(read_volume(path, voxel_size=1.0).data)


def _check_pair(name: str, image: Path, label: Path, check_values: bool, problems: list[str]) -> PatchPair | None:
    try:
        image_shape, label_data = _shape(image), read_array(label)
    except BilayerError as e:
        problems.append(str(e))
        return None
    if image_shape != label_data.shape:
        problems.append(f"{label} has shape {label_data.shape} but its image {image.name} has {image_shape}")
        return None
    if check_values:
        found = np.unique(label_data)
        extra = [v for v in found.tolist() if v not in LABEL_VALUES]
        if extra:
            shown = ", ".join(f"{v:g}" for v in extra[:5])
            problems.append(f"{label} holds label values {shown} (expected only 0, 1, 2)")
            return None
    return PatchPair(name, image, label, tuple(int(n) for n in image_shape))  # type: ignore[arg-type]


def _shape(path: Path) -> tuple[int, ...]:
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        return tuple(reversed(_nifti_image(path).shape[:3]))
    return tuple(read_volume(path, voxel_size=1.0, check_finite=False).shape)


def _read_nifti(path: Path) -> np.ndarray:
    data = np.asarray(_nifti_image(path).dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputFileError(f"{path} holds a {data.ndim}-D image; give one 3-D volume per file")
    return np.ascontiguousarray(data.transpose(2, 1, 0))


def _nifti_image(path: Path):  # noqa: ANN202  (nibabel's image class)
    import nibabel

    try:
        image = nibabel.load(path)
    except Exception as e:  # nibabel raises many kinds on damaged files
        raise InputFileError(f"{path} is not a readable NIfTI file ({e}); export it again") from e
    if len(image.shape) not in (3, 4) or (len(image.shape) == 4 and image.shape[3] != 1):
        raise InputFileError(f"{path} has shape {image.shape}; give one 3-D volume per file")
    return image


def _stem(path: Path) -> str | None:
    """The file name without its volume ending, or None for files that are not volumes."""
    suffix = volume_suffix(path.name)
    return path.name[: -len(suffix)] if suffix is not None and path.is_file() else None
