"""The jobs inside the real RELION: ``relion_pipeliner`` (RELION 3.1.3, ``apt-get install relion``)
adds them as External jobs to a project's default pipeline, runs them, and records their outputs.

They are skipped only where ``relion_pipeliner`` is not installed; CI installs it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import starfile

from bilayer.io import read_volume
from bilayer.model import load_checkpoint

PIPELINER = shutil.which("relion_pipeliner")
pytestmark = pytest.mark.skipif(PIPELINER is None, reason="relion_pipeliner is not installed (RELION 3.1: "
                                                          "apt-get install relion); CI installs it")
SUCCESS, FAILURE = 2, 3  # RELION 3.1's process states (pipeline_jobs.h)
MICROGRAPHS, MASK, MODEL = 1, 7, 99  # node types: RELION's micrographs and 3D mask, and Bilayer's checkpoint


def _pipeliner(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([PIPELINER, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"relion_pipeliner {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _add_external_job(executable: Path, star: str, params: dict[str, str]) -> None:
    """``--addJob External``: RELION's job options as ``name == value``, separated by ';'."""
    options = [f"fn_exe == {executable}", f"in_mic == {star}", "nr_threads == 1"]
    for n, (label, value) in enumerate(params.items(), 1):
        options += [f"param{n}_label == {label}", f"param{n}_value == {value}"]
    _pipeliner("--addJob", "External", "--addJobOptions", ";".join(options))


def _run(job: str) -> None:
    _pipeliner("--RunJobs", job, "--sec_wait_after", "1")


def _pipeline() -> dict:
    return starfile.read("default_pipeline.star", always_dict=True,
                         parse_as_string=["rlnPipeLineProcessName", "rlnPipeLineNodeName"])


def _status(pipeline: dict, job: str) -> int:
    processes = pipeline["pipeline_processes"]
    return int(processes.loc[processes["rlnPipeLineProcessName"] == job, "rlnPipeLineProcessStatus"].iloc[0])


def _outputs(pipeline: dict, job: str) -> dict[str, int]:
    """The output nodes RELION recorded for ``job``, with their types."""
    edges = pipeline["pipeline_output_edges"]
    names = set(edges.loc[edges["rlnPipeLineEdgeProcess"] == job, "rlnPipeLineEdgeToNode"])
    nodes = pipeline["pipeline_nodes"]
    return {n: int(t) for n, t in zip(nodes["rlnPipeLineNodeName"], nodes["rlnPipeLineNodeType"]) if n in names}


@pytest.fixture
def relion_project(project, tomogram_files, micrograph_list):
    """A RELION 3.1 project: a default pipeline, and two tomograms listed micrograph-style."""
    Path("default_pipeline.star").write_text("\n# version 30001\n\ndata_pipeline_general\n\n"
                                             "_rlnPipeLineJobCounter                       1\n\n")
    micrograph_list("Import/job001/micrographs.star",
                    tomogram_files(["Import/job001/tomos/TS_01.mrc", "Import/job001/tomos/TS_02.mrc"]))
    return project


