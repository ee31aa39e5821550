"""bilayer.surfaces.plots: histograms of the per-vertex measures and pictures of meshes coloured by one;
valid PNGs of the expected size, written atomically, that change when the values change."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from bilayer.errors import ConfigError, OutputError
from bilayer.surfaces.mesh import Mesh
from bilayer.surfaces.plots import (PLOT_VALUES, histograms_png, mesh_png, render_histograms, render_mesh_picture,
                                    render_pictures)
from matplotlib import image as mpimg


def _sphere(label: int = 1, subdivisions: int = 3) -> Mesh:
    ico = trimesh.creation.icosphere(subdivisions=subdivisions, radius=200.0)  # Å
    n = len(ico.vertices)
    return Mesh(ico.vertices + 1000.0, ico.faces, label=label, closed=True,
                values={"mean_curvature": np.full(n, 0.05), "gaussian_curvature": np.full(n, 0.0025),
                        "nearest_distance": 8.0 + ico.vertices[:, 0] / 200.0})


def _sheet(z: float, label: int) -> Mesh:
    y, x = np.mgrid[0:21, 0:21] * 20.0
    vertices = np.column_stack([x.ravel(), y.ravel(), np.full(x.size, z)])
    index = np.arange(441).reshape(21, 21)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.column_stack([a, b, d]), np.column_stack([a, d, c])])
    return Mesh(vertices, faces, label=label, values={"nearest_distance": np.full(441, 8.0)})


def _image(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(io.BytesIO(png), format="png")


def test_the_mesh_picture_is_a_png_of_the_expected_size_and_shows_the_values(tmp_path):
    mesh = _sphere()
    path = mesh_png(tmp_path / "t_surface_nearest_distance.png", [mesh], "nearest_distance")
    picture = _image(path.read_bytes())
    assert picture.shape[:2] == (490, 1400)  # 14 × 4.9 inches at 100 dpi
    changed = _image(render_mesh_picture([mesh.with_values(nearest_distance=-mesh.values["nearest_distance"])],
                                         "nearest_distance"))
    assert changed.shape == picture.shape and np.abs(changed - picture).max() > 0.2
    assert np.abs(_image(render_mesh_picture([mesh], "nearest_distance")) - picture).max() == 0  # same values


def test_nan_is_drawn_grey():
    mesh = _sphere()

    def counts(png: bytes) -> tuple[int, int]:
        """(coloured pixels, grey pixels that are neither the white page nor black text)"""
        rgb = _image(png)[..., :3]
        spread = rgb.max(axis=2) - rgb.min(axis=2)
        grey = (spread < 0.03) & (rgb.mean(axis=2) > 0.25) & (rgb.mean(axis=2) < 0.8)
        return int((spread > 0.15).sum()), int(grey.sum())

    coloured, grey = counts(render_mesh_picture([mesh], "nearest_distance"))
    nan = mesh.with_values(nearest_distance=np.full(mesh.vertex_count, np.nan))
    coloured_nan, grey_nan = counts(render_mesh_picture([nan], "nearest_distance"))
    assert coloured > 20_000 and coloured_nan < coloured / 4  # what is left: the colour bar
    assert grey_nan > grey + 20_000


def test_a_big_mesh_is_drawn_decimated_and_two_sheets_together():
    big = _sphere(subdivisions=6)  # 81920 faces
    assert len(big.faces) > 80_000
    png = render_mesh_picture([big], "nearest_distance", max_faces=5_000)
    assert _image(png).shape[:2] == (490, 1400)
    sheets = [_sheet(100.0, 1), _sheet(180.0, 2)]
    assert _image(render_mesh_picture(sheets, "nearest_distance")).shape[:2] == (490, 1400)


def test_histograms_have_a_panel_per_value_and_change_with_the_values(tmp_path):
    meshes = [_sphere(1), _sphere(2)]
    path = histograms_png(tmp_path / "t_surface_histograms.png", meshes)
    picture = _image(path.read_bytes())
    assert picture.shape[:2] == (720, 840)  # 2 × 2 panels: 8.4 × 7.2 inches at 100 dpi
    shifted = [m.with_values(mean_curvature=m.values["mean_curvature"] * 3) for m in meshes]
    assert np.abs(_image(render_histograms(shifted)) - picture).max() > 0.2
    one = _image(render_histograms(meshes, ["nearest_distance"]))
    assert one.shape[:2] == (380, 480)


def test_a_panel_without_data_says_so_instead_of_failing():
    mesh = _sphere()  # no thickness at all
    without = _image(render_histograms([mesh], ["thickness"]))
    unresolved = _image(render_histograms([mesh.with_values(thickness=np.full(mesh.vertex_count, np.nan))],
                                          ["thickness"]))
    resolved = _image(render_histograms([mesh.with_values(thickness=np.full(mesh.vertex_count, 40.0))],
                                        ["thickness"]))
    assert without.shape == unresolved.shape == resolved.shape
    assert np.abs(without - unresolved).max() > 0  # two different sentences
    dark = (resolved[..., :3].mean(axis=2) < 0.5).sum()
    assert dark > (without[..., :3].mean(axis=2) < 0.5).sum()  # a bar instead of a line of text


def test_thickness_is_shown_in_nm_from_angstrom():
    assert PLOT_VALUES["thickness"].scale == 0.1 and "nm" in PLOT_VALUES["thickness"].label
    assert all("nm" in v.label for v in PLOT_VALUES.values())


def test_bad_requests_and_existing_outputs(tmp_path):
    with pytest.raises(ConfigError, match="thickness"):
        render_mesh_picture([_sphere()], "thickness")
    with pytest.raises(ConfigError, match="no membrane"):
        render_mesh_picture([], "mean_curvature")
    path = histograms_png(tmp_path / "h.png", [_sphere()])
    before = path.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        histograms_png(path, [_sphere()], ["mean_curvature"])
    with pytest.raises(OutputError, match="already exists"):
        mesh_png(path, [_sphere()], "mean_curvature")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["h.png"]


def test_a_big_mesh_is_drawn_from_a_coarser_copy_of_the_same_shape_and_values():
    from bilayer.surfaces.plots import _decimated

    big = _sphere(subdivisions=6)
    big = big.with_values(nearest_distance=big.vertices[:, 2] / 10.0)  # a value that varies over the surface
    vertices, faces, values = _decimated(big, "nearest_distance", 5_000)
    assert 2_000 < len(faces) <= 6_500
    centre = big.vertices.mean(axis=0)
    radius = np.linalg.norm(big.vertices - centre, axis=1).mean()
    cell = np.sqrt(2 * big.area() / 5_000)
    assert np.abs(np.linalg.norm(vertices - centre, axis=1) - radius).max() < cell  # still the sphere
    assert np.allclose(values, vertices[:, 2] / 10.0, atol=cell / 10.0)  # each value where its vertices were
    same = _decimated(big, "nearest_distance", 100_000)  # within the budget: the mesh itself
    assert len(same[1]) == len(big.faces)


@pytest.mark.parametrize("workers", [1, 2])
def test_pictures_drawn_side_by_side_are_the_pictures_drawn_one_by_one(workers):
    meshes = [_sphere(1), _sheet(2000.0, 2)]
    histograms, pictures = render_pictures(meshes, ["mean_curvature", "nearest_distance"], workers=workers)
    assert set(pictures) == {"mean_curvature", "nearest_distance"}
    assert np.array_equal(_image(histograms), _image(render_histograms(meshes)))
    for value, png in pictures.items():
        assert np.array_equal(_image(png), _image(render_mesh_picture(meshes, value)))
    assert not np.array_equal(_image(pictures["mean_curvature"]), _image(pictures["nearest_distance"]))
