"""MemBrain-seg's dataset folder layout: its names, and the writers that put pairs into it.

A dataset folder holds ``imagesTr/`` and ``labelsTr/`` (training) and ``imagesVal/`` and
``labelsVal/`` (validation). Case ``<id>`` of a split is the image ``images<S>/<id>_0000<ext>``
and the label ``labels<S>/<id><ext>`` (MemBrain-seg's and nnU-Net's naming: ``_0000`` is the
first, only, image channel). Files are NIfTI (``.nii.gz``, ``.nii``: what MemBrain-seg reads)
or MRC (``.mrc``, ``.rec``, …); the image and the label of a case may differ in format.

This module is the one home of those names. :func:`bilayer.data.folder.find_pairs` reads
folders with them; the writers here make folders with them:

- :func:`link_pairs`: relative symbolic links to existing files (the RELION training job and
  the Scipion training protocol); every pair is checked before the first link is made.
- :func:`write_pair`: arrays written as MRC files (``scripts/make_synthetic_dataset.py``);
  the image and the label appear together or not at all.

Both refuse, with one line naming the files and the fix, a case whose names would clash with
another case or with a file already in the folder, and a file ending the reader cannot read.

Seeds: a validation split drawn by the synthetic generator uses the seeds of its training
split shifted by :data:`VAL_SEED_OFFSET` (``Split.seed_offset``).

Length: over 300 lines because the reader's names, the two writers and the clash checks they
share must change together; split off the link placement when a third writer comes.
"""

from __future__ import annotations

import enum
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from bilayer.errors import ConfigError, InputFileError, OutputError
from bilayer.io import MRC_SUFFIXES, output_group, write_volume
from bilayer.io.atomic import ensure_output_dir

__all__ = [
    "IMAGE_TAG",
    "LABEL_VALUES",
    "NIFTI_SUFFIXES",
    "VAL_SEED_OFFSET",
    "VOLUME_SUFFIXES",
    "Split",
    "case_id",
    "dataset_paths",
    "link_pairs",
    "volume_suffix",
    "write_pair",
]

#: Label values a training label may hold: background, membrane, ignore.
LABEL_VALUES = (0, 1, 2)
#: MemBrain-seg's (nnU-Net's) tag of an image file: its first (only) channel.
IMAGE_TAG = "_0000"
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: File endings a dataset folder may use (lower case; matched case-insensitively).
VOLUME_SUFFIXES = (*NIFTI_SUFFIXES, *MRC_SUFFIXES)
#: Seed shift of synthetic validation scenes from training scenes: tomogram ``i`` of a
#: generated validation split uses seed ``seed + VAL_SEED_OFFSET + i`` where training uses
#: ``seed + i`` (``scripts/make_synthetic_dataset.py``), and ``bilayer train --synthetic`` draws
#: its fixed validation patches from base seed ``seed + VAL_SEED_OFFSET``. 1,000,000 is the
#: value the embedded default model's datasets were made with (their seeds are listed in
#: tests/core/test_default_model.py and docs/model_card.md): do not change it.
VAL_SEED_OFFSET = 1_000_000
_MAX_LISTED = 10


class Split(str, enum.Enum):
    """Which part of a dataset folder."""

    TRAIN = "train"
    VAL = "val"

    @property
    def folders(self) -> tuple[str, str]:
        """(image folder, label folder) names."""
        return ("imagesTr", "labelsTr") if self is Split.TRAIN else ("imagesVal", "labelsVal")

    @property
    def seed_offset(self) -> int:
        """Shift of this split's synthetic scene seeds (0 for training, :data:`VAL_SEED_OFFSET`)."""
        return 0 if self is Split.TRAIN else VAL_SEED_OFFSET


def volume_suffix(name: str) -> str | None:
    """The dataset file ending of the file name ``name`` (lower case), or None if it has none."""
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return suffix
    return None


def case_id(name: str) -> str:
    """A case id made from a tomogram's name (a tsId): path separators become ``_``.

    Raises:
        ConfigError: nothing usable is left (an empty name, or one starting with ``.``).
    """
    for sep in {os.sep, "/", os.altsep or "/"}:
        name = name.replace(sep, "_")
    return _checked_case(name)


def dataset_paths(root: str | os.PathLike, split: Split | str, case: str, ext: str = ".mrc",
                  label_ext: str | None = None) -> tuple[Path, Path]:
    """(image path, label path) of ``case`` in the ``split`` of the dataset folder ``root``.

    Args:
        ext: the image's ending (``.mrc``, ``.nii.gz``, …; the dot may be left out).
        label_ext: the label's ending; default: the image's.

    Raises:
        ConfigError: an ending the reader does not read, or a case id that is no file name.
    """
    split = Split(split)
    case = _checked_case(case)
    image_ext, label_ext = _ending(ext), _ending(ext if label_ext is None else label_ext)
    image_dir, label_dir = (Path(root) / name for name in split.folders)
    return image_dir / f"{case}{IMAGE_TAG}{image_ext}", label_dir / f"{case}{label_ext}"


