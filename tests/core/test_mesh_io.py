"""bilayer.surfaces.mesh_io: meshes written as OBJ, PLY, STL and GLB through trimesh and read back
unchanged (Å coordinates to float32 precision, faces, PLY/GLB values by name), atomically; and the
mesh output names of bilayer.io.naming."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import trimesh
from bilayer.errors import ConfigError, InputFileError, OutputError
from bilayer.io import output_group
from bilayer.io.naming import MESH_SUFFIXES, OUTPUT_SUFFIXES, mesh_label, mesh_name, surface_picture_name
from bilayer.surfaces.extract import membrane_meshes
from bilayer.surfaces.mesh import Mesh
from bilayer.surfaces.mesh_io import MESH_FORMATS, read_mesh, write_mesh

ORIGIN_XYZ = np.array([1234.5, -2048.25, 310.125])  # Å: far from 0, so a unit or axis slip shows


def _sphere(label: int = 3) -> Mesh:
    """A closed sphere of radius 200 Å in the tomogram's frame, shuffled so the vertex order is not trimesh's."""
    ico = trimesh.creation.icosphere(subdivisions=3, radius=200.0)
    order = np.random.default_rng(1).permutation(len(ico.vertices))
    vertices = ico.vertices[order] + ORIGIN_XYZ
    faces = np.argsort(order)[ico.faces]
    n = len(vertices)
    values = {
        "mean_curvature": np.linspace(-0.5, 0.5, n),
        "thickness": np.where(np.arange(n) % 7 == 0, np.nan, 38.0 + np.arange(n) / n),  # unresolved: NaN
    }
    return Mesh(vertices, faces, label=label, closed=True, values=values)


def _triangles(mesh: Mesh) -> np.ndarray:
    """The faces as sorted triples of vertex coordinates, independent of vertex numbering."""
    corners = np.round(mesh.vertices[mesh.faces], 3)
    rolled = [np.roll(corners, k, axis=1) for k in range(3)]  # the same face from each of its corners
    keys = np.stack([r.reshape(len(r), -1) for r in rolled])
    first = np.argmin(keys[:, :, 0] * 1e6 + keys[:, :, 1], axis=0)  # start each face at its smallest corner
    canonical = keys[first, np.arange(keys.shape[1])]
    return canonical[np.lexsort(canonical.T[::-1])]


@pytest.mark.parametrize("suffix", MESH_FORMATS)
def test_each_format_round_trips_vertices_in_angstrom_and_faces(tmp_path, suffix):
    mesh = _sphere()
    path = write_mesh(tmp_path / mesh_name("tomo_seg.mrc", mesh.label, suffix), mesh)
    back = read_mesh(path)
    assert back.label == 3 and back.closed
    assert back.vertex_count == mesh.vertex_count and len(back.faces) == len(mesh.faces)
    if suffix == ".stl":  # a triangle soup: the same triangles, vertices numbered anew
        np.testing.assert_allclose(_triangles(back), _triangles(mesh), atol=1e-3)
    else:
        np.testing.assert_array_equal(back.faces, mesh.faces)
        tolerance = 1e-7 if suffix == ".obj" else np.abs(mesh.vertices).max() * 2.0**-23
        np.testing.assert_allclose(back.vertices, mesh.vertices, rtol=0, atol=tolerance)
    assert back.area() == pytest.approx(mesh.area(), rel=1e-6)  # still Å², not rescaled
    outward = np.einsum("ij,ij->i", back.vertex_normals(), back.vertices - ORIGIN_XYZ)
    assert (outward > 0).all()  # orientation kept


def test_ply_holds_every_value_as_a_float32_vertex_property_with_normals(tmp_path):
    mesh = _sphere()
    path = write_mesh(tmp_path / "m.ply", mesh)
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert "format binary_little_endian" in header
    for prop in ("float x", "float nx", "float mean_curvature", "float thickness"):
        assert f"property {prop}\n" in header
    back = read_mesh(path)
    assert set(back.values) == {"mean_curvature", "thickness"}
    for name, array in mesh.values.items():
        np.testing.assert_array_equal(back.values[name], array.astype(np.float32))  # NaN where NaN
    raw = trimesh.load_mesh(path, process=False).metadata["_ply_raw"]["vertex"]["data"]
    normals = np.stack([raw["nx"], raw["ny"], raw["nz"]], axis=1)
    np.testing.assert_allclose(normals, mesh.vertex_normals(), atol=1e-6)


def test_glb_is_gltf2_binary_with_finite_values_as_custom_attributes(tmp_path):
    mesh = _sphere()
    path = write_mesh(tmp_path / "m.glb", mesh)
    data = path.read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack("<I4s", data[12:20])
    assert json_type == b"JSON" and json_length % 4 == 0
    gltf = json.loads(data[20:20 + json_length])
    bin_length, bin_type = struct.unpack("<I4s", data[20 + json_length:28 + json_length])
    assert bin_type == b"BIN\x00" and 28 + json_length + bin_length == len(data)
    assert gltf["asset"]["version"] == "2.0"
    (primitive,) = gltf["meshes"][0]["primitives"]
    # NaN is no valid glTF number, so the thickness with unresolved vertices stays in the PLY only
    assert set(primitive["attributes"]) == {"POSITION", "NORMAL", "_MEAN_CURVATURE"}
    position = gltf["accessors"][primitive["attributes"]["POSITION"]]
    np.testing.assert_allclose(position["min"], mesh.vertices.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(position["max"], mesh.vertices.max(axis=0), rtol=1e-6)
    assert gltf["meshes"][0]["extras"] == {"units": "angstrom", "label": 3, "closed": True}
    back = read_mesh(path)
    assert set(back.values) == {"mean_curvature"}
    np.testing.assert_array_equal(back.values["mean_curvature"], mesh.values["mean_curvature"].astype(np.float32))


def test_an_open_sheet_from_a_mask_keeps_its_place_and_reads_back_open(tmp_path):
    band = np.zeros((24, 32, 32), dtype=bool)
    band[10:15] = True  # its middle at z = 12
    origin = (500.0, 40.0, -300.0)  # (z, y, x) Å
    (mesh,) = membrane_meshes(band, 12.0, origin)
    back = read_mesh(write_mesh(tmp_path / "sheet.ply", mesh))
    assert not back.closed and back.label == 1
    np.testing.assert_allclose(back.vertices[:, 2], 500.0 + 12 * 12.0, atol=1e-3)  # z in Å, as in the mask
    np.testing.assert_allclose(back.vertices[:, :2].min(axis=0), [-300.0, 40.0], atol=1e-3)  # x, y from 0
    np.testing.assert_allclose(back.vertices[:, :2].max(axis=0), [-300.0 + 31 * 12, 40.0 + 31 * 12], atol=1e-3)


def test_an_unknown_suffix_is_refused_in_one_line(tmp_path):
    for name in ("m.vtk", "m"):
        with pytest.raises(ConfigError) as e:
            write_mesh(tmp_path / name, _sphere())
        assert "\n" not in str(e.value) and ".ply" in str(e.value) and name in str(e.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError):
        read_mesh(tmp_path / "m.off")


def test_existing_outputs_and_inputs_are_not_replaced(tmp_path):
    mesh = _sphere()
    path = write_mesh(tmp_path / "m.ply", mesh)
    before = path.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        write_mesh(path, mesh.with_values(mean_curvature=np.zeros(mesh.vertex_count)))
    assert path.read_bytes() == before
    with pytest.raises(OutputError, match="is an input"):
        write_mesh(path, mesh, overwrite=True, protect=[path])
    write_mesh(path, mesh.with_values(mean_curvature=np.zeros(mesh.vertex_count)), overwrite=True)
    assert read_mesh(path).values["mean_curvature"].max() == 0.0


def test_nothing_is_left_when_the_export_fails(tmp_path, monkeypatch):
    def fail(self, *args, **kwargs):
        kwargs["file_obj"].write(b"partial")
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(trimesh.Trimesh, "export", fail)
    for suffix in MESH_FORMATS:
        with pytest.raises(RuntimeError, match="exporter broke"):
            write_mesh(tmp_path / f"m{suffix}", _sphere())
    assert list(tmp_path.iterdir()) == []


def test_meshes_of_one_mask_appear_together_in_a_group(tmp_path):
    with pytest.raises(RuntimeError), output_group() as group:
        write_mesh(tmp_path / "a.ply", _sphere(1), group=group)
        write_mesh(tmp_path / "b.ply", _sphere(2), group=group)
        raise RuntimeError("the second membrane failed")
    assert list(tmp_path.iterdir()) == []
    with output_group() as group:
        for label in (1, 2):
            write_mesh(tmp_path / mesh_name("t.mrc", label), _sphere(label), group=group)
    assert [read_mesh(p).label for p in sorted(tmp_path.iterdir())] == [1, 2]


def test_bad_value_names_and_bad_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="PLY property"):
        write_mesh(tmp_path / "m.ply", _sphere().with_values(nx=np.zeros(642)))
    with pytest.raises(InputFileError, match="no such mesh file"):
        read_mesh(tmp_path / "none.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a mesh at all")
    with pytest.raises(InputFileError, match="junk.ply"):
        read_mesh(tmp_path / "junk.ply")


def test_mesh_names_follow_the_input_stem():
    assert MESH_FORMATS == MESH_SUFFIXES and MESH_FORMATS[0] == ".ply"
    assert mesh_name("in/tomo_seg.mrc", 3) == "tomo_seg_membrane3.ply"
    assert mesh_name("tomo_seg.mrc", np.int64(12), ".glb") == "tomo_seg_membrane12.glb"
    assert mesh_label("out/tomo_seg_membrane12.glb") == 12 and mesh_label("tomo.ply") is None
    assert mesh_label("tomo_membrane3.mrc") is None and mesh_label("_membrane3.ply") is None
    assert surface_picture_name("tomo_seg.mrc", "mean_curvature") == "tomo_seg_surface_mean_curvature.png"
    assert OUTPUT_SUFFIXES["surfaces"] == "_surfaces.csv"
    assert OUTPUT_SUFFIXES["surface_histograms"] == "_surface_histograms.png"
    with pytest.raises(ConfigError, match="mesh format"):
        mesh_name("t.mrc", 1, ".vtk")
    with pytest.raises(ConfigError, match="label"):
        mesh_name("t.mrc", -1)
    with pytest.raises(ConfigError, match="value name"):
        surface_picture_name("t.mrc", "../x")
