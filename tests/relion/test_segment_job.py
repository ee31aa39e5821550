"""bilayer-relion-segment run directly, as RELION runs it: a RELION 5 tomogram set, aborts, a killed
run continued, bad lists; outputs checked against the engine's own answer."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import starfile

from bilayer.infer import InferenceConfig, OutputOptions, Predictor, segment_file
from bilayer.io import read_volume
from bilayer_relion import segment_job
from bilayer_relion._job import ABORT_FILE, EXIT_ABORTED, EXIT_USAGE, NODES_FILE

JOB = "External/job012"
VOXEL_SIZE = 10.0  # what the STAR files of tests/relion/conftest.py say (the headers say 7)
FAST = ("--window", "64", "--tta", "no", "--gpu", "cpu")  # the tiny checkpoint needs multiples of 32


def _segment(ckpt, *extra: str, star: str = "Tomograms/job007/tomograms.star") -> int:
    """The job in this process (no --j: torch's thread count is global and would outlive the job)."""
    return segment_job.main(["--o", f"{JOB}/", "--in_mics", star, "--model", str(ckpt), *FAST, *extra])


def _exit_files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("RELION_JOB_EXIT_*")}


def _summary() -> dict[str, tuple[str, str]]:
    """The job folder's summary.csv: {tomogram file name: (status, reason)}."""
    with open(Path(JOB, "summary.csv"), newline="") as f:
        return {Path(row["tomogram"]).name: (row["status"], row["reason"]) for row in csv.DictReader(f)}


def _claims() -> list[str]:
    folder = Path(JOB, "claims")
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def tomograms(project, tomogram_files, tomogram_set):
    paths = tomogram_files([f"Tomograms/job007/tomograms/rec_TS_0{i}.mrc" for i in (1, 2, 3)])
    tomogram_set("Tomograms/job007/tomograms.star", paths)
    return paths


def test_a_relion5_tomogram_set_is_segmented_with_the_star_voxel_size(tomograms, membrain_tiny_ckpt, capsys):
    assert _segment(membrain_tiny_ckpt, "--components", "yes", "--preview", "no") == 0
    job = Path(JOB)
    assert _exit_files(job) == {"RELION_JOB_EXIT_SUCCESS"}
    masks = [job / "tomograms" / f"rec_TS_0{i}_seg.mrc" for i in (1, 2, 3)]
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, tta=False), "cpu")
    expected = segment_file(tomograms[0], "expected", predictor, voxel_size=VOXEL_SIZE,
                            outputs=OutputOptions(preview=False))
    for mask in masks:
        volume = read_volume(mask)
        assert volume.voxel_size == pytest.approx((VOXEL_SIZE,) * 3)  # the STAR's 2.5 Å × bin 4, not the header's 7
        assert volume.data.dtype == np.int8 and set(np.unique(volume.data)) <= {0, 1}
        assert (mask.parent / mask.name.replace("_seg", "_components")).is_file()
    np.testing.assert_array_equal(read_volume(masks[0]).data, read_volume(expected.outputs["mask"]).data)

    table = starfile.read(job / "tomograms.star", parse_as_string=["rlnTomoName"])
    source = starfile.read("Tomograms/job007/tomograms.star", parse_as_string=["rlnTomoName"])
    assert list(table.columns) == [*source.columns, "rlnTomoMembraneSegmentation", "rlnTomoMembraneComponents"]
    assert table["rlnTomoMembraneSegmentation"].tolist() == [str(m) for m in masks]
    nodes = starfile.read(job / NODES_FILE, always_dict=True)["output_nodes"]
    assert nodes["rlnPipeLineNodeName"].tolist() == [f"{JOB}/tomograms.star", *map(str, masks)]
    assert nodes["rlnPipeLineNodeType"].tolist() == [1, 7, 7, 7]
    assert nodes["rlnPipeLineNodeTypeLabel"].tolist()[0].startswith("TomogramGroupMetadata.star")
    out = capsys.readouterr().out
    assert "3 tomogram(s)" in out and "[3/3] TS_03" in out and out.count("membrane ") >= 3


