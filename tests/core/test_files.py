"""bilayer.surfaces.files: a segmentation's surface files appear together or not at all, named by
bilayer.io.naming, with the inputs protected."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bilayer.errors import OutputError
from bilayer.io import write_volume
from bilayer.surfaces.files import measure_files, write_meshes
from bilayer.surfaces.api import mesh_membranes

sys.path.insert(0, str(Path(__file__).parent))
from test_surfaces_api import VOXEL, scene  # noqa: E402  (the drawn vesicle and sheet)


def test_measure_files_writes_one_group_and_an_existing_output_stops_it_whole(tmp_path, rng):
    mask, density = scene(rng)
    seg = write_volume(tmp_path / "t_seg.mrc", mask, voxel_size=VOXEL)
    tomo = write_volume(tmp_path / "t.mrc", density, voxel_size=VOXEL)
    out = tmp_path / "out"
    out.mkdir()
    (out / "t_seg_surface_histograms.png").write_bytes(b"mine")  # in the way of the group's third file
    with pytest.raises(OutputError, match="t_seg_surface_histograms.png already exists"):
        measure_files(seg, out, tomogram=tomo, suffixes=(".ply", ".stl"))
    assert sorted(p.name for p in out.iterdir()) == ["t_seg_surface_histograms.png"]  # nothing else appeared
    surfaces, written = measure_files(seg, out, tomogram=tomo, suffixes=(".ply", ".stl"), overwrite=True)
    assert sorted(p.name for p in written) == sorted(p.name for p in out.iterdir())
    assert {"t_seg_surfaces.csv", "t_seg_membrane1.ply", "t_seg_membrane2.stl", "t_seg_surface_thickness.png"} \
        <= {p.name for p in written}
    assert len(surfaces.meshes) == 2


def test_meshes_never_replace_their_segmentation(tmp_path, rng):
    mask, _ = scene(rng)
    seg = write_volume(tmp_path / "t_seg.mrc", mask, voxel_size=VOXEL)
    meshes = mesh_membranes(seg)
    written = write_meshes(seg, meshes, tmp_path, (".glb",))
    assert [p.name for p in written] == ["t_seg_membrane1.glb", "t_seg_membrane2.glb"]
    with pytest.raises(OutputError, match="already exists"):
        write_meshes(seg, meshes, tmp_path, (".glb",))
