"""bilayer-relion-preprocess run directly, as RELION runs it: each step's outputs equal the engine's own,
the STAR file written back names them (with the new voxel size after a rescale) so a segmentation job
can take it, continued jobs skip finished tomograms, and bad inputs fail before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile

from bilayer.io import read_volume
from bilayer.preprocess.deconvolve import DeconvolutionOptions, deconvolve_file
from bilayer.preprocess.steps import PreprocessOptions
from bilayer_relion import preprocess_job
from bilayer_relion._job import EXIT_USAGE, NODES_FILE
from bilayer_relion.star import read_tomogram_list

JOB = "External/job013"
VOXEL_SIZE = 10.0  # what the STAR files of tests/relion/conftest.py say (the headers say 7)
STAR = "Tomograms/job007/tomograms.star"


def _run(*params: str, star: str = STAR) -> int:
    return preprocess_job.main(["--o", f"{JOB}/", "--in_mics", star, *params])


def _exit_files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("RELION_JOB_EXIT_*")}


@pytest.fixture
def tomograms(project, tomogram_files, tomogram_set):
    paths = tomogram_files([f"Tomograms/job007/tomograms/rec_TS_0{i}.mrc" for i in (1, 2)], shape=(32, 40, 48))
    tomogram_set(STAR, paths)
    return paths


def test_deconvolution_of_a_tomogram_set_at_the_star_voxel_size(tomograms, tmp_path):
    assert _run("--step", "deconvolve", "--defocus", "30000", "--strength", "0.5") == 0
    job = Path(JOB)
    assert _exit_files(job) == {"RELION_JOB_EXIT_SUCCESS"}
    outputs = [job / "tomograms" / f"rec_TS_0{i}_deconv.mrc" for i in (1, 2)]
    options = DeconvolutionOptions(defocus=30000, strength=0.5)
    for source, output in zip(tomograms, outputs):
        expected = deconvolve_file(source, tmp_path / f"{source.stem}.mrc", options, voxel_size=VOXEL_SIZE)
        written = read_volume(output)
        np.testing.assert_array_equal(written.data, read_volume(expected).data)
        assert written.voxel_size == pytest.approx((VOXEL_SIZE,) * 3)  # the STAR's, not the header's 7 Å
    table = starfile.read(job / "tomograms.star", parse_as_string=["rlnTomoName"])
    source = starfile.read(STAR, parse_as_string=["rlnTomoName"])
    assert list(table.columns) == list(source.columns)
    assert table["rlnTomoReconstructedTomogram"].tolist() == [str(p) for p in outputs]
    assert table["rlnTomoTomogramBinning"].tolist() == source["rlnTomoTomogramBinning"].tolist()
    nodes = starfile.read(job / NODES_FILE)
    assert nodes["rlnPipeLineNodeName"].tolist() == [str(job / "tomograms.star")]


def test_a_rescaled_set_carries_its_new_voxel_size_to_the_next_job(tomograms):
    assert _run("--step", "rescale", "--target_voxel_size", "16", "--smooth_edge", "no") == 0
    listed = read_tomogram_list(Path(JOB) / "tomograms.star")
    assert [t.voxel_size for t in listed.tomograms] == pytest.approx([16.0, 16.0])
    for tomo in listed.tomograms:
        written = read_volume(tomo.path)
        assert written.voxel_size == pytest.approx((16.0,) * 3)
        assert written.shape == (20, 26, 30)  # 10/16 of (32, 40, 48), rounded as MemBrain-seg rounds
    assert read_tomogram_list(STAR).tomograms[0].voxel_size == VOXEL_SIZE  # the input is untouched


def test_a_micrograph_list_gets_the_new_pixel_size_in_its_rows(project, tomogram_files, micrograph_list):
    micrograph_list("Import/job001/micrographs.star", tomogram_files(["Import/job001/tomos/TS_01.mrc"],
                                                                    shape=(32, 40, 48)))
    assert _run("--step", "rescale", "--target_voxel_size", "20", "--smooth_edge", "no",
                star="Import/job001/micrographs.star") == 0
    listed = read_tomogram_list(Path(JOB) / "micrographs.star")
    assert listed.tomograms[0].voxel_size == 20.0
    assert listed.tomograms[0].path == Path(JOB) / "tomos" / "TS_01_rescaled.mrc"


def test_continuing_skips_finished_tomograms_and_refuses_other_settings(tomograms, capsys):
    assert _run("--step", "deconvolve") == 0
    first = Path(JOB, "tomograms", "rec_TS_01_deconv.mrc")
    stamp = first.stat().st_mtime_ns
    first.with_name("rec_TS_02_deconv.mrc").unlink()
    capsys.readouterr()
    assert _run("--step", "deconvolve") == 0
    assert "1 finished before, 1 to do" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == stamp
    assert _run("--step", "deconvolve", "--defocus", "20000") == EXIT_USAGE
    assert "made with other settings (defocus" in capsys.readouterr().err
    assert _exit_files(Path(JOB)) == {"RELION_JOB_EXIT_FAILURE"}


@pytest.mark.parametrize("params, message", [
    ((), "choose the preprocessing step"),
    (("--step", "rescale", "--target_voxel_size", "0.5"), "target_voxel_size=0.5 is out of range"),
    (("--step", "rescale", "--target_voxel_size", "16"), "the smooth edge needs more than 25 voxels"),
    (("--step", "match-spectrum", "--target_spectrum", "none.tsv"), "none.tsv"),
    (("--step", "deconvolve", "--defocus", "-3"), "defocus=-3.0"),
])
def test_bad_settings_fail_the_job_in_one_line_before_any_work(tomograms, capsys, params, message):
    assert _run(*params) == EXIT_USAGE
    err = capsys.readouterr().err
    lines = err.strip().splitlines()  # one line per problem: here the same for both tomograms, or one for the job
    assert lines and all(message in line for line in lines) and len(lines) <= 2, err
    assert _exit_files(Path(JOB)) == {"RELION_JOB_EXIT_FAILURE"}
    assert not list(Path(JOB).rglob("*.mrc"))


def test_a_broken_tomogram_fails_the_job_before_the_others_are_done(tomograms, capsys):
    data = tomograms[1].read_bytes()
    tomograms[1].write_bytes(data[: len(data) // 2])
    assert _run("--step", "deconvolve") == EXIT_USAGE
    assert "rec_TS_02.mrc" in capsys.readouterr().err
    assert not list(Path(JOB).rglob("*.mrc"))


def test_every_engine_option_is_a_job_parameter_and_arrives(tmp_path):
    parser = preprocess_job.build_parser()
    params = {action.dest for action in parser._actions}
    assert not [name for name in PreprocessOptions.names() if name not in params]
    spectrum = tmp_path / "s.tsv"
    argv = ["--o", "x", "--step", "match-spectrum", "--voxel_size", "12.5", "--target_voxel_size", "8",
            "--smooth_edge", "no", "--target_spectrum", str(spectrum), "--cutoff", "30", "--smoothen", "4",
            "--almost_zero_cutoff", "no", "--shrink_excessive_value", "20", "--defocus", "30000",
            "--amplitude_contrast", "0.1", "--cs", "2.0", "--voltage", "200", "--strength", "0.5", "--falloff", "2",
            "--highpass_fraction", "0.05", "--lowpass", "no", "--phase_flip", "yes", "--frequencies", "physical"]
    got = preprocess_job.job_options(parser.parse_args(argv)).to_dict()
    defaults = PreprocessOptions(step="rescale", target_voxel_size=10.0).to_dict()
    assert [name for name in PreprocessOptions.names() if got[name] == defaults[name]] == []
    settings = tmp_path / "p.json"
    settings.write_text('{"step": "deconvolve", "defocus": 40000}')
    got = preprocess_job.job_options(parser.parse_args(["--o", "x", "--settings", str(settings), "--cs", "1"]))
    assert (got.deconvolution.defocus, got.deconvolution.cs) == (40000.0, 1.0)