def test_segment_then_train_as_external_jobs_of_relion(relion_project, job_program, membrain_tiny_ckpt):
    _add_external_job(job_program("bilayer-relion-segment"), "Import/job001/micrographs.star",
                      {"model": str(membrain_tiny_ckpt), "window": "64", "tta": "no", "gpu": "cpu", "preview": "no"})
    _run("External/job001/")
    job = Path("External/job001")
    assert (job / "RELION_JOB_EXIT_SUCCESS").exists(), (job / "run.err").read_text()
    pipeline = _pipeline()
    assert _status(pipeline, "External/job001/") == SUCCESS
    masks = ["External/job001/tomos/TS_01_seg.mrc", "External/job001/tomos/TS_02_seg.mrc"]
    assert _outputs(pipeline, "External/job001/") == {"External/job001/micrographs.star": MICROGRAPHS,
                                                      **{m: MASK for m in masks}}
    assert Path(".Nodes", str(MASK), masks[0]).exists()  # RELION registered the mask for display
    for mask in masks:  # the STAR file's 10 Å, not the headers' 7 Å
        assert read_volume(mask).voxel_size == pytest.approx((10.0,) * 3)
    log = (job / "run.out").read_text()
    assert "[2/2] TS_02" in log and "done; 3 output node(s)" in log

    settings = Path("tiny.yaml")
    settings.write_text("network:\n  filters: [8, 16, 32, 64]\n  strides: [1, 2, 2, 2]\npatch_size: 32\n"
                        "num_workers: 0\nprecision: float32\ncompile: false\nsteps_per_epoch: 1\n")
    _add_external_job(job_program("bilayer-relion-train"), "External/job001/micrographs.star",
                      {"config": str(settings.resolve()), "epochs": "1", "gpu": "cpu"})
    _run("External/job002/")
    assert Path("External/job002/RELION_JOB_EXIT_SUCCESS").exists(), Path("External/job002/run.err").read_text()
    pipeline = _pipeline()
    assert _status(pipeline, "External/job002/") == SUCCESS
    assert _outputs(pipeline, "External/job002/") == {"External/job002/training/best.bilayer.pt": MODEL}
    edges = pipeline["pipeline_input_edges"]
    assert ("External/job001/micrographs.star", "External/job002/") in set(
        zip(edges["rlnPipeLineEdgeFromNode"], edges["rlnPipeLineEdgeProcess"]))
    assert load_checkpoint("External/job002/training/best.bilayer.pt").info.voxel_size == pytest.approx(10.0)


def test_a_bad_star_file_ends_the_relion_job_failed_with_the_reason_in_its_log(relion_project, job_program,
                                                                               membrain_tiny_ckpt):
    Path("Import/job001/tomos/TS_02.mrc").unlink()
    _add_external_job(job_program("bilayer-relion-segment"), "Import/job001/micrographs.star",
                      {"model": str(membrain_tiny_ckpt), "window": "64"})
    _run("External/job001/")
    job = Path("External/job001")
    assert (job / "RELION_JOB_EXIT_FAILURE").exists() and not (job / "RELION_JOB_EXIT_SUCCESS").exists()
    assert _status(_pipeline(), "External/job001/") == FAILURE
    err = (job / "run.err").read_text()
    assert "names 1 tomogram file(s) that do not exist: Import/job001/tomos/TS_02.mrc" in err
    assert err.count("\n") == 1


def test_preprocess_then_segment_as_external_jobs_of_relion(relion_project, job_program, membrain_tiny_ckpt):
    """Tomograms STAR in, tomograms STAR out: a rescale job's list feeds a segmentation job, which
    segments the rescaled tomograms at their new voxel size."""
    _add_external_job(job_program("bilayer-relion-preprocess"), "Import/job001/micrographs.star",
                      {"step": "rescale", "target_voxel_size": "12", "smooth_edge": "no"})
    _run("External/job001/")
    job = Path("External/job001")
    assert (job / "RELION_JOB_EXIT_SUCCESS").exists(), (job / "run.err").read_text()
    pipeline = _pipeline()
    assert _status(pipeline, "External/job001/") == SUCCESS
    assert _outputs(pipeline, "External/job001/") == {"External/job001/micrographs.star": MICROGRAPHS}
    rescaled = "External/job001/tomos/TS_01_rescaled.mrc"
    assert read_volume(rescaled).voxel_size == pytest.approx((12.0,) * 3)

    _add_external_job(job_program("bilayer-relion-segment"), "External/job001/micrographs.star",
                      {"model": str(membrain_tiny_ckpt), "window": "64", "tta": "no", "gpu": "cpu", "preview": "no"})
    _run("External/job002/")
    assert Path("External/job002/RELION_JOB_EXIT_SUCCESS").exists(), Path("External/job002/run.err").read_text()
    mask = read_volume("External/job002/tomos/TS_01_rescaled_seg.mrc")
    assert mask.voxel_size == pytest.approx((12.0,) * 3) and mask.shape == read_volume(rescaled).shape
    edges = _pipeline()["pipeline_input_edges"]
    assert ("External/job001/micrographs.star", "External/job002/") in set(
        zip(edges["rlnPipeLineEdgeFromNode"], edges["rlnPipeLineEdgeProcess"]))


