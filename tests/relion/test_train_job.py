"""bilayer-relion-train run directly: tomograms and labels from a STAR file, a dataset of links, a
resumable run, fine-tuning, and the trained model used by the segmentation job."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import starfile

from bilayer.model import load_checkpoint
from bilayer_relion import segment_job, train_job
from bilayer_relion._job import ABORT_FILE, EXIT_ABORTED, EXIT_USAGE, NODES_FILE

JOB = "External/job020"
LABELS = "rlnTomoMembraneSegmentation"
TINY_NETWORK = ["network:", "  filters: [8, 16, 32, 64]", "  strides: [1, 2, 2, 2]"]
QUICK = ["patch_size: 32", "num_workers: 0", "precision: float32", "compile: false", "steps_per_epoch: 1"]


def _settings(name: str, lines: list[str]) -> str:
    Path(name).write_text("\n".join(lines) + "\n")
    return name


def _train(*extra: str, star: str = "Tomograms/job007/tomograms.star") -> int:
    return train_job.main(["--o", JOB, "--in_mics", star, "--gpu", "cpu", *extra])


def _epochs(job: str = JOB) -> list[str]:
    with open(Path(job, "training", "metrics.csv")) as f:
        return [row["epoch"] for row in csv.DictReader(f)]


@pytest.fixture
def labelled(project, tomogram_files, tomogram_set):
    paths = tomogram_files([f"Tomograms/job007/tomograms/rec_TS_0{i}.mrc" for i in (1, 2, 3)], labels=True)
    tomogram_set("Tomograms/job007/tomograms.star", paths[:2], labels_column=LABELS)
    tomogram_set("Tomograms/job007/validation.star", paths[2:], labels_column=LABELS)
    return paths


def test_training_from_a_star_file_writes_a_model_at_the_star_voxel_size(labelled, capsys):
    settings = _settings("tiny.yaml", TINY_NETWORK + QUICK)
    assert _train("--config", settings, "--epochs", "1", "--validation", "Tomograms/job007/validation.star") == 0
    job = Path(JOB)
    assert {p.name for p in job.glob("RELION_JOB_EXIT_*")} == {"RELION_JOB_EXIT_SUCCESS"}
    nodes = starfile.read(job / NODES_FILE, always_dict=True)["output_nodes"]
    assert nodes["rlnPipeLineNodeName"].tolist() == [f"{JOB}/training/best.bilayer.pt"]
    assert nodes["rlnPipeLineNodeType"].tolist() == [99]
    assert nodes["rlnPipeLineNodeTypeLabel"].tolist() == ["ParamsData.pt.bilayer.model"]
    model = load_checkpoint(job / "training" / "best.bilayer.pt")
    assert model.info.voxel_size == pytest.approx(10.0)  # the STAR file's 2.5 Å × bin 4, not the headers' 7 Å
    assert model.info.network.filters == (8, 16, 32, 64)
    links = {p.relative_to(job / "dataset").as_posix(): Path(os.path.realpath(p))
             for p in (job / "dataset").rglob("*.mrc")}
    assert links == {"imagesTr/TS_01_0000.mrc": labelled[0].resolve(),
                     "labelsTr/TS_01.mrc": labelled[0].with_name("rec_TS_01_labels.mrc").resolve(),
                     "imagesTr/TS_02_0000.mrc": labelled[1].resolve(),
                     "labelsTr/TS_02.mrc": labelled[1].with_name("rec_TS_02_labels.mrc").resolve(),
                     "imagesVal/TS_03_0000.mrc": labelled[2].resolve(),
                     "labelsVal/TS_03.mrc": labelled[2].with_name("rec_TS_03_labels.mrc").resolve()}
    assert all(not os.path.isabs(os.readlink(p)) for p in (job / "dataset").rglob("*.mrc"))
    out = capsys.readouterr().out
    assert "training a new network on 2 train, 1 val tomogram(s) at 10 Å" in out and "val_dice" in out


def test_an_abort_after_an_epoch_is_resumed_by_continuing(labelled, monkeypatch, capsys):
    import bilayer.train.trainer as trainer

    settings = _settings("tiny.yaml", TINY_NETWORK + QUICK)
    original = trainer.write_metrics

    def write_then_abort(path, history):
        original(path, history)
        Path(JOB, ABORT_FILE).touch()  # the user presses abort during the first epoch

    monkeypatch.setattr(trainer, "write_metrics", write_then_abort)
    assert _train("--config", settings, "--epochs", "2") == EXIT_ABORTED
    assert _epochs() == ["1"] and Path(JOB, "RELION_JOB_EXIT_ABORTED").exists()
    monkeypatch.setattr(trainer, "write_metrics", original)
    capsys.readouterr()
    assert _train("--config", settings, "--epochs", "2") == 0
    assert _epochs() == ["1", "2"]
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "epoch 1/2" not in out


def test_a_time_limit_ends_a_long_job_with_its_checkpoints(labelled, capsys):
    settings = _settings("tiny.yaml", TINY_NETWORK + QUICK)
    assert _train("--config", settings, "--epochs", "100000", "--time_limit", "0.02") == 0
    assert 1 <= len(_epochs()) < 100000 and Path(JOB, "training", "best.bilayer.pt").is_file()
    assert "100000 epochs or 0.02 minutes, whichever ends first" in capsys.readouterr().out


def test_fine_tuning_a_membrain_checkpoint_gives_a_model_the_segmentation_job_uses(labelled, membrain_tiny_ckpt):
    settings = _settings("quick.yaml", QUICK)
    # its six levels need patches of 64 (two voxels left at the bottom for instance norm)
    assert _train("--model", str(membrain_tiny_ckpt), "--config", settings, "--epochs", "1", "--patch_size", "64") == 0
    tuned = Path(JOB, "training", "best.bilayer.pt")
    model = load_checkpoint(tuned)
    assert model.info.network == load_checkpoint(membrain_tiny_ckpt).info.network
    assert "finetune" in model.info.source
    recipe = (Path(JOB) / "training" / "config.json").read_text()
    assert '"learning_rate": 1e-05' in recipe  # MemBrain-seg's fine-tuning rate, from the engine
    code = segment_job.main(["--o", "External/job021", "--in_mics", "Tomograms/job007/tomograms.star", "--model",
                             str(tuned), "--window", "64", "--tta", "no", "--gpu", "cpu", "--preview", "no"])
    assert code == 0 and Path("External/job021/tomograms/rec_TS_01_seg.mrc").is_file()


def test_tomograms_of_different_voxel_sizes_are_refused(labelled, tomogram_set, capsys):
    tomogram_set("Tomograms/job007/validation.star", labelled[2:], labels_column=LABELS, binning=6.0)
    assert _train("--validation", "Tomograms/job007/validation.star") == EXIT_USAGE
    err = capsys.readouterr().err
    assert "different voxel sizes (TS_01 10 Å, TS_02 10 Å, TS_03 15 Å)" in err
    assert not Path(JOB, "training").exists()


def test_missing_labels_and_bad_labels_fail_before_training(labelled, capsys):
    labelled[1].with_name("rec_TS_02_labels.mrc").unlink()
    assert _train() == EXIT_USAGE
    err = capsys.readouterr().err
    assert "1 label file(s) that do not exist: Tomograms/job007/tomograms/rec_TS_02_labels.mrc" in err
    assert _train("--labels_column", "rlnTomoReconstructedTomogram") == EXIT_USAGE  # images are not labels
    err = capsys.readouterr().err
    assert "labelsTr/TS_01.mrc holds label values" in err and "expected only 0, 1, 2" in err
    assert not Path(JOB, "training").exists()
