"""Training patches: the tomogram's and labels' crops, MemBrain-seg's ignore border, boxes shifted
inside at the border, names and records, all patches of a call or none."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.annotation import extract as extract_module
from bilayer.annotation.extract import extract_patches, patch_case, patch_start, read_patch_record, with_ignore_border
from bilayer.data.folder import find_pairs, read_array
from bilayer.errors import BilayerError, ConfigError, InputFileError, OutputError
from bilayer.io import read_volume, write_volume

SHAPE = (40, 48, 56)


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=SHAPE).astype(np.float32)
    labels = rng.integers(0, 3, size=SHAPE).astype(np.int8)
    tomo = write_volume(tmp_path / "tomo.mrc", image, voxel_size=12.0, origin=(100.0, 200.0, 300.0))
    seg = write_volume(tmp_path / "tomo_seg.mrc", labels, voxel_size=12.0)
    return tomo, seg, image, labels


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_patch_start_centres_the_box_and_shifts_it_inside():
    assert patch_start((40, 48, 56), (20, 24, 28), 16) == (12, 16, 20)
    assert patch_start((40, 48, 56), (3, 45, 0), 16) == (0, 32, 0)
    assert patch_start((16, 48, 56), (8, 1, 55), 16) == (0, 0, 40)


def test_ignore_border_marks_every_face_and_nothing_else():
    out = with_ignore_border(np.zeros((6, 7, 8), dtype=np.int8), 2)
    inner = np.zeros((6, 7, 8), dtype=bool)
    inner[2:4, 2:5, 2:6] = True
    assert (out[inner] == 0).all() and (out[~inner] == 2).all()
    np.testing.assert_array_equal(with_ignore_border(np.ones((3, 3, 3)), 0), np.ones((3, 3, 3)))


def test_patches_are_the_crops_with_an_ignore_border(tmp_path, pair):
    tomo, seg, image, labels = pair
    out = tmp_path / "data"
    written = extract_patches(tomo, seg, [(20, 24, 28), (10, 30, 40)], out, size=16, border=3)
    assert [p.relative_to(out).as_posix() for p in written] == [
        "imagesTr/tomo_x28_y24_z20_0000.mrc", "labelsTr/tomo_x28_y24_z20.mrc",
        "imagesTr/tomo_x40_y30_z10_0000.mrc", "labelsTr/tomo_x40_y30_z10.mrc"]
    for (z, y, x), image_path, label_path in zip([(20, 24, 28), (10, 30, 40)], written[::2], written[1::2]):
        box = np.s_[z - 8:z + 8, y - 8:y + 8, x - 8:x + 8]
        patch = read_volume(image_path)
        np.testing.assert_array_equal(patch.data, image[box])
        got = read_volume(label_path).data
        np.testing.assert_array_equal(got[3:-3, 3:-3, 3:-3], labels[box][3:-3, 3:-3, 3:-3])
        assert (got == 2).sum() == 16**3 - 10**3 + (labels[box][3:-3, 3:-3, 3:-3] == 2).sum()
        assert patch.voxel_size == (12.0, 12.0, 12.0)
        assert patch.origin == (100.0 + 12 * (z - 8), 200.0 + 12 * (y - 8), 300.0 + 12 * (x - 8))
        assert read_patch_record(label_path).start == (z - 8, y - 8, x - 8)
    assert [p.name for p in find_pairs(out)] == ["tomo_x28_y24_z20", "tomo_x40_y30_z10"]  # bilayer train reads it


def test_a_centre_three_voxels_from_the_edge_gives_a_full_patch(tmp_path, pair):
    tomo, seg, image, labels = pair
    image_path, label_path = extract_patches(tomo, seg, [(3, 44, 3)], tmp_path / "d", size=16, border=2)
    np.testing.assert_array_equal(read_volume(image_path).data, image[0:16, 32:48, 0:16])
    np.testing.assert_array_equal(read_volume(label_path).data[2:-2, 2:-2, 2:-2], labels[2:14, 34:46, 2:14])
    record = read_patch_record(label_path)
    assert (record.start, record.size, record.border) == ((0, 32, 0), 16, 2)
    assert label_path.name == "tomo_x3_y44_z3.mrc"


def test_nifti_patches_read_back_in_z_y_x_with_their_record(tmp_path, pair):
    tomo, seg, image, labels = pair
    image_path, label_path = extract_patches(tomo, seg, [(20, 24, 28)], tmp_path / "d", size=16, border=3,
                                             fmt="nifti", split="val", name="TS_7")
    assert image_path.as_posix().endswith("imagesVal/TS_7_x28_y24_z20_0000.nii.gz")
    np.testing.assert_array_equal(read_array(image_path), image[12:28, 16:32, 20:36])
    np.testing.assert_array_equal(read_array(label_path)[3:-3, 3:-3, 3:-3], labels[15:25, 19:29, 23:33])
    assert read_patch_record(label_path).start == (12, 16, 20)
    assert [p.name for p in find_pairs(tmp_path / "d", "val")] == ["TS_7_x28_y24_z20"]


def test_reruns_refuse_existing_names_unless_overwriting(tmp_path, pair):
    tomo, seg, _, _ = pair
    extract_patches(tomo, seg, [(20, 24, 28)], tmp_path / "d", size=16, border=3)
    with pytest.raises(OutputError, match="already exists"):
        extract_patches(tomo, seg, [(10, 30, 40), (20, 24, 28)], tmp_path / "d", size=16, border=3)
    assert len(list((tmp_path / "d" / "imagesTr").iterdir())) == 1  # the new patch was not written either
    assert len(extract_patches(tomo, seg, [(20, 24, 28)], tmp_path / "d", size=16, border=3, overwrite=True)) == 2
    with pytest.raises(OutputError, match="another format"):
        extract_patches(tomo, seg, [(20, 24, 28)], tmp_path / "d", size=16, border=3, fmt="nifti")


@pytest.mark.parametrize("kwargs, error, words", [
    ({"centres": [(20, 24, 56)]}, InputFileError, "centre x=56 y=24 z=20 lies outside .*tomo.mrc"),
    ({"centres": [(20, 24, 28), (20, 24, 28)]}, ConfigError, "given twice"),
    ({"size": 41}, InputFileError, r"smaller than a 41³ patch; give a smaller --size \(at most 40\)"),
    ({"size": 6, "border": 3}, ConfigError, "a 6³ patch leaves nothing inside its ignore border of 3 voxels"),
    ({"split": "test"}, ConfigError, "split='test' is not one of train, val"),
])
def test_bad_requests_write_nothing(tmp_path, pair, kwargs, error, words):
    tomo, seg, _, _ = pair
    before = _listing(tmp_path)
    args = {"centres": [(20, 24, 28)], "size": 16, "border": 3} | kwargs
    with pytest.raises(error, match=words):
        extract_patches(tomo, seg, args.pop("centres"), tmp_path / "d", **args)
    assert _listing(tmp_path) == before


def test_labels_must_match_the_tomogram_and_hold_0_1_2(tmp_path, pair):
    tomo, _, _, labels = pair
    small = write_volume(tmp_path / "small.mrc", labels[:-1], voxel_size=12.0)
    with pytest.raises(InputFileError, match=r"small.mrc has shape \(39, 48, 56\) .*tomo.mrc has \(40, 48, 56\)"):
        extract_patches(tomo, small, [(20, 24, 28)], tmp_path / "d", size=16, border=3)
    scores = labels.astype(np.float32)
    scores[20, 24, 28] = 0.7
    bad = write_volume(tmp_path / "scores.mrc", scores, voxel_size=12.0)
    with pytest.raises(InputFileError, match="scores.mrc holds values 0.7 in the patch at x20 y16 z12"):
        extract_patches(tomo, bad, [(10, 30, 40), (20, 24, 28)], tmp_path / "d", size=16, border=3)
    assert not (tmp_path / "d").exists()


def test_a_failure_while_writing_leaves_no_patch(tmp_path, pair, monkeypatch):
    tomo, seg, _, _ = pair
    calls = []

    def failing(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise OutputError("disk full")
        return real(*args, **kwargs)

    real = extract_module.write_volume
    monkeypatch.setattr(extract_module, "write_volume", failing)
    with pytest.raises(BilayerError, match="disk full"):
        extract_patches(tomo, seg, [(20, 24, 28), (10, 30, 40)], tmp_path / "d", size=16, border=3)
    assert len(calls) == 3
    assert not [p for p in (tmp_path / "d").rglob("*") if p.is_file()]


def test_case_names_are_file_names():
    assert patch_case("run/TS_01", (1, 2, 3)) == "run_TS_01_x3_y2_z1"
