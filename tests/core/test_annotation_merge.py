"""Corrections onto a patch's labels: Remove, then Add, then Ignore, then the ignore border (MemBrain-seg's
order); NRRD, NIfTI and MRC masks; label files replaced in the dataset, correction files untouched."""

from __future__ import annotations

import nrrd
import numpy as np
import pytest
from bilayer.annotation._nifti import nifti_bytes
from bilayer.annotation.extract import extract_patches
from bilayer.annotation.merge import Corrections, merge_corrections, merge_dataset, read_corrections
from bilayer.data.folder import read_array
from bilayer.errors import BilayerWarning, ConfigError, InputFileError
from bilayer.io import read_volume, write_volume

SHAPE = (12, 14, 16)


def _mask(*boxes):
    mask = np.zeros(SHAPE, dtype=bool)
    for box in boxes:
        mask[box] = True
    return mask


def test_later_kinds_win_where_masks_overlap_and_the_border_is_ignore():
    labels = np.zeros(SHAPE, dtype=np.int8)
    labels[4:8] = 1
    remove, add, ignore = _mask(np.s_[5:7, 3:6, 3:6]), _mask(np.s_[5:7, 4:8, 4:8]), _mask(np.s_[6:7, 5:9, 5:9])
    merged = merge_corrections(labels, Corrections(remove, add, ignore), border=2)
    expected = labels.copy()
    expected[remove], expected[add], expected[ignore] = 0, 1, 2
    expected[:2], expected[-2:], expected[:, :2], expected[:, -2:], expected[:, :, :2], expected[:, :, -2:] = (2,) * 6
    np.testing.assert_array_equal(merged, expected)
    assert merged.dtype == np.int8 and labels[5, 3, 3] == 1  # the input is not changed
    np.testing.assert_array_equal(merge_corrections(merged, Corrections(remove, add, ignore), border=2), merged)


def test_masks_of_another_shape_are_refused():
    with pytest.raises(ConfigError, match="the remove mask has shape"):
        merge_corrections(np.zeros(SHAPE), Corrections.empty((3, 3, 3)))


def test_nrrd_nifti_and_mrc_masks_hold_exactly_the_drawn_voxels(tmp_path):
    add_a, add_b = _mask(np.s_[1, 2, 3]), _mask(np.s_[4:6, 5, 6:9])
    remove, ignore = _mask(np.s_[7, 8:10, 9]), _mask(np.s_[10, 11, 12:14])
    nrrd.write(str(tmp_path / "Add1.nrrd"), add_a.astype(np.uint8).transpose(2, 1, 0))  # MITK's (x, y, z) order
    nrrd.write(str(tmp_path / "add2.nrrd"), add_b.astype(np.uint8), index_order="C")
    (tmp_path / "Remove1.nii.gz").write_bytes(nifti_bytes(remove.astype(np.uint8)))
    write_volume(tmp_path / "Ignore_edges.mrc", ignore.astype(np.int8) * 3, voxel_size=1.0)
    (tmp_path / "notes.txt").write_text("MITK session")
    with pytest.warns(BilayerWarning, match="notes.txt is not a correction mask"):
        found = read_corrections(tmp_path, SHAPE)
    np.testing.assert_array_equal(found.add, add_a | add_b)
    np.testing.assert_array_equal(found.remove, remove)
    np.testing.assert_array_equal(found.ignore, ignore)
    assert [p.name for p in found.files] == ["Add1.nrrd", "Ignore_edges.mrc", "Remove1.nii.gz", "add2.nrrd"]


def test_a_mask_of_another_shape_names_the_file(tmp_path):
    nrrd.write(str(tmp_path / "Add1.nrrd"), np.zeros((16, 14, 12), dtype=np.uint8), index_order="C")
    with pytest.raises(InputFileError, match=r"Add1.nrrd has shape \(16, 14, 12\) .* has \(12, 14, 16\)"):
        read_corrections(tmp_path, SHAPE)


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(30, 32, 34)).astype(np.float32)
    labels = (rng.random((30, 32, 34)) < 0.3).astype(np.int8)
    tomo = write_volume(tmp_path / "tomo.mrc", image, voxel_size=10.0)
    seg = write_volume(tmp_path / "tomo_seg.mrc", labels, voxel_size=10.0)
    return tomo, seg, labels


