"""bilayer-relion-surfaces run directly, as RELION runs it, on a segmentation job's STAR file: a drawn
vesicle and sheet (tests/core/test_surfaces_api.py) give their area, thickness and place at the STAR
file's voxel size, one mesh per labelled membrane, a job table of every membrane and the STAR file
with each tomogram's table; continued jobs skip finished tomograms, aborts stop between tomograms,
failed tomograms are listed, and bad inputs fail in one line before any work."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from bilayer.errors import InputFileError
from bilayer.io import write_volume
from bilayer.io.tomogram_list import star_text
from bilayer.surfaces.mesh_io import read_mesh
from bilayer_relion import surfaces_job
from bilayer_relion._job import ABORT_FILE, EXIT_ABORTED, EXIT_USAGE, NODES_FILE

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.core.test_surfaces_api import CENTRE, LEAFLETS, RADIUS, SHEET, VOXEL, scene

JOB = Path("External/job014")
SEGMENT = Path("External/job012")
HEADER_VOXEL = 7.0  # what the MRC headers say; the STAR files say VOXEL (10 Å)
ORIGIN = (-300.0, 120.0, 40.0)  # Å, (z, y, x), in every header
CROP = slice(50, None)  # z rows of the scene holding the sheet alone (its band is z 58-62, the vesicle's ends at 49)


def _exit_files() -> set[str]:
    return {p.name for p in JOB.glob("RELION_JOB_EXIT_*")}


def _write_rows(rows: list[dict], star: Path, kind: str) -> Path:
    """A segmentation job's output STAR: a RELION 5 tomogram set or a RELION 3.1 micrograph list."""
    table = pd.DataFrame(rows)
    if kind == "set":
        blocks = {"global": table.assign(rlnTomoTiltSeriesPixelSize="2.500000",
                                         rlnTomoTomogramBinning=f"{VOXEL / 2.5:.6f}")}
    else:
        table = table.drop(columns="rlnTomoName").rename(columns={"rlnTomoReconstructedTomogram": "rlnMicrographName"})
        blocks = {"micrographs": table.assign(rlnMicrographPixelSize=f"{VOXEL:.6f}")}
    star.parent.mkdir(parents=True, exist_ok=True)
    star.write_text(star_text(blocks, "50001" if kind == "set" else "30001"))
    return star


def _segmented(rng, names: list[str], *, crop: bool = True, components: dict | None = None,
               kind: str = "set") -> Path:
    """Tomograms and their masks (the scene, or its sheet alone) where RELION's jobs put them, and the
    segmentation job's STAR file naming them; ``components``: name → {scene membrane: label}."""
    mask, density = scene(rng)
    if crop:
        mask, density = mask[CROP], density[CROP]
    rows = []
    for name in names:
        tomogram = Path(f"Tomograms/job007/tomograms/rec_{name}.mrc")
        seg = SEGMENT / "tomograms" / f"rec_{name}_seg.mrc"
        for path, data in ((tomogram, density), (seg, mask)):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_volume(path, data, voxel_size=HEADER_VOXEL, origin=ORIGIN)
        row = {"rlnTomoName": name, "rlnTomoReconstructedTomogram": str(tomogram),
               "rlnTomoMembraneSegmentation": str(seg)}
        if components is not None:
            labels = _labels(mask, components[name], crop)
            row["rlnTomoMembraneComponents"] = str(write_volume(seg.with_name(f"rec_{name}_components.mrc"), labels,
                                                                voxel_size=HEADER_VOXEL, origin=ORIGIN))
        rows.append(row)
    return _write_rows(rows, SEGMENT / ("tomograms.star" if kind == "set" else "micrographs.star"), kind)


def _labels(mask: np.ndarray, labels: dict[str, int], crop: bool) -> np.ndarray:
    """The mask's vesicle and sheet labelled as ``labels`` says (the sheet is the part at z >= 50 of the scene)."""
    z = np.arange(mask.shape[0])[:, None, None] + (CROP.start if crop else 0)
    sheet = np.broadcast_to(z >= CROP.start, mask.shape)
    out = np.zeros(mask.shape, np.uint16)
    out[(mask > 0) & sheet] = labels["sheet"]
    out[(mask > 0) & ~sheet] = labels.get("vesicle", 0)
    return out


def _run(star: Path, *params: str) -> int:
    return surfaces_job.main(["--o", f"{JOB}/", "--in_mics", str(star), *params])


