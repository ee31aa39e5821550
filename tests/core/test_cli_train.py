"""``bilayer train``, ``finetune`` and ``evaluate`` on the command line."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import nibabel
import numpy as np
import pytest

from bilayer.cli import main
from bilayer.data.synthetic import SynthConfig, generate_tomogram
from bilayer.io import write_volume
from bilayer.metrics import segmentation_scores
from bilayer.model import load_checkpoint

TINY = {"filters": [8, 16, 32, 64], "strides": [1, 2, 2, 2]}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _settings(tmp_path, **extra) -> str:
    path = tmp_path / "settings.yaml"
    lines = ["network:", "  filters: [8, 16, 32, 64]", "  strides: [1, 2, 2, 2]", "patch_size: 32",
             "num_workers: 0", "precision: float32", "compile: false"] + [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _membrain_folder(root, count=2, shape=(40, 36, 36)):
    """A dataset in MemBrain-seg's layout: NIfTI stored (x, y, z), images tagged _0000."""
    for split, n in (("Tr", count), ("Val", 1)):
        (root / f"images{split}").mkdir(parents=True)
        (root / f"labels{split}").mkdir(parents=True)
        for i in range(n):
            scene = generate_tomogram(SynthConfig(shape=shape, voxel_size=10.0), seed=10 * i + len(split))
            for folder, name, array in ((f"images{split}", f"p{i}_0000.nii.gz", scene.image),
                                        (f"labels{split}", f"p{i}.nii.gz", scene.labels)):
                image = nibabel.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), np.eye(4))
                nibabel.save(image, root / folder / name)


def test_train_on_a_membrain_folder_writes_a_usable_run(tmp_path, capsys):
    _membrain_folder(tmp_path / "data")
    code, out, err = run(capsys, "train", tmp_path / "data", "--out", tmp_path / "run", "--config",
                         _settings(tmp_path), "--epochs", "2", "--batch-size", "1", "--device", "cpu")
    assert code == 0, err
    assert "epoch 2/2" in out and "val_dice" in out and "best:" in out
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0]["val_surface_dice"] != ""
    settings = json.loads((tmp_path / "run" / "config.json").read_text())
    assert settings["batch_size"] == 1 and settings["network"]["filters"] == TINY["filters"]
    assert load_checkpoint(tmp_path / "run" / "best.bilayer.pt").info.network.filters == (8, 16, 32, 64)
    logger = logging.getLogger("bilayer.train")  # progress went to stderr only while training
    assert logger.handlers == [] and logger.propagate and logger.level == logging.NOTSET