def test_merging_replaces_the_dataset_labels_and_keeps_the_corrections(tmp_path, dataset):
    tomo, seg, labels = dataset
    out = tmp_path / "data"
    extract_patches(tomo, seg, [(15, 16, 17), (10, 10, 10)], out, size=12, border=2)
    case = "tomo_x17_y16_z15"
    folder = tmp_path / "corr" / case
    folder.mkdir(parents=True)
    add, remove = _mask12(np.s_[3:5, 3:9, 4]), _mask12(np.s_[6, 2:10, 2:10])
    nrrd.write(str(folder / "Add1.nrrd"), add.astype(np.uint8), index_order="C")
    write_volume(folder / "Remove1.mrc", remove.astype(np.int8), voxel_size=10.0)
    kept = {p.name: p.read_bytes() for p in folder.iterdir()}
    label_path = out / "labelsTr" / f"{case}.mrc"
    before = read_volume(label_path).data.copy()
    other = (out / "labelsTr" / "tomo_x10_y10_z10.mrc").read_bytes()

    assert merge_dataset(out, tmp_path / "corr") == [label_path]
    after = read_volume(label_path)
    expected = before.copy()
    expected[remove], expected[add] = 0, 1
    expected[:2], expected[-2:], expected[:, :2], expected[:, -2:], expected[:, :, :2], expected[:, :, -2:] = (2,) * 6
    np.testing.assert_array_equal(after.data, expected)
    np.testing.assert_array_equal(after.data[2:-2, 2:-2, 2:-2], np.where(
        add, 1, np.where(remove, 0, labels[9:21, 10:22, 11:23]))[2:-2, 2:-2, 2:-2])
    assert after.voxel_size == (10.0, 10.0, 10.0)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == kept
    assert (out / "labelsTr" / "tomo_x10_y10_z10.mrc").read_bytes() == other  # no corrections: untouched
    merge_dataset(out, tmp_path / "corr", patch=case)  # again: the same labels
    np.testing.assert_array_equal(read_volume(label_path).data, expected)


def _mask12(box):
    mask = np.zeros((12, 12, 12), dtype=bool)
    mask[box] = True
    return mask


def test_nifti_patches_are_merged_into_nifti(tmp_path, dataset):
    tomo, seg, _ = dataset
    out = tmp_path / "data"
    extract_patches(tomo, seg, [(15, 16, 17)], out, size=12, border=1, fmt="nifti", split="val")
    folder = tmp_path / "corr" / "tomo_x17_y16_z15"
    folder.mkdir(parents=True)
    ignore = _mask12(np.s_[4:8, 4:8, 4:8])
    nrrd.write(str(folder / "Ignore1.nrrd"), ignore.astype(np.uint8), index_order="C")
    before = read_array(out / "labelsVal" / "tomo_x17_y16_z15.nii.gz")
    [path] = merge_dataset(out, tmp_path / "corr")
    assert path.name == "tomo_x17_y16_z15.nii.gz"
    after = read_array(path)
    np.testing.assert_array_equal(after[ignore], 2)
    np.testing.assert_array_equal(after[~ignore], before[~ignore])  # border 1 was recorded and kept


def test_bad_merges_name_the_fix_and_write_nothing(tmp_path, dataset):
    tomo, seg, _ = dataset
    out = tmp_path / "data"
    extract_patches(tomo, seg, [(15, 16, 17)], out, size=12, border=2)
    (tmp_path / "corr" / "elsewhere").mkdir(parents=True)
    with pytest.warns(BilayerWarning, match="elsewhere name no patch"), \
            pytest.raises(InputFileError, match="no folder in .*corr is named after a patch"):
        merge_dataset(out, tmp_path / "corr")
    with pytest.raises(InputFileError, match="has no patch 'tomo_x1_y1_z1'"):
        merge_dataset(out, tmp_path / "corr", patch="tomo_x1_y1_z1")
    with pytest.raises(InputFileError, match="has no folder tomo_x17_y16_z15/"):
        merge_dataset(out, tmp_path / "corr", patch="tomo_x17_y16_z15")
    with pytest.raises(InputFileError, match="is not a folder"):
        merge_dataset(out, tmp_path / "missing")
    folder = tmp_path / "corr" / "tomo_x17_y16_z15"
    folder.mkdir()
    nrrd.write(str(folder / "Add1.nrrd"), np.ones((12, 12, 11), dtype=np.uint8), index_order="C")
    label = (out / "labelsTr" / "tomo_x17_y16_z15.mrc").read_bytes()
    with pytest.warns(BilayerWarning), pytest.raises(InputFileError, match="Add1.nrrd has shape"):
        merge_dataset(out, tmp_path / "corr")
    assert (out / "labelsTr" / "tomo_x17_y16_z15.mrc").read_bytes() == label
