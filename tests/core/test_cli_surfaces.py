"""``bilayer mesh`` and ``bilayer measure``: files per membrane in each format, the table, the meshes
with their values and the pictures; existing outputs refused in one line, with nothing written."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from bilayer.cli import main
from bilayer.io import write_volume
from bilayer.surfaces.mesh_io import read_mesh
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_surfaces_api import VOXEL, scene  # noqa: E402  (the same drawn vesicle and sheet)


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_mesh_writes_each_membrane_in_each_format_and_refuses_to_overwrite(tmp_path, capsys, rng):
    mask, _ = scene(rng)
    seg = write_volume(tmp_path / "t_seg.mrc", mask, voxel_size=VOXEL)
    code, out, err = _run(capsys, "mesh", seg, "--out", tmp_path / "m", "--format", "ply", "--format", "glb")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["t_seg_membrane1.glb", "t_seg_membrane1.ply", "t_seg_membrane2.glb", "t_seg_membrane2.ply",
                     "t_seg_meshes.json"]
    assert "2 membrane(s) (1 closed)" in out
    assert {read_mesh(tmp_path / "m" / n).closed for n in names if n.endswith((".ply", ".glb"))} == {True, False}
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "m").iterdir()}
    code, out, err = _run(capsys, "mesh", seg, "--out", tmp_path / "m", "--format", "ply", "--format", "glb")
    assert code == 2 and err.startswith("bilayer: error: ") and "already exists" in err and err.count("\n") == 1
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "m").iterdir()} == before


def test_measure_writes_the_table_meshes_with_values_and_pictures(tmp_path, capsys, rng):
    mask, density = scene(rng)
    seg = write_volume(tmp_path / "t_seg.mrc", mask, voxel_size=VOXEL)
    tomo = write_volume(tmp_path / "t.mrc", density, voxel_size=VOXEL)
    code, out, err = _run(capsys, "measure", seg, "--tomogram", tomo, "--out", tmp_path / "s")
    assert code == 0, err
    folder = tmp_path / "s"
    with open(folder / "t_seg_surfaces.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["closed"] for r in rows} == {"True", "False"}
    assert all(abs(float(r["membrane_thickness_nm"]) - 4.0) <= 0.5 for r in rows)
    mesh = read_mesh(folder / "t_seg_membrane1.ply")
    assert {"mean_curvature", "gaussian_curvature", "nearest_distance", "thickness"} <= set(mesh.values)
    for name in ("t_seg_surface_histograms.png", "t_seg_surface_mean_curvature.png",
                 "t_seg_surface_nearest_distance.png", "t_seg_surface_thickness.png"):
        with Image.open(folder / name) as image:
            assert image.size[0] > 300
    code, out, err = _run(capsys, "measure", seg, seg, "--tomogram", tomo, "--out", tmp_path / "x")
    assert code == 2 and "1 --tomogram given for 2 segmentation(s)" in err


def test_components_need_a_single_segmentation(tmp_path, capsys, rng):
    mask, _ = scene(rng)
    seg = write_volume(tmp_path / "t_seg.mrc", mask, voxel_size=VOXEL)
    code, _, err = _run(capsys, "mesh", seg, seg, "--components", seg, "--out", tmp_path / "m")
    assert code == 2 and "give one SEGMENTATION with it" in err
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())


def test_measure_meshes_measures_mesh_s_files_as_they_are(tmp_path, capsys, rng):
    """bilayer mesh, then bilayer measure --meshes: the same table as measuring from scratch, the
    meshes read (not meshed again), and meshes of another segmentation or a mesh option refused."""
    mask, density = scene(rng)
    seg = write_volume(tmp_path / "t_seg.mrc", mask, voxel_size=VOXEL)
    tomo = write_volume(tmp_path / "t.mrc", density, voxel_size=VOXEL)
    assert _run(capsys, "mesh", seg, "--out", tmp_path / "m", "--workers", "1")[0] == 0
    code, out, err = _run(capsys, "measure", seg, "--tomogram", tomo, "--meshes", tmp_path / "m", "--out", tmp_path / "s")
    assert code == 0, err
    code, out, err = _run(capsys, "measure", seg, "--tomogram", tomo, "--out", tmp_path / "fresh")
    assert code == 0, err

    def table(folder):
        with open(folder / "t_seg_surfaces.csv", newline="") as f:
            return list(csv.DictReader(f))

    reused, fresh = table(tmp_path / "s"), table(tmp_path / "fresh")
    assert [r["vertices"] for r in reused] == [r["vertices"] for r in fresh]
    for a, b in zip(reused, fresh):  # the PLY keeps float32 positions: equal to ~1e-4 Å
        assert abs(float(a["area_nm2"]) - float(b["area_nm2"])) <= 1e-4 * float(b["area_nm2"])
        assert abs(float(a["membrane_thickness_nm"]) - float(b["membrane_thickness_nm"])) <= 0.01
    measured = read_mesh(tmp_path / "s" / "t_seg_membrane1.ply")
    assert np.allclose(measured.vertices, read_mesh(tmp_path / "m" / "t_seg_membrane1.ply").vertices)
    # a mesh option with --meshes, and meshes of a segmentation that has changed since: one line each
    code, out, err = _run(capsys, "measure", seg, "--meshes", tmp_path / "m", "--spacing", "20", "--out", tmp_path / "x")
    assert code == 2 and "--spacing set how membranes are meshed" in err and err.count("\n") == 1
    (tmp_path / "other").mkdir()
    other = write_volume(tmp_path / "other" / "t_seg.mrc", np.roll(mask, 3, axis=2), voxel_size=VOXEL)
    code, out, err = _run(capsys, "measure", other, "--meshes", tmp_path / "m", "--out", tmp_path / "y")
    assert code == 2 and "were made from t_seg.mrc" in err and "bilayer mesh" in err and err.count("\n") == 1
    code, out, err = _run(capsys, "measure", seg, "--meshes", tmp_path / "s", "--out", tmp_path / "s", "--overwrite")
    assert code == 2 and "is an input" in err  # the meshes measured are inputs: never replaced
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