def test_an_abort_stops_between_tomograms_and_continuing_does_the_rest(tomograms, membrain_tiny_ckpt, monkeypatch,
                                                                        capsys):
    import bilayer.infer.segmentation as segmentation  # the job segments each checked tomogram through it

    original = segmentation.segment_planned
    calls = []

    def segment_then_abort(plan, *args, **kwargs):
        calls.append(plan.source.name)
        report = original(plan, *args, **kwargs)
        (Path(JOB) / ABORT_FILE).touch()  # the user presses abort during the first tomogram
        return report

    monkeypatch.setattr(segmentation, "segment_planned", segment_then_abort)
    assert _segment(membrain_tiny_ckpt) == EXIT_ABORTED
    job = Path(JOB)
    assert _exit_files(job) == {"RELION_JOB_EXIT_ABORTED"} and not (job / ABORT_FILE).exists()
    assert calls == ["rec_TS_01.mrc"] and not (job / NODES_FILE).exists()
    first = job / "tomograms" / "rec_TS_01_seg.mrc"
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr(segmentation, "segment_planned", original)
    capsys.readouterr()
    assert _segment(membrain_tiny_ckpt) == 0
    assert _exit_files(job) == {"RELION_JOB_EXIT_SUCCESS"} and first.stat().st_mtime_ns == stamp
    out = capsys.readouterr().out
    assert "1 finished before, 2 to do" in out and "TS_01:" not in out.split("to do")[1]


#: The job in its own process, signalling itself while the second tomogram's mask is being written
#: (after its first window batch), so the signal lands at the same point on a fast or a loaded machine.
_DIES_DURING_SECOND_TOMOGRAM = """
import os, signal, sys
import bilayer.infer.segmentation as segmentation
from bilayer_relion.segment_job import main

original, sources = segmentation.segment_planned, []

def segment_planned(plan, predictor, outputs, **options):
    sources.append(plan.source)
    if len(sources) == 2:
        options["progress"] = lambda done, total: os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    return original(plan, predictor, outputs, **options)

segmentation.segment_planned = segment_planned
sys.exit(main(sys.argv[2:]))
"""


def _job_args(ckpt) -> list[str]:
    return ["--o", JOB, "--in_mics", "Tomograms/job007/tomograms.star", "--model", str(ckpt), "--window", "64",
            "--tta", "no", "--gpu", "cpu"]


def _outputs(i: int) -> list[Path]:
    return [Path(JOB, "tomograms", f"rec_TS_0{i}{suffix}") for suffix in ("_seg.mrc", "_preview.png")]