def test_a_segmentation_jobs_tomogram_set_gives_meshes_measures_and_tables(project, rng):
    star = _segmented(rng, ["TS_01"], crop=False, components={"TS_01": {"vesicle": 5, "sheet": 9}})
    first = starfile.read(star, parse_as_string=["rlnTomoName"])
    _segmented(rng, ["TS_02"], components={"TS_02": {"sheet": 3}})  # a second row, the sheet alone
    two = pd.concat([first, starfile.read(star, parse_as_string=["rlnTomoName"])])
    star = _write_rows(two.astype(str).to_dict("records"), SEGMENT / "tomograms.star", "set")

    assert _run(star, "--spacing", "20", "--format", "ply,glb", "--j", "1") == 0
    assert _exit_files() == {"RELION_JOB_EXIT_SUCCESS"}
    folder = JOB / "tomograms"
    table = starfile.read(JOB / surfaces_job.TABLE_FILE, parse_as_string=["rlnTomoName"])
    assert table["rlnTomoName"].tolist() == ["TS_01", "TS_01", "TS_02"]
    assert table["label"].tolist() == [5, 9, 3]  # the components' labels, not connected components
    rows = {int(r.label): r for r in table.itertuples()}
    radius_nm = RADIUS * VOXEL / 10  # the STAR file's 10 Å, not the headers' 7 Å
    assert rows[5].closed and not rows[9].closed and not rows[3].closed
    assert rows[5].area_nm2 == pytest.approx(4 * math.pi * radius_nm**2, rel=0.02)
    assert rows[5].volume_nm3 == pytest.approx(4 / 3 * math.pi * radius_nm**3, rel=0.03)
    assert math.isnan(rows[9].volume_nm3)  # empty in the CSV, NaN in the STAR file
    assert rows[5].nearest_label == 9 and math.isnan(rows[3].nearest_distance_min_nm)  # TS_02 has one membrane
    gap_nm = (SHEET - CENTRE[0] - RADIUS) * VOXEL / 10
    assert rows[5].nearest_distance_min_nm == pytest.approx(gap_nm, abs=0.5)
    for row in rows.values():  # from each row's tomogram
        assert row.membrane_thickness_nm == pytest.approx(LEAFLETS * VOXEL / 10, abs=0.5)
    for name, labels in (("TS_01", (5, 9)), ("TS_02", (3,))):
        csv = pd.read_csv(folder / f"rec_{name}_seg_surfaces.csv")
        assert csv["label"].tolist() == list(labels)
        for label in labels:
            assert (folder / f"rec_{name}_seg_membrane{label}.glb").is_file()
            assert rows[label].rlnTomoMembraneMesh == str(folder / f"rec_{name}_seg_membrane{label}.ply")
        assert (folder / f"rec_{name}_seg_surface_histograms.png").is_file()
        assert (folder / f"rec_{name}_seg_surface_thickness.png").is_file()
    sheet = read_mesh(rows[9].rlnTomoMembraneMesh)
    assert {"mean_curvature", "nearest_distance", "thickness"} <= set(sheet.values)
    assert np.allclose(sheet.vertices[:, 2], ORIGIN[0] + SHEET * VOXEL, atol=1e-2)  # Å in the tomogram's frame

    out = starfile.read(JOB / "tomograms.star", parse_as_string=["rlnTomoName"])
    assert list(out.columns) == [*two.columns, "rlnTomoMembraneSurfaces"]
    assert out["rlnTomoMembraneSurfaces"].tolist() == [str(folder / f"rec_{n}_seg_surfaces.csv")
                                                       for n in ("TS_01", "TS_02")]
    nodes = starfile.read(JOB / NODES_FILE)
    assert nodes["rlnPipeLineNodeName"].tolist() == [str(JOB / "tomograms.star")]
    assert nodes["rlnPipeLineNodeTypeLabel"].tolist() == ["TomogramGroupMetadata.star.bilayer.membranes"]


def test_a_continued_job_does_what_an_abort_left_and_refuses_other_settings(project, rng, capsys, monkeypatch):
    star = _segmented(rng, ["TS_01", "TS_02"], kind="micrographs")
    Path(JOB).mkdir(parents=True)
    (JOB / ABORT_FILE).touch()
    assert _run(star, "--thickness", "no") == EXIT_ABORTED
    assert _exit_files() == {"RELION_JOB_EXIT_ABORTED"} and not (JOB / ABORT_FILE).exists()
    assert not list(JOB.rglob("*.csv"))

    measure = surfaces_job._measure

    def measure_then_abort(*args, **kwargs):
        measure(*args, **kwargs)
        (JOB / ABORT_FILE).touch()  # the user presses abort during the first tomogram

    monkeypatch.setattr(surfaces_job, "_measure", measure_then_abort)
    assert _run(star, "--thickness", "no") == EXIT_ABORTED
    first, second = (JOB / "tomograms" / f"rec_TS_0{i}_seg_surfaces.csv" for i in (1, 2))
    assert first.is_file() and not second.exists()
    made = first.stat().st_mtime_ns
    monkeypatch.setattr(surfaces_job, "_measure", measure)
    capsys.readouterr()

    assert _run(star, "--thickness", "no") == 0
    assert "1 finished before, 1 to do" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == made and second.is_file()
    table = starfile.read(JOB / surfaces_job.TABLE_FILE)
    assert len(table) == 2 and table["thickness_median_nm"].isna().all()
    out = starfile.read(JOB / "micrographs.star", always_dict=True)["micrographs"]
    assert out["rlnTomoMembraneSurfaces"].tolist() == [str(first), str(second)]

    assert _run(star, "--thickness", "no", "--spacing", "30") == EXIT_USAGE
    err = capsys.readouterr().err
    assert "holds results made with other settings (spacing" in err and err.count("\n") == 1
    assert first.stat().st_mtime_ns == made


