"""bilayer.surfaces.files: a segmentation's surface files appear together or not at all, named by
bilayer.io.naming, with the inputs protected."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from bilayer.errors import ConfigError, InputFileError, OutputError
from bilayer.io import write_volume
from bilayer.surfaces.api import mesh_membranes
from bilayer.surfaces.extract import MeshOptions
from bilayer.surfaces.files import measure_files, read_meshes, write_meshes

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
    assert [p.name for p in written] == ["t_seg_membrane1.glb", "t_seg_membrane2.glb", "t_seg_meshes.json"]
    with pytest.raises(OutputError, match="already exists"):
        write_meshes(seg, meshes, tmp_path, (".glb",))


def test_read_meshes_gives_back_the_written_meshes_and_checks_where_they_came_from(tmp_path, rng):
    mask, _ = scene(rng)
    seg = write_volume(tmp_path / "t_seg.mrc", mask, voxel_size=VOXEL)
    options = MeshOptions(spacing=15.0)
    meshes = mesh_membranes(seg, options=options, workers=1)
    write_meshes(seg, meshes, tmp_path / "m", options=options)
    back = read_meshes(seg, tmp_path / "m", options=options)
    assert [m.label for m in back] == [m.label for m in meshes]
    for a, b in zip(back, meshes):
        assert a.closed == b.closed and np.array_equal(a.faces, b.faces)
        assert np.abs(a.vertices - b.vertices).max() < 1e-3  # float32 in the PLY
    with pytest.raises(ConfigError, match=r"spacing 15.0, not 20.0"):
        read_meshes(seg, tmp_path / "m", options=MeshOptions(spacing=20.0))
    with pytest.raises(InputFileError, match=r"no meshes of .*bilayer mesh"):
        read_meshes(seg, tmp_path)
    copy = tmp_path / "copy" / "t_seg.mrc"  # the same bytes elsewhere are the same segmentation
    copy.parent.mkdir()
    copy.write_bytes(Path(seg).read_bytes())
    assert len(read_meshes(copy, tmp_path / "m")) == 2
    (tmp_path / "edited").mkdir()
    edited = write_volume(tmp_path / "edited" / "t_seg.mrc", mask[::-1].copy(), voxel_size=VOXEL)
    with pytest.raises(InputFileError, match="were made from t_seg.mrc"):
        read_meshes(edited, tmp_path / "m")
    (tmp_path / "m" / "t_seg_membrane2.ply").unlink()
    with pytest.raises(InputFileError, match="t_seg_membrane2.ply: no such mesh file"):
        read_meshes(seg, tmp_path / "m")