def test_a_killed_run_is_continued_without_redoing_finished_tomograms(tomograms, membrain_tiny_ckpt, job_program):
    killed = subprocess.run([sys.executable, "-c", _DIES_DURING_SECOND_TOMOGRAM, "SIGKILL",
                             *_job_args(membrain_tiny_ckpt)], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # as a crash or a lost node: no cleanup at all
    assert not _exit_files(Path(JOB))
    assert all(p.exists() for p in _outputs(1)) and not any(p.exists() for p in _outputs(2) + _outputs(3))
    stamps = {p: p.stat().st_mtime_ns for p in _outputs(1)}
    rerun = subprocess.run([str(job_program("bilayer-relion-segment")), *_job_args(membrain_tiny_ckpt)],
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert _exit_files(Path(JOB)) == {"RELION_JOB_EXIT_SUCCESS"}
    assert all(p.exists() for i in (1, 2, 3) for p in _outputs(i))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert "1 finished before, 2 to do" in rerun.stdout and "[1/2] TS_02" in rerun.stdout


def test_sigterm_ends_a_running_job_aborted_and_leaves_no_partial_output(tomograms, membrain_tiny_ckpt):
    stopped = subprocess.run([sys.executable, "-c", _DIES_DURING_SECOND_TOMOGRAM, "SIGTERM",
                              *_job_args(membrain_tiny_ckpt)], capture_output=True, text=True, timeout=600)
    assert stopped.returncode == EXIT_ABORTED, stopped.stderr
    assert _exit_files(Path(JOB)) == {"RELION_JOB_EXIT_ABORTED"}
    assert "aborted (stopped by signal SIGTERM)" in stopped.stdout
    assert all(p.exists() for p in _outputs(1))
    assert sorted(p.name for p in Path(JOB, "tomograms").iterdir()) == sorted(p.name for p in _outputs(1))


def test_a_truncated_tomogram_fails_the_job_before_any_work(tomograms, membrain_tiny_ckpt, capsys):
    data = tomograms[1].read_bytes()
    tomograms[1].write_bytes(data[:-1000])
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == EXIT_USAGE
    job = Path(JOB)
    assert _exit_files(job) == {"RELION_JOB_EXIT_FAILURE"} and not (job / NODES_FILE).exists()
    assert not (job / "tomograms").exists() or not list((job / "tomograms").iterdir())
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "rec_TS_02.mrc is truncated" in err
    tomograms[1].write_bytes(data)  # the user fixes the file and continues the job
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == 0
    assert len(list((job / "tomograms").glob("*_seg.mrc"))) == 3


def test_a_tomogram_failing_during_the_work_fails_the_job_after_the_others_are_done(tomograms, membrain_tiny_ckpt,
                                                                                     capsys):
    import mrcfile

    with mrcfile.open(tomograms[1], mode="r+") as m:
        m.data[...] = 3  # constant: found when its intensities are standardised
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == EXIT_USAGE
    job = Path(JOB)
    assert _exit_files(job) == {"RELION_JOB_EXIT_FAILURE"} and not (job / NODES_FILE).exists()
    assert sorted(p.name for p in (job / "tomograms").iterdir()) == ["rec_TS_01_seg.mrc", "rec_TS_03_seg.mrc"]
    err = capsys.readouterr().err
    assert "TS_02:" in err and "same value everywhere" in err and "1 of 3 tomogram(s) failed (TS_02" in err
    rows = _summary()
    assert {name: status for name, (status, _) in rows.items()} == {"rec_TS_01.mrc": "done", "rec_TS_02.mrc": "failed",
                                                                    "rec_TS_03.mrc": "done"}
    assert "same value everywhere" in rows["rec_TS_02.mrc"][1] and (job / "bilayer_run.json").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in (job / "tomograms").iterdir()}
    with mrcfile.open(tomograms[1], mode="r+") as m:  # the user fixes it and continues: the failed one is retried
        m.data[...] = read_volume(tomograms[0]).data
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == 0
    out = capsys.readouterr().out
    assert "2 finished before, 1 to do" in out and "[1/1] TS_02" in out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert {status for status, _ in _summary().values()} == {"done"} and len(_summary()) == 3


@pytest.mark.parametrize("damage, message", [
    ("drop binning", "tomograms.star has no rlnTomoTomogramBinning column"),
    ("missing file", "names 1 tomogram file(s) that do not exist: Tomograms/job007/tomograms/rec_TS_02.mrc"),
])
def test_a_bad_star_file_fails_with_a_clear_message_and_no_outputs(tomograms, tomogram_set, membrain_tiny_ckpt, capsys,
                                                                  damage, message):
    if damage == "drop binning":
        tomogram_set("Tomograms/job007/tomograms.star", tomograms, drop=("rlnTomoTomogramBinning",))
    else:
        tomograms[1].unlink()
    assert _segment(membrain_tiny_ckpt) == EXIT_USAGE
    assert _exit_files(Path(JOB)) == {"RELION_JOB_EXIT_FAILURE"}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not Path(JOB, "tomograms").exists()


@pytest.mark.parametrize(("shape", "option", "field", "given", "other"), [
    # 40 sections are thinner than the 64-voxel window, so the padding shows
    ((40, 64, 64), ("--padding", "zeros"), "padding", "zeros", "reflect"),
    # 40×70×70 is four 64³ windows, or one 96³ window with fewer voxels: fit_window decides
    ((40, 70, 70), ("--fit_window", "no"), "fit_window", False, True),
])
def test_an_option_reaches_the_engine(project, tomogram_files, tomogram_set, membrain_tiny_ckpt, shape, option,
                                      field, given, other):
    """The job's scores are the engine's with the option's value, and differ from another value's."""
    tomograms = tomogram_files(["Tomograms/job007/tomograms/rec_TS_01.mrc"], shape=shape)
    tomogram_set("Tomograms/job007/tomograms.star", tomograms)
    assert _segment(membrain_tiny_ckpt, "--preview", "no", "--scores", "yes", *option) == 0
    scores = read_volume(Path(JOB, "tomograms", "rec_TS_01_scores.mrc")).data
    for value, same in ((given, True), (other, False)):
        config = InferenceConfig(window=64, tta=False, **{field: value})
        predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, config, "cpu")
        expected = segment_file(tomograms[0], f"expected_{value}", predictor, voxel_size=VOXEL_SIZE,
                                outputs=OutputOptions(preview=False, scores=True))
        close = np.allclose(scores, read_volume(expected.outputs["scores"]).data, atol=1e-6)
        assert close is same, value