def test_train_needs_data_and_lists_bad_files(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--out", tmp_path / "run")
    assert code == 2 and "DATASET folder or --synthetic" in err
    _membrain_folder(tmp_path / "data")
    (tmp_path / "data" / "labelsTr" / "p1.nii.gz").unlink()
    code, _, err = run(capsys, "train", tmp_path / "data", "--out", tmp_path / "run", "--config", _settings(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "p1_0000.nii.gz has no label" in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_bad_setting_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--synthetic", "2", "--out", tmp_path / "run", "--config",
                       _settings(tmp_path, momentum=1.5))
    assert code == 2 and "momentum" in err and err.count("\n") == 1


def test_finetune_continues_a_bilayer_checkpoint(tmp_path, capsys):
    settings = _settings(tmp_path, steps_per_epoch=1)
    code, _, err = run(capsys, "train", "--synthetic", "2", "--synthetic-val", "0", "--out", tmp_path / "base",
                       "--config", settings, "--epochs", "1", "--device", "cpu")
    assert code == 0, err
    tuned_settings = tmp_path / "tune.json"
    tuned_settings.write_text(json.dumps({"patch_size": 32, "num_workers": 0, "steps_per_epoch": 1,
                                          "compile": False}))
    code, out, err = run(capsys, "finetune", "--synthetic", "2", "--synthetic-val", "0", "--model",
                         tmp_path / "base" / "last.bilayer.pt", "--out", tmp_path / "tuned", "--config",
                         tuned_settings, "--epochs", "1", "--time-limit", "30", "--device", "cpu")
    assert code == 0, err
    recipe = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert recipe["learning_rate"] == pytest.approx(1e-5)  # MemBrain-seg's fine-tuning rate
    assert recipe["time_limit"] == 30
    info = load_checkpoint(tmp_path / "tuned" / "last.bilayer.pt").info
    assert "finetune" in info.source and info.network.filters == (8, 16, 32, 64)
    assert info.training["recipe"]["network"]["filters"] == [8, 16, 32, 64]  # the model's, not the default's


def test_evaluate_prints_and_writes_the_scores(tmp_path, capsys):
    scene = generate_tomogram(SynthConfig(shape=(48, 48, 48), voxel_size=10.0), seed=5)
    truth = scene.labels.astype(np.int8)
    pred = (np.roll(scene.labels == 1, 1, axis=2)).astype(np.int8)
    write_volume(tmp_path / "gt.mrc", truth, voxel_size=10.0)
    write_volume(tmp_path / "pred.mrc", pred, voxel_size=10.0)
    code, out, err = run(capsys, "evaluate", tmp_path / "pred.mrc", "--gt", tmp_path / "gt.mrc",
                         "--csv", tmp_path / "scores.csv")
    assert code == 0, err
    expected = segmentation_scores(pred, truth)
    assert f"dice {expected['dice']:.4f}" in out and f"surface_dice {expected['surface_dice']:.4f}" in out
    with open(tmp_path / "scores.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["dice"]) == pytest.approx(expected["dice"]) and 0 < expected["dice"] < 1
    code, _, err = run(capsys, "evaluate", tmp_path / "pred.mrc", tmp_path / "pred.mrc", "--gt", tmp_path / "gt.mrc")
    assert code == 2 and "one --gt each" in err


def test_evaluate_finds_the_labels_of_segment_outputs_in_a_folder(tmp_path, capsys):
    labels, masks = tmp_path / "labelsVal", tmp_path / "seg"
    labels.mkdir(), masks.mkdir()
    expected = {}
    for seed, name in ((5, "scene_a"), (6, "scene_b")):
        truth = generate_tomogram(SynthConfig(shape=(32, 40, 40), voxel_size=10.0), seed=seed).labels.astype(np.int8)
        pred = np.roll(truth == 1, seed - 4, axis=1).astype(np.int8)
        write_volume(labels / f"{name}.mrc", truth, voxel_size=10.0)
        write_volume(masks / f"{name}_0000_seg.mrc", pred, voxel_size=10.0)  # an nnU-Net image's mask
        expected[name] = segmentation_scores(pred, truth)["dice"]
    write_volume(labels / "scene_b_0000.mrc", np.zeros((32, 40, 40), np.int8), voxel_size=10.0)  # not a label
    code, _, err = run(capsys, "evaluate", masks / "scene_b_0000_seg.mrc", masks / "scene_a_0000_seg.mrc",
                       "--gt-dir", labels, "--csv", tmp_path / "scores.csv")
    assert code == 0, err
    with open(tmp_path / "scores.csv") as f:
        rows = {Path(r["prediction"]).name: r for r in csv.DictReader(f)}
    assert Path(rows["scene_a_0000_seg.mrc"]["ground_truth"]).name == "scene_a.mrc"
    assert float(rows["scene_a_0000_seg.mrc"]["dice"]) == pytest.approx(expected["scene_a"])
    # the exact stem wins: scene_b_0000.mrc (all background) scores any mark 0
    assert Path(rows["scene_b_0000_seg.mrc"]["ground_truth"]).name == "scene_b_0000.mrc"
    assert float(rows["scene_b_0000_seg.mrc"]["dice"]) == 0.0 and expected["scene_b"] > 0
    write_volume(masks / "other_seg.mrc", np.zeros((32, 40, 40), np.int8), voxel_size=10.0)
    code, _, err = run(capsys, "evaluate", masks / "other_seg.mrc", masks / "scene_a_0000_seg.mrc", "--gt-dir", labels)
    assert code == 2 and "lacks the labels of other_seg.mrc (no other.mrc)" in err and err.count("\n") == 1
    code, _, err = run(capsys, "evaluate", masks / "scene_a_0000_seg.mrc", "--gt-dir", labels,
                       "--gt", labels / "scene_a.mrc")
    assert code == 2 and "either as --gt files" in err
