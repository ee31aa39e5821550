"""bilayer.data.layout: the MemBrain-seg dataset layout is written as the reader reads it, and a
writer refuses clashes with one line, leaving the folder as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest
import yaml

from bilayer.data.folder import find_pairs, read_array
from bilayer.data.layout import (
    VAL_SEED_OFFSET,
    Split,
    case_id,
    dataset_paths,
    link_pairs,
    volume_suffix,
    write_pair,
)
from bilayer.errors import BilayerError, ConfigError, InputFileError, OutputError
from bilayer.io import read_volume, write_volume

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (6, 5, 4)


def _arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=SHAPE).astype(np.float32), rng.integers(0, 3, size=SHAPE).astype(np.uint8)


def _sources(folder: Path, name: str, seed: int = 0, label_fmt: str = "mrc") -> tuple[Path, Path]:
    """A tomogram (MRC) and its labels (MRC or NIfTI) outside any dataset folder."""
    folder.mkdir(parents=True, exist_ok=True)
    image, label = _arrays(seed)
    image_path = write_volume(folder / f"{name}.mrc", image, voxel_size=10.0)
    if label_fmt == "mrc":
        label_path = write_volume(folder / f"{name}_labels.mrc", label.astype(np.int8), voxel_size=10.0)
    else:
        label_path = folder / f"{name}_labels.nii.gz"
        nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(label.transpose(2, 1, 0)), np.eye(4)), label_path)
    return image_path, label_path


def _tree(root: Path) -> dict[str, str | None]:
    """Every entry under ``root``: a link's target, None for a file or folder."""
    return {p.relative_to(root).as_posix(): (os.readlink(p) if p.is_symlink() else None)
            for p in sorted(root.rglob("*"))}


def test_paths_are_the_membrain_names():
    image, label = dataset_paths("data", "train", "TS_01", ".mrc")
    assert (image.as_posix(), label.as_posix()) == ("data/imagesTr/TS_01_0000.mrc", "data/labelsTr/TS_01.mrc")
    image, label = dataset_paths("data", Split.VAL, "TS_01", "nii.gz", label_ext=".MRC")
    assert (image.as_posix(), label.as_posix()) == ("data/imagesVal/TS_01_0000.nii.gz", "data/labelsVal/TS_01.mrc")
    assert volume_suffix("a.NII.GZ") == ".nii.gz" and volume_suffix("a.rec") == ".rec"
    assert volume_suffix("a.tif") is None
    with pytest.raises(ConfigError, match="'.tif' is not a dataset file ending"):
        dataset_paths("data", "train", "a", ".tif")
    assert case_id("tilt/TS_01") == "tilt_TS_01"
    for bad in ("", ".hidden", "a/b"):
        with pytest.raises(ConfigError):
            dataset_paths("data", "train", bad)


def test_validation_seeds_have_one_offset():
    assert Split.TRAIN.seed_offset == 0 and Split.VAL.seed_offset == VAL_SEED_OFFSET == 1_000_000


def test_written_pairs_are_read_back_by_the_reader(tmp_path):
    written = {}
    for split, case, seed in ((Split.TRAIN, "a", 0), (Split.TRAIN, "b", 1), (Split.VAL, "v", 2)):
        image, label = _arrays(seed)
        paths = write_pair(tmp_path, split, case, image, label, voxel_size=12.5, header_labels=["test"])
        assert paths == dataset_paths(tmp_path, split, case)
        written[case] = (image, label)
    assert [p.name for p in find_pairs(tmp_path, Split.TRAIN)] == ["a", "b"]
    pairs = find_pairs(tmp_path, Split.TRAIN) + find_pairs(tmp_path, Split.VAL)
    for pair in pairs:
        image, label = written[pair.name]
        np.testing.assert_array_equal(read_array(pair.image), image)
        np.testing.assert_array_equal(read_array(pair.label), label)
        assert read_volume(pair.label).data.dtype == np.int8
        assert read_volume(pair.image).isotropic_voxel_size == pytest.approx(12.5)
    assert not [p for p in tmp_path.rglob(".*")]  # no staging files left