def link_pairs(root: str | os.PathLike,
               pairs: Mapping[Split | str, Iterable[tuple[str, str | os.PathLike, str | os.PathLike]]],
               *, prune: bool = False) -> Path:
    """Link every ``(case id, image file, label file)`` of every split into the dataset folder ``root``.

    The links are relative symbolic links, each placed atomically, named from the case id with
    the ending of the file they point to. Everything is checked before the first link is made,
    so a refusal leaves the folder as it was. Running again with the same pairs changes nothing;
    a link of a given case that points elsewhere is replaced. With ``prune``, links of cases not
    given are removed (and a split's folders that end up empty), so the folder holds exactly
    these pairs. Regular files in the folder are never removed or replaced.

    Returns:
        ``root``.

    Raises:
        InputFileError: a file is missing or has an ending the reader does not read, or two
            pairs of one split have the same case id; every problem in one line.
        OutputError: a name is taken by a file in the folder that is not one of its links.
        ConfigError: a case id is no file name (see :func:`case_id`).
    """
    root = Path(root)
    wanted: dict[Path, Path] = {}  # link -> target
    cases: dict[Split, dict[str, Path]] = {}  # split -> case -> its label file, for duplicate messages
    problems: list[str] = []
    for key, items in pairs.items():
        split = Split(key)
        given = cases.setdefault(split, {})
        for case, image, label in items:
            case, image, label = _checked_case(case), Path(image), Path(label)
            bad = [p for p in (image, label) if volume_suffix(p.name) is None or not p.is_file()]
            problems += [_source_problem(p) for p in bad]
            if case in given:
                problems.append(f"{given[case]} and {label} are both {split.value} case {case!r}")
            if bad or case in given:
                continue
            given[case] = label
            image_link, label_link = dataset_paths(root, split, case, volume_suffix(image.name),
                                                   volume_suffix(label.name))  # type: ignore[arg-type]
            wanted[image_link], wanted[label_link] = image, label
    if problems:
        raise InputFileError(f"cannot build dataset {root}: {_listed(problems)}; give existing NIfTI "
                             f"({', '.join(NIFTI_SUFFIXES)}) or MRC ({', '.join(MRC_SUFFIXES)}) files and one "
                             "name per tomogram")
    clashes = _clashes(root, cases, set(wanted), replaceable=lambda p: p.is_symlink(),
                       removable=(lambda p: p.is_symlink()) if prune else (lambda p: False))
    if clashes:
        raise OutputError(f"cannot build dataset {root}: {_listed(clashes)}; remove them (the folder may hold only "
                          "links to the pairs given) and run again")
    for split in cases:
        for name in split.folders:
            ensure_output_dir(root / name)
    _place_links(wanted)
    if prune:
        _prune(root, set(wanted), keep_splits=set(cases))
    return root