def test_surfaces_of_a_segmentation_jobs_list_as_an_external_job_of_relion(project, job_program, rng):
    """A segmentation job's micrograph list (written here as that job writes it: a tomogram and its mask
    with a flat bilayer whose leaflets are 40 Å apart) in, the surfaces job's list out; RELION records it."""
    import numpy as np
    from bilayer.io import write_volume

    Path("default_pipeline.star").write_text("\n# version 30001\n\ndata_pipeline_general\n\n"
                                             "_rlnPipeLineJobCounter                       1\n\n")
    z = np.arange(30, dtype=np.float64)[:, None, None] - 12.0  # voxels from the sheet's middle
    mask = np.broadcast_to(np.abs(z) <= 2, (30, 48, 48)).astype(np.int8)
    density = -(np.exp(-((z - 2) ** 2) / 0.72) + np.exp(-((z + 2) ** 2) / 0.72)) + rng.normal(0, 0.1, mask.shape)
    Path("Import/job001/tomos").mkdir(parents=True)
    Path("External/job009/tomos").mkdir(parents=True)
    write_volume("Import/job001/tomos/TS_01.mrc", density.astype(np.float32), voxel_size=10.0)
    write_volume("External/job009/tomos/TS_01_seg.mrc", mask, voxel_size=10.0)
    segment_output = [
        "", "# version 30001", "", "data_optics", "", "loop_", "_rlnOpticsGroupName #1", "_rlnOpticsGroup #2",
        "_rlnMicrographPixelSize #3", "opticsGroup1 1 10.000000", "", "", "# version 30001", "", "data_micrographs",
        "", "loop_", "_rlnMicrographName #1", "_rlnOpticsGroup #2", "_rlnTomoMembraneSegmentation #3",
        "Import/job001/tomos/TS_01.mrc 1 External/job009/tomos/TS_01_seg.mrc", "", ""]
    Path("External/job009/micrographs.star").write_text("\n".join(segment_output))
    _add_external_job(job_program("bilayer-relion-surfaces"), "External/job009/micrographs.star",
                      {"spacing": "20", "format": "ply,obj"})
    _run("External/job001/")
    job = Path("External/job001")
    assert (job / "RELION_JOB_EXIT_SUCCESS").exists(), (job / "run.err").read_text()
    pipeline = _pipeline()
    assert _status(pipeline, "External/job001/") == SUCCESS
    assert _outputs(pipeline, "External/job001/") == {"External/job001/micrographs.star": MICROGRAPHS}
    table = starfile.read(job / "surfaces.star")
    assert table["label"].tolist() == [1] and not table["closed"].iloc[0]
    assert table["membrane_thickness_nm"].iloc[0] == pytest.approx(4.0, abs=0.5)
    assert Path(table["rlnTomoMembraneMesh"].iloc[0]) == job / "tomos" / "TS_01_seg_membrane1.ply"
    assert (job / "tomos" / "TS_01_seg_membrane1.ply").is_file() and (job / "tomos" / "TS_01_seg_membrane1.obj").is_file()
    listed = starfile.read(job / "micrographs.star", always_dict=True)["micrographs"]
    assert listed["rlnTomoMembraneSurfaces"].tolist() == [str(job / "tomos" / "TS_01_seg_surfaces.csv")]
    assert "[1/1] TS_01" in (job / "run.out").read_text()