def test_writing_a_case_again_needs_overwrite_and_other_endings_clash(tmp_path):
    image, label = _arrays()
    write_pair(tmp_path, "train", "a", image, label, voxel_size=10.0)
    before = _tree(tmp_path)
    with pytest.raises(OutputError) as caught:
        write_pair(tmp_path, "train", "a", image + 1, label, voxel_size=10.0)
    message = str(caught.value)
    assert "\n" not in message and "imagesTr/a_0000.mrc exists" in message and "allow overwriting" in message
    assert _tree(tmp_path) == before
    write_pair(tmp_path, "train", "a", image + 1, label, voxel_size=10.0, overwrite=True)
    np.testing.assert_array_equal(read_array(tmp_path / "imagesTr" / "a_0000.mrc"), image + 1)
    with pytest.raises(OutputError, match="a_0000.mrc already holds train case 'a'"):
        write_pair(tmp_path, "train", "a", image, label, voxel_size=10.0, ext=".rec", overwrite=True)
    assert not list((tmp_path / "imagesTr").glob("*.rec")) and not list((tmp_path / "labelsTr").glob("*.rec"))


def test_bad_arrays_are_refused_before_anything_is_written(tmp_path):
    image, label = _arrays()
    with pytest.raises(ConfigError, match="label values 7"):
        write_pair(tmp_path, "train", "a", image, np.full(SHAPE, 7, np.uint8), voxel_size=10.0)
    with pytest.raises(ConfigError, match="one shape"):
        write_pair(tmp_path, "train", "a", image, label[:-1], voxel_size=10.0)
    with pytest.raises(ConfigError, match="arrays are written as MRC"):
        write_pair(tmp_path, "train", "a", image, label, voxel_size=10.0, ext=".nii.gz")
    assert not list(tmp_path.iterdir())