def test_continuing_with_other_settings_is_refused(tomograms, membrain_tiny_ckpt, capsys):
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == 0
    assert _segment(membrain_tiny_ckpt, "--preview", "no", "--threshold", "0.5") == EXIT_USAGE
    err = capsys.readouterr().err
    assert "holds results made with other settings (threshold" in err and "run a new job" in err


def test_a_micrograph_list_writes_outputs_below_the_job_without_the_source_job_folder(
        project, tomogram_files, micrograph_list, membrain_tiny_ckpt):
    paths = tomogram_files(["Import/job001/tomos/a.mrc", "../elsewhere/b.mrc"])
    micrograph_list("Import/job001/micrographs.star", paths)
    assert _segment(membrain_tiny_ckpt, "--preview", "no", star="Import/job001/micrographs.star") == 0
    table = starfile.read(Path(JOB, "micrographs.star"), always_dict=True)
    assert table["micrographs"]["rlnTomoMembraneSegmentation"].tolist() == [f"{JOB}/tomos/a_seg.mrc",
                                                                            f"{JOB}/elsewhere/b_seg.mrc"]
    assert "optics" in table
    nodes = starfile.read(Path(JOB, NODES_FILE), always_dict=True)["output_nodes"]
    assert nodes["rlnPipeLineNodeTypeLabel"].tolist()[0].startswith("MicrographGroupMetadata.star")


def test_the_program_runs_as_a_module_too(tomograms, membrain_tiny_ckpt):
    result = subprocess.run([sys.executable, "-m", "bilayer_relion.segment_job", "--o", JOB, "--in_mics",
                             "Tomograms/job007/tomograms.star", "--model", str(membrain_tiny_ckpt), *FAST,
                             "--window", "48"], capture_output=True, text=True, timeout=300, env=os.environ)
    assert result.returncode == EXIT_USAGE and "window=48 must be a multiple of 32" in result.stderr
    assert _exit_files(Path(JOB)) == {"RELION_JOB_EXIT_FAILURE"}


def test_every_engine_option_is_a_job_parameter_and_arrives(tmp_path):
    from bilayer.infer.config import SegmentOptions
    from bilayer_relion.segment_job import build_parser, job_options

    parser = build_parser()
    params = {action.dest for action in parser._actions}
    missing = [name for name in SegmentOptions.names() if name not in params and name != "device"]
    assert not missing and "gpu" in params, f"engine options without a job parameter: {missing}"
    argv = ["--o", "External/job001", "--model", "m.ckpt", "--gpu", "1", "--voxel_size", "12.5", "--window", "96",
            "--fit_window", "no", "--overlap", "0.25", "--tta", "no", "--tta_grid", "window", "--batch_size", "3",
            "--precision", "float32", "--threshold", "0.7", "--rescale", "no", "--rescale_like_membrain", "yes",
            "--padding", "zeros", "--scores", "yes", "--components", "yes", "--min_size", "7", "--skeleton", "yes",
            "--preview", "no", "--smooth_uncertainty", "no", "--extra_thresholds", "0.5, 1.5"]
    got = job_options(parser.parse_args(argv)).to_dict()
    defaults = SegmentOptions().to_dict()
    assert got["extra_thresholds"] == [0.5, 1.5]  # the text is the engine's to read
    unsettable = {"uncertainty"}  # needs TTA, which these parameters turn off: checked on its own below
    assert all(got[name] != defaults[name] for name in SegmentOptions.names() if name not in unsettable), got
    assert job_options(parser.parse_args(["--o", "x", "--uncertainty", "yes"])).outputs.uncertainty is True
    assert got["device"] == "cuda:1"
    settings = tmp_path / "s.json"
    settings.write_text('{"window": 128, "threshold": 0.3}')
    got = job_options(parser.parse_args(["--o", "x", "--settings", str(settings), "--threshold", "0.9"]))
    assert got.inference.window == 128 and got.inference.threshold == 0.9