def write_pair(root: str | os.PathLike, split: Split | str, case: str, image: np.ndarray, label: np.ndarray, *,
               voxel_size: float, ext: str = ".mrc", header_labels: Sequence[str] = (),
               overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``image`` and its ``label`` (both (z, y, x)) as ``case`` of ``split`` in the dataset folder ``root``.

    The label is stored as int8 (0 background, 1 membrane, 2 ignore). Both files are written
    unnamed and given their final names together (:func:`~bilayer.io.output_group`): the pair
    appears whole or not at all. Safe to call from several processes at once for different cases.

    Args:
        voxel_size: Å, stamped in both headers.
        ext: an MRC ending (``.mrc``, ``.rec``, …).
        header_labels: extra MRC header labels (≤80 characters each).
        overwrite: replace this case's files if they exist.

    Returns:
        (image path, label path).

    Raises:
        ConfigError: a NIfTI or unknown ending, shapes that differ, or label values other than
            0, 1, 2.
        OutputError: the case's names are taken (by its own files without ``overwrite``, or by
            another file of the same case); nothing is written.
    """
    split = Split(split)
    image_path, label_path = dataset_paths(root, split, case, ext)
    if image_path.name.lower().endswith(NIFTI_SUFFIXES):
        raise ConfigError(f"writing {image_path}: arrays are written as MRC; give an MRC ending "
                          f"({', '.join(MRC_SUFFIXES)})")
    image, label = np.asarray(image), np.asarray(label)
    if image.shape != label.shape or image.ndim != 3:
        raise ConfigError(f"writing {label_path}: the image has shape {image.shape} and the label {label.shape}; "
                          "give two 3-D arrays of one shape")
    extra = sorted(set(np.unique(label).tolist()) - set(LABEL_VALUES))
    if extra:
        raise ConfigError(f"writing {label_path}: label values {', '.join(f'{v:g}' for v in extra[:5])} (expected "
                          "only 0 background, 1 membrane, 2 ignore); fix the labels")
    root = Path(root)
    final = {image_path, label_path}
    clashes = _clashes(root, {split: {case: label_path}}, final, replaceable=lambda p: overwrite and p.is_file(),
                       removable=lambda p: False)
    if clashes:
        raise OutputError(f"cannot write {split.value} case {case!r} into {root}: {_listed(clashes)}; remove "
                          "them, choose another folder or case id, or allow overwriting")
    for folder in (image_path.parent, label_path.parent):
        ensure_output_dir(folder)
    with output_group() as group:  # the pair appears together, or not at all
        write_volume(image_path, image, voxel_size=voxel_size, labels=header_labels, overwrite=overwrite,
                     group=group)
        write_volume(label_path, label.astype(np.int8, copy=False), voxel_size=voxel_size, labels=header_labels,
                     overwrite=overwrite, group=group)
    return image_path, label_path


def _checked_case(case: str) -> str:
    if not case or case.startswith(".") or "/" in case or os.sep in case or "\0" in case:
        raise ConfigError(f"{case!r} cannot name a dataset case; give a name that does not start with '.' "
                          "and has no path separator")
    return case


def _ending(ext: str) -> str:
    ending = ("" if ext.startswith(".") else ".") + ext.lower()
    if ending not in VOLUME_SUFFIXES:
        raise ConfigError(f"{ext!r} is not a dataset file ending; give one of {', '.join(VOLUME_SUFFIXES)}")
    return ending


def _source_problem(path: Path) -> str:
    if volume_suffix(path.name) is None:
        return f"{path} is not a NIfTI or MRC file by its name (convert it, or rename it if it is one)"
    return f"{path} does not exist" if not path.exists() else f"{path} is not a file"


def _clashes(root: Path, cases: Mapping[Split, Mapping[str, Path]], final: set[Path], *,
             replaceable: Callable[[Path], bool], removable: Callable[[Path], bool]) -> list[str]:
    """The files in ``root`` that take a name of the given cases, as messages.

    A file at one of the ``final`` names clashes unless ``replaceable``; another file with a
    case's name (another ending, or an untagged image, which the reader would pair instead)
    clashes unless ``removable`` (pruned before it matters)."""
    found = []
    for split, given in cases.items():
        image_dir, label_dir = (root / name for name in split.folders)
        for folder, stems in ((image_dir, {c + IMAGE_TAG: c for c in given} | {c: c for c in given}),
                              (label_dir, {c: c for c in given})):
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                suffix = volume_suffix(entry.name)
                case = stems.get(entry.name[: -len(suffix)]) if suffix else None
                if case is None:
                    continue
                if entry in final:
                    if not replaceable(entry):
                        found.append(f"{entry} exists" + ("" if entry.is_symlink() or entry.is_file()
                                                          else " and is not a file"))
                elif not removable(entry):
                    found.append(f"{entry} already holds {split.value} case {case!r}")
    return found


def _place_links(wanted: Mapping[Path, Path]) -> None:
    """Point each link at its target (relative), atomically; on an error, undo the links placed."""
    done: list[tuple[Path, str | None]] = []  # link, its previous target
    try:
        for link, target in wanted.items():
            relative = os.path.relpath(os.path.abspath(target), os.path.abspath(link.parent))
            previous = os.readlink(link) if link.is_symlink() else None
            if previous == relative:
                continue
            _symlink_atomically(relative, link)
            done.append((link, previous))
    except OSError as e:
        failed = link
        for placed, previous in reversed(done):
            try:
                if previous is None:
                    placed.unlink()
                else:
                    _symlink_atomically(previous, placed)
            except OSError:
                pass
        raise OutputError(f"cannot link {failed}: {e.strerror or e}; choose a folder you can write to") from e


def _symlink_atomically(target: str, link: Path) -> None:
    temporary = link.with_name(f".{link.name}.{secrets.token_hex(4)}.link")
    os.symlink(target, temporary)
    try:
        os.replace(temporary, link)
    except OSError:
        _unlink_quietly(temporary)
        raise


def _prune(root: Path, keep: set[Path], keep_splits: set[Split]) -> None:
    """Remove the symbolic links of the dataset folders that are not in ``keep``, and the empty
    folders of splits not in ``keep_splits`` (an empty split folder would be read as a split)."""
    for split in Split:
        for name in split.folders:
            folder = root / name
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.is_symlink() and entry not in keep:
                    entry.unlink()
            if split not in keep_splits:
                try:
                    folder.rmdir()
                except OSError:  # not empty: files of the user's are left alone
                    pass


def _listed(problems: list[str]) -> str:
    shown = "; ".join(problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    return shown + (f"; and {more} more" if more > 0 else "")


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