def test_a_failed_label_write_leaves_no_half_pair(tmp_path, monkeypatch):
    import bilayer.data.layout as layout

    calls = []

    def failing_write(path, data, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OutputError(f"cannot write {path}: disk full")
        return write_volume(path, data, **kwargs)

    monkeypatch.setattr(layout, "write_volume", failing_write)
    image, label = _arrays()
    with pytest.raises(OutputError, match="disk full"):
        write_pair(tmp_path, "train", "a", image, label, voxel_size=10.0)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_linked_pairs_are_read_back_and_relinking_is_idempotent(tmp_path):
    sources = {name: _sources(tmp_path / "tomograms", name, seed, fmt)
               for name, seed, fmt in (("TS_01", 0, "mrc"), ("TS_02", 1, "nii.gz"), ("TS_03", 2, "mrc"))}
    root = tmp_path / "job" / "dataset"
    pairs = {Split.TRAIN: [(n, *sources[n]) for n in ("TS_01", "TS_02")], Split.VAL: [("TS_03", *sources["TS_03"])]}
    assert link_pairs(root, pairs) == root
    tree = _tree(root)
    assert {k for k, v in tree.items() if v is not None} == {
        "imagesTr/TS_01_0000.mrc", "labelsTr/TS_01.mrc", "imagesTr/TS_02_0000.mrc", "labelsTr/TS_02.nii.gz",
        "imagesVal/TS_03_0000.mrc", "labelsVal/TS_03.mrc"}
    assert all(not os.path.isabs(target) for target in tree.values() if target is not None)
    for split in Split:
        for pair in find_pairs(root, split):
            image, label = sources[pair.name]
            assert pair.image.resolve() == image.resolve() and pair.label.resolve() == label.resolve()
    mtimes = {p: p.lstat().st_mtime_ns for p in root.rglob("*") if p.is_symlink()}
    link_pairs(root, pairs)
    assert {p: p.lstat().st_mtime_ns for p in root.rglob("*") if p.is_symlink()} == mtimes


def test_pruning_keeps_exactly_the_given_pairs(tmp_path):
    sources = {name: _sources(tmp_path / "tomograms", name, seed) for seed, name in enumerate(("A", "B", "C"))}
    root = tmp_path / "dataset"
    link_pairs(root, {"train": [("A", *sources["A"]), ("B", *sources["B"])], "val": [("C", *sources["C"])]})
    own = root / "labelsTr" / "notes.txt"
    own.write_text("the user's")
    link_pairs(root, {"train": [("A", *sources["A"]), ("B", *sources["C"])]}, prune=True)  # B now points at C's files
    assert sorted(_tree(root)) == ["imagesTr", "imagesTr/A_0000.mrc", "imagesTr/B_0000.mrc", "labelsTr",
                                   "labelsTr/A.mrc", "labelsTr/B.mrc", "labelsTr/notes.txt"]
    assert (root / "imagesTr" / "B_0000.mrc").resolve() == sources["C"][0].resolve()
    assert own.read_text() == "the user's"


@pytest.mark.parametrize("problem", ["duplicate", "ending", "missing", "file_in_the_way", "other_ending"])
def test_link_refusals_are_one_line_and_change_nothing(tmp_path, problem):
    sources = {name: _sources(tmp_path / "tomograms", name, seed) for seed, name in enumerate(("A", "B"))}
    root = tmp_path / "dataset"
    link_pairs(root, {"train": [("A", *sources["A"])]})
    pairs = [("A", *sources["A"]), ("B", *sources["B"])]
    expected: tuple[type[BilayerError], str]
    if problem == "duplicate":  # two tsIds that make the same file name
        pairs = [(case_id("tilt/B"), *sources["A"]), (case_id("tilt_B"), *sources["B"])]
        expected = InputFileError, "are both train case 'tilt_B'"
    elif problem == "ending":
        tif = sources["B"][0].with_suffix(".tif")
        tif.write_bytes(b"")
        pairs[1] = ("B", tif, sources["B"][1])
        expected = InputFileError, "B.tif is not a NIfTI or MRC file by its name"
    elif problem == "missing":
        sources["B"][1].unlink()
        expected = InputFileError, "B_labels.mrc does not exist"
    elif problem == "file_in_the_way":
        (root / "labelsTr" / "A.mrc").unlink()
        write_volume(root / "labelsTr" / "A.mrc", np.zeros(SHAPE, np.int8), voxel_size=10.0)
        expected = OutputError, "labelsTr/A.mrc exists"
    else:  # the reader would see two labels for B
        write_volume(root / "labelsTr" / "B.rec", np.zeros(SHAPE, np.int8), voxel_size=10.0)
        expected = OutputError, "labelsTr/B.rec already holds train case 'B'"
    before = _tree(root)
    with pytest.raises(expected[0]) as caught:
        link_pairs(root, {"train": pairs}, prune=True)
    assert expected[1] in str(caught.value) and "\n" not in str(caught.value)
    assert _tree(root) == before


def test_the_synthetic_dataset_script_writes_a_readable_folder_with_offset_validation_seeds(tmp_path):
    settings = yaml.safe_load((ROOT / "configs" / "default_synth.yaml").read_text())["train"]
    config = tmp_path / "synth.yaml"
    config.write_text(yaml.safe_dump({"train": {**settings, "shape": [24, 24, 24]}}))
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic_dataset.py"), str(config),
                           str(tmp_path / "data"), "--train", "1", "--val", "1", "--seed", "5", "--workers", "1"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"val synth_00000 seed {5 + VAL_SEED_OFFSET}:" in done.stdout and "train synth_00000 seed 5:" in done.stdout
    assert [p.name for p in find_pairs(tmp_path / "data", "train")] == ["synth_00000"]
    assert [p.name for p in find_pairs(tmp_path / "data", "val")] == ["synth_00000"]


def test_a_label_that_appears_while_writing_takes_the_image_back_out(tmp_path, monkeypatch):
    import bilayer.data.layout as layout

    calls = []

    def racing_write(path, data, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # another writer places the same case meanwhile
            (tmp_path / "labelsTr" / "a.mrc").write_bytes(b"theirs")
        return write_volume(path, data, **kwargs)

    monkeypatch.setattr(layout, "write_volume", racing_write)
    image, label = _arrays()
    with pytest.raises(OutputError, match="already exists|appeared while it was being written"):
        write_pair(tmp_path, "train", "a", image, label, voxel_size=10.0)
    assert _tree(tmp_path) == {"imagesTr": None, "labelsTr": None, "labelsTr/a.mrc": None}
    assert (tmp_path / "labelsTr" / "a.mrc").read_bytes() == b"theirs"
