"""bilayer.data.folder: MemBrain-seg dataset folders are found, read and checked up front."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest

from bilayer.data.folder import Split, find_pairs, read_array
from bilayer.errors import InputFileError
from bilayer.io import write_volume


def _nifti(path: Path, zyx: np.ndarray) -> Path:
    """Store a (z, y, x) array as MemBrain-seg's SimpleITK does: NIfTI axes i, j, k = x, y, z."""
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(zyx.transpose(2, 1, 0)), np.eye(4)), path)
    return path


def _dataset(root: Path, names=("tomoA_patch0", "tomoB_patch1"), shape=(12, 10, 8), split=Split.TRAIN,
             fmt="nii.gz", seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    image_dir, label_dir = (root / d for d in split.folders)
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name in names:
        image = rng.normal(size=shape).astype(np.float32)
        label = rng.integers(0, 3, size=shape).astype(np.uint8)
        if fmt == "nii.gz":
            _nifti(image_dir / f"{name}_0000.nii.gz", image)
            _nifti(label_dir / f"{name}.nii.gz", label)
        else:
            write_volume(image_dir / f"{name}.mrc", image, voxel_size=10.0)
            write_volume(label_dir / f"{name}.mrc", label.astype(np.int8), voxel_size=10.0)
        arrays[name] = image
    return arrays


@pytest.mark.parametrize("fmt", ["nii.gz", "mrc"])
def test_pairs_are_found_and_read_in_zyx_order(tmp_path, fmt):
    arrays = _dataset(tmp_path, fmt=fmt)
    pairs = find_pairs(tmp_path, "train")
    assert [p.name for p in pairs] == sorted(arrays)
    for pair in pairs:
        assert pair.shape == (12, 10, 8)
        np.testing.assert_array_equal(read_array(pair.image), arrays[pair.name])


def test_validation_split_uses_its_own_folders(tmp_path):
    _dataset(tmp_path, names=("a",))
    _dataset(tmp_path, names=("v1", "v2"), split=Split.VAL)
    assert [p.name for p in find_pairs(tmp_path, Split.VAL)] == ["v1", "v2"]


def test_every_bad_file_is_listed_in_one_error(tmp_path):
    _dataset(tmp_path, names=("good", "mismatch", "badvalues", "nolabel", "noimage"))
    images, labels = tmp_path / "imagesTr", tmp_path / "labelsTr"
    _nifti(labels / "mismatch.nii.gz", np.zeros((12, 10, 9), np.uint8))
    _nifti(labels / "badvalues.nii.gz", np.full((12, 10, 8), 3, np.uint8))
    (labels / "nolabel.nii.gz").unlink()
    (images / "noimage_0000.nii.gz").unlink()
    (labels / "broken.nii.gz").write_bytes(b"not a nifti file")
    _nifti(images / "broken_0000.nii.gz", np.zeros((12, 10, 8), np.float32))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InputFileError) as caught:
        find_pairs(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "5 bad file(s)" in message
    for fragment in ("mismatch.nii.gz has shape (12, 10, 9)", "badvalues.nii.gz holds label values 3",
                     "nolabel_0000.nii.gz has no label", "noimage.nii.gz has no image", "broken.nii.gz"):
        assert fragment in message
    assert "good" not in message
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written or removed


def test_missing_folder_names_the_layout(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(InputFileError, match="no labelsTr/ folder"):
        find_pairs(tmp_path)


def test_an_empty_label_folder_is_an_error(tmp_path):
    for name in Split.TRAIN.folders:
        (tmp_path / name).mkdir()
    with pytest.raises(InputFileError, match="holds no label files"):
        find_pairs(tmp_path)