def test_uncertainty_and_extra_thresholds_are_written_and_the_masks_are_nodes(project, tomogram_files, tomogram_set,
                                                                              membrain_tiny_ckpt, capsys):
    tomograms = tomogram_files(["Tomograms/job007/tomograms/rec_TS_01.mrc"], shape=(40, 64, 64))
    tomogram_set("Tomograms/job007/tomograms.star", tomograms)
    assert _segment(membrain_tiny_ckpt, "--tta", "yes", "--uncertainty", "yes", "--extra_thresholds", "1.5,-0.5",
                    "--scores", "yes", "--preview", "no") == 0
    folder = Path(JOB, "tomograms")
    assert sorted(p.name for p in folder.iterdir()) == ["rec_TS_01_scores.mrc", "rec_TS_01_seg.mrc",
                                                        "rec_TS_01_seg_t-0.5.mrc", "rec_TS_01_seg_t1.5.mrc",
                                                        "rec_TS_01_uncertainty.mrc"]
    scores = read_volume(folder / "rec_TS_01_scores.mrc").data
    for t in (1.5, -0.5):
        np.testing.assert_array_equal(read_volume(folder / f"rec_TS_01_seg_t{t:g}.mrc").data, scores > t)
    uncertainty = read_volume(folder / "rec_TS_01_uncertainty.mrc")
    assert uncertainty.voxel_size == pytest.approx((VOXEL_SIZE,) * 3) and uncertainty.data.dtype == np.float32
    nodes = starfile.read(Path(JOB, NODES_FILE), always_dict=True)["output_nodes"]
    assert nodes["rlnPipeLineNodeName"].tolist() == [f"{JOB}/tomograms.star", f"{folder}/rec_TS_01_seg.mrc",
                                                     f"{folder}/rec_TS_01_seg_t1.5.mrc",
                                                     f"{folder}/rec_TS_01_seg_t-0.5.mrc"]
    assert nodes["rlnPipeLineNodeType"].tolist() == [1, 7, 7, 7]
    table = starfile.read(Path(JOB, "tomograms.star"), parse_as_string=["rlnTomoName"])
    assert table["rlnTomoMembraneUncertainty"].tolist() == [str(folder / "rec_TS_01_uncertainty.mrc")]
    assert _segment(membrain_tiny_ckpt, "--tta", "no", "--uncertainty", "yes", "--preview", "no") == EXIT_USAGE
    assert "turn test-time augmentation (tta) on, or uncertainty off" in capsys.readouterr().err
    assert _exit_files(Path(JOB)) == {"RELION_JOB_EXIT_FAILURE"}


def test_an_abort_during_a_tomogram_stops_the_job_without_recording_it_failed(tomograms, membrain_tiny_ckpt,
                                                                               monkeypatch, capsys):
    from bilayer.infer import segmentation

    original = segmentation.segment_planned

    def abort_in_second(plan, predictor, outputs, **options):
        if plan.source.name == "rec_TS_02.mrc":
            given = options["progress"]

            def progress(done, total):  # the user presses abort while its windows are predicted
                (Path(JOB) / ABORT_FILE).touch()
                given(done, total)

            options["progress"] = progress
        return original(plan, predictor, outputs, **options)

    monkeypatch.setattr(segmentation, "segment_planned", abort_in_second)
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == EXIT_ABORTED
    job = Path(JOB)
    assert _exit_files(job) == {"RELION_JOB_EXIT_ABORTED"} and not (job / ABORT_FILE).exists()
    assert "RELION_JOB_ABORT_NOW found" in capsys.readouterr().out
    assert _summary() == {"rec_TS_01.mrc": ("done", "")} and _claims() == []  # not failed, and no claim left
    assert sorted(p.name for p in (job / "tomograms").iterdir()) == ["rec_TS_01_seg.mrc"]
    monkeypatch.setattr(segmentation, "segment_planned", original)
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == 0
    assert "1 finished before, 2 to do" in capsys.readouterr().out
    assert {status for status, _ in _summary().values()} == {"done"} and len(_summary()) == 3


