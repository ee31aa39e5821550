"""bench/surfaces_vs_membrain_pick.py's pure helpers: the analytic scene (exact areas against marching
cubes of each shape's distance field, bands kept apart, leaflets where they should be), the triangle
area, which scene membrane a mesh lies on, and the report's targets and ratios. Nothing is meshed by
Bilayer or MemBrain-pick here."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield {"scene": importlib.import_module("_membrain_pick_scene"),
               "main": importlib.import_module("surfaces_vs_membrain_pick")}
    finally:
        sys.path.remove(str(BENCH))


def _level_set_area(scene, shape, volume):
    """Area (voxels²) of the zero level of ``shape``'s distance field over the whole grid."""
    box = tuple(slice(0, n) for n in volume)
    d = scene.signed_distance(shape, box)
    vertices, faces, _, _ = measure.marching_cubes(np.broadcast_to(d, volume).astype(np.float64), 0.0)
    return measure.mesh_surface_area(vertices, faces)


@pytest.mark.parametrize(("kind", "volume", "size", "params"), [
    ("vesicle", (64, 64, 64), 20.0, {}),
    ("sac", (64, 64, 64), 15.0, {"half_thickness": 6.0, "normal": (0.8, 0.6, 0.0)}),
    ("tube", (48, 48, 64), 12.0, {}),
    ("sheet", (40, 64, 64), 3.0, {"wavelength": 40.0, "phase": 0.7}),
])
def test_exact_area_is_the_area_of_the_zero_level(bench, kind, volume, size, params):
    scene = bench["scene"]
    shape = scene.Shape(kind, tuple(n / 2 for n in volume), size, params)
    expected = scene.expected_area(shape, volume)
    assert expected == pytest.approx(_level_set_area(scene, shape, volume), rel=0.01)
    if kind == "vesicle":
        assert expected == pytest.approx(4 * math.pi * size**2)


def test_a_cut_vesicle_or_tube_has_no_exact_area(bench):
    scene = bench["scene"]
    assert scene.expected_area(scene.Shape("vesicle", (5.0, 32.0, 32.0), 10.0), (64, 64, 64)) is None
    assert scene.expected_area(scene.Shape("tube", (32.0, 3.0, 32.0), 6.0), (64, 64, 64)) is None


def test_scene_membranes_are_separate_bands_with_two_leaflets(bench):
    scene = bench["scene"]
    volume, limits = (64, 128, 128), {"sheet": 1, "tube": 1, "sac": 1, "vesicle": 4}
    plan = scene.plan_shapes(volume, 3, vesicles=4, sheets=1, sacs=1, tubes=1)
    labels, density, kept = scene.draw_scene(volume, plan, 3, limits=limits)
    assert 3 <= len(kept) <= sum(limits.values())
    assert all(sum(s.kind == k for s in kept) <= n for k, n in limits.items())
    components, count = ndimage.label(labels > 0, np.ones((3, 3, 3)))
    assert count == len(kept)  # each membrane its own component, under any connectivity
    for i, shape in enumerate(kept, start=1):
        assert np.unique(labels[components == components[labels == i][0]]).tolist() == [i]
        box = shape.box(volume, 0)
        d = scene.signed_distance(shape, box)
        assert np.all(np.abs(np.broadcast_to(d, labels[box].shape)[labels[box] == i]) <= scene.HALF_BAND)
    # the leaflets: darker at d = ±2 than in the band's middle, on average over the vesicles' voxels
    vesicle = next(s for s in kept if s.kind == "vesicle")
    box = vesicle.box(volume, 4)
    d = np.broadcast_to(scene.signed_distance(vesicle, box), labels[box].shape)
    leaflet = density[box][np.abs(np.abs(d) - scene.LEAFLETS / 2) < 0.3].mean()
    middle = density[box][np.abs(d) < 0.3].mean()
    assert leaflet < middle - 0.5


def test_triangle_area_and_scene_label(bench):
    main = bench["main"]
    square = np.array([[0, 0, 0], [2, 0, 0], [2, 3, 0], [0, 3, 0]], dtype=float)
    assert main.triangle_area(square, np.array([[0, 1, 2], [0, 2, 3]])) == pytest.approx(6.0)
    assert main.triangle_area(square, np.zeros((0, 3), dtype=int)) == 0.0
    labels = np.zeros((20, 30, 40), dtype=np.uint8)
    labels[10, :, :] = 4  # a sheet at z = 10
    labels[:, :, 35] = 7  # another at x = 35
    xyz = np.array([[x, y, 11.4] for x in range(5, 25) for y in range(3, 20)], dtype=float)  # 1.4 voxels off
    assert main.scene_label(xyz, labels) == 4
    assert main.scene_label(xyz[:, [2, 1, 0]] + [25, 0, 0], labels) == 7  # (x, y, z) columns honoured
    assert main.scene_label(xyz + [0, 0, 5], labels) == 0  # nothing within two voxels
    assert main.scene_label(np.zeros((0, 3)), labels) == 0


def _run(wall, cpu, tree_mb, largest_mb, area, vertices=1000):
    return {"returncode": 0, "timed_out": False, "log": "x.log", "wall_s": wall, "user_s": cpu, "system_s": 0.0,
            "peak_rss_mb": largest_mb, "peak_tree_mb": tree_mb, "meshes": 2, "vertices": vertices,
            "area_nm2": area, "load_before": [0.1, 0.1, 0.1], "load_after": [1.0, 1.0, 1.0], "table": []}


@pytest.mark.parametrize(("mesh_s", "met"), [(20.0, True), (35.0, False)])
def test_the_report_judges_mesh_plus_measure_and_gives_the_ratios_to_membrain_pick(bench, mesh_s, met):
    runs = {"bilayer mesh": _run(mesh_s, 30.0, 1200.0, 400.0, 1000.0),
            "bilayer measure": _run(30.0, 50.0, 1800.0, 600.0, 1000.0),
            "membrain-pick": _run(600.0, 560.0, 3600.0, 3600.0, 2000.0)}
    text = bench["main"].format_report({"shape": [256, 512, 512], "shapes": [{}, {}], "runs": runs, "membranes": []})
    total = mesh_s + 30.0
    verdict = "met" if met else "NOT met"
    assert f"Bilayer mesh + measure: {total:.1f} s wall (target under 60 s: {verdict})" in text
    assert "peak memory 1800 MB, all processes (target under 2048 MB: met)" in text  # the larger tree, not the sum
    assert f"MemBrain-pick / Bilayer mesh + measure: time {600.0 / total:.2f}×, peak memory 2.00×, CPU 7.00×" in text


def test_older_results_without_the_tree_memory_report_the_largest_process(bench):
    run = _run(10.0, 10.0, float("nan"), 700.0, 1.0)
    assert bench["main"]._memory(run) == 700.0
    assert bench["main"]._memory(_run(10.0, 10.0, 900.0, 700.0, 1.0)) == 900.0