def test_failed_tomograms_are_listed_and_the_others_go_on(project, rng, capsys, monkeypatch):
    star = _segmented(rng, ["TS_01", "TS_02", "TS_03"])
    done = []

    def measure(row, folder, voxel_size, options):
        if "TS_01" in str(row["segmentation"]):
            raise InputFileError(f"{row['segmentation']} is damaged; segment it again")
        if "TS_02" in str(row["segmentation"]):
            raise ValueError("a bug")
        done.append(row["segmentation"].name)

    monkeypatch.setattr(surfaces_job, "_measure", measure)
    assert _run(star, "--settings", _settings(thickness=False)) == EXIT_USAGE
    assert done == ["rec_TS_03_seg.mrc"]
    err = capsys.readouterr().err
    assert "error: TS_01: External/job012/tomograms/rec_TS_01_seg.mrc is damaged; segment it again\n" in err
    assert "error: TS_02: unexpected ValueError" in err and "Traceback" in err
    assert "2 of 3 tomogram(s) failed (TS_01, TS_02;" in err.splitlines()[-1]
    assert _exit_files() == {"RELION_JOB_EXIT_FAILURE"}
    assert not (JOB / surfaces_job.TABLE_FILE).exists() and not (JOB / "tomograms.star").exists()


def _settings(**values) -> str:
    path = Path("surfaces.yaml")
    path.write_text("".join(f"{k}: {str(v).lower()}\n" for k, v in values.items()))
    return str(path)


@pytest.mark.parametrize(("change", "params", "message"), [
    ("none", ("--in_mics",), "give the segmentation job's STAR file with --in_mics"),
    ("no segmentations", (), ("names no segmentations (no rlnTomoMembraneSegmentation column in data_global); run "
                             "the segmentation job (bilayer-relion-segment) first")),
    ("missing mask", (), "names 1 segmentation file(s) that do not exist: External/job012/tomograms/rec_TS_02_seg.mrc"),
    ("missing tomogram", (), "names 1 tomogram file(s) that do not exist"),
    ("tomogram grid", (), ("TS_02: the tomogram Tomograms/job007/tomograms/rec_TS_02.mrc has shape (12, 80, 80), the "
                          "segmentation External/job012/tomograms/rec_TS_02_seg.mrc (30, 80, 80)")),
    ("none", ("--format", "vrml"), "format vrml is not a mesh format; use ply, obj, stl, glb"),
    ("none", ("--settings", "unknown"), "unknown surfaces settings (surfaces.yaml) key(s) 'colour'"),
    ("none", ("--spacing", "-5"), "spacing=-5.0 is out of range"),
])
def test_bad_inputs_fail_in_one_line_before_any_work(project, rng, capsys, change, params, message):
    star = _segmented(rng, ["TS_01", "TS_02"])
    if change == "no segmentations":
        table = starfile.read(star, parse_as_string=["rlnTomoName"]).drop(columns="rlnTomoMembraneSegmentation")
        _write_rows(table.to_dict("records"), star, "set")
    elif change == "missing mask":
        (SEGMENT / "tomograms" / "rec_TS_02_seg.mrc").unlink()
    elif change == "missing tomogram":
        Path("Tomograms/job007/tomograms/rec_TS_02.mrc").unlink()
    elif change == "tomogram grid":
        write_volume("Tomograms/job007/tomograms/rec_TS_02.mrc", np.zeros((12, 80, 80), np.float32), overwrite=True,
                     voxel_size=HEADER_VOXEL)
    if params[-1:] == ("unknown",):
        params = ("--settings", _settings(colour="red"))
    argv = ["--o", f"{JOB}/", "--in_mics", str(star), *params] if params[:1] != ("--in_mics",) else ["--o", f"{JOB}/"]
    assert surfaces_job.main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert _exit_files() == {"RELION_JOB_EXIT_FAILURE"}
    assert not list(JOB.rglob("*.csv")) and not list(JOB.rglob("*.ply"))