def test_a_tomogram_another_run_of_the_job_holds_is_left_to_it(tomograms, membrain_tiny_ckpt, capsys):
    from bilayer.batch.claims import try_claim
    from bilayer.batch.records import tomogram_key

    claim = try_claim(JOB, tomogram_key(tomograms[1]))  # a second run of the job, segmenting TS_02 now
    with claim:
        assert _segment(membrain_tiny_ckpt, "--preview", "no") == EXIT_USAGE
    captured = capsys.readouterr()
    assert "TS_02: another run of this job is segmenting it" in captured.out
    assert "1 tomogram(s) (TS_02) are being segmented by another run of this job" in captured.err
    assert _exit_files(Path(JOB)) == {"RELION_JOB_EXIT_FAILURE"}
    assert sorted(_summary()) == ["rec_TS_01.mrc", "rec_TS_03.mrc"]
    assert not Path(JOB, "tomograms", "rec_TS_02_seg.mrc").exists()
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == 0  # that run ended without it: continuing does it
    assert "2 finished before, 1 to do" in capsys.readouterr().out and len(_summary()) == 3


def test_a_job_folder_of_an_earlier_bilayer_is_segmented_again_and_recorded(tomograms, membrain_tiny_ckpt, capsys):
    folder = Path(JOB, "tomograms")
    folder.mkdir(parents=True)
    old = folder / "rec_TS_01_seg.mrc"
    old.write_bytes(b"made by an earlier Bilayer")
    Path(JOB, segment_job.OLD_SETTINGS_FILE).write_text('{"threshold": 0.0}\n')
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == 0
    out = capsys.readouterr().out
    assert "made by an earlier Bilayer" in out and "0 finished before, 3 to do" in out
    assert read_volume(old).data.shape == read_volume(tomograms[0]).data.shape  # replaced by a mask
    assert not Path(JOB, segment_job.OLD_SETTINGS_FILE).exists() and Path(JOB, "bilayer_run.json").is_file()
    assert {status for status, _ in _summary().values()} == {"done"} and len(_summary()) == 3
    assert _segment(membrain_tiny_ckpt, "--preview", "no") == 0
    assert "3 finished before, 0 to do" in capsys.readouterr().out


def test_several_gpus_run_one_worker_each_and_an_abort_stops_them(tomograms, membrain_tiny_ckpt, monkeypatch,
                                                                  capsys):
    """--gpu 0,1 becomes two worker processes (here both on the CPU); the abort file, created as they
    start, stops them through the parent, and continuing finishes the job with the workers."""
    from bilayer.batch import workers

    monkeypatch.setattr(segment_job, "gpu_devices", lambda text: ["cpu", "cpu"] if text == "0,1" else ["cpu"])
    original = workers.run_workers

    def abort_as_they_start(*args, on_start, **kwargs):
        def started(report, to_do):
            on_start(report, to_do)
            (Path(JOB) / ABORT_FILE).touch()

        return original(*args, on_start=started, **kwargs)

    monkeypatch.setattr(workers, "run_workers", abort_as_they_start)
    job = Path(JOB)
    assert _segment(membrain_tiny_ckpt, "--preview", "no", "--gpu", "0,1") == EXIT_ABORTED
    assert _exit_files(job) == {"RELION_JOB_EXIT_ABORTED"} and not (job / ABORT_FILE).exists()
    captured = capsys.readouterr()
    assert "one worker per device: cpu, cpu" in captured.out and "RELION_JOB_ABORT_NOW found" in captured.out
    assert all(status == "done" for status, _ in _summary().values()) and _claims() == []
    assert all(t.name != "abort watch" for t in threading.enumerate())
    monkeypatch.setattr(workers, "run_workers", original)
    assert _segment(membrain_tiny_ckpt, "--preview", "no", "--gpu", "0,1") == 0
    out = capsys.readouterr().out
    assert "worker 1 (cpu)" in out or "worker 2 (cpu)" in out
    assert {status for status, _ in _summary().values()} == {"done"} and len(_summary()) == 3
    masks = sorted(p.name for p in (job / "tomograms").iterdir())
    assert masks == [f"rec_TS_0{i}_seg.mrc" for i in (1, 2, 3)]
