"""bilayer.data.synthetic.organelles: exact capsule and sheet distances, local merges, stacks, pits."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.data.synthetic import MembraneKind, SynthConfig
from bilayer.data.synthetic.fields import crop_between, full_crop
from bilayer.data.synthetic.membranes import Frame
from bilayer.data.synthetic.organelles import build_invagination, build_stack, capsule_phi, merge_into, pancake_phi


def _frame(shape=(48, 48, 48), vs=10.0) -> Frame:
    extent = np.array(shape) * vs
    return Frame(shape, vs, SynthConfig(shape=shape), (0.0, extent[0]), (0.0, extent[0]), float("inf"),
                 np.full(shape, np.inf, np.float32))


def test_a_capsule_is_the_exact_distance_to_its_segment_less_its_radius():
    shape, vs = (12, 14, 16), 10.0
    crop = full_crop(shape, vs)
    start, end, radius = np.array([30.0, 40.0, 20.0]), np.array([90.0, 70.0, 130.0]), 25.0
    phi = capsule_phi(crop, start, end, radius)
    z, y, x = np.meshgrid(*(np.arange(n) * vs for n in shape), indexing="ij")
    points = np.stack([z, y, x], axis=-1).reshape(-1, 3)
    axis = end - start
    t = np.clip((points - start) @ axis / (axis @ axis), 0, 1)
    expected = np.linalg.norm(points - (start + t[:, None] * axis), axis=1) - radius
    np.testing.assert_allclose(phi.ravel(), expected, atol=1e-3)


def test_a_flattened_sheet_is_two_membranes_a_lumen_apart_closed_by_a_round_rim():
    h = np.array([0.0, 40.0, -40.0, 0.0, 0.0, 30.0], np.float32)
    rho = np.array([0.0, 100.0, 250.0, 500.0, 560.0, 540.0], np.float32)
    phi = pancake_phi(h, rho, radius=500.0, lumen=80.0)
    # inside the flat part: |h| - lumen/2; beyond the rim: the distance to the rim's circle
    np.testing.assert_allclose(phi, [-40.0, 0.0, 0.0, -40.0, 20.0, 10.0], atol=1e-4)


def test_a_merge_changes_only_its_sub_crop():
    shape, vs = (10, 10, 10), 10.0
    parent = full_crop(shape, vs)
    phi = np.full(shape, 7.0, np.float32)
    sub = crop_between(np.array([20.0, 30.0, 0.0]), np.array([40.0, 50.0, 30.0]), shape, vs)
    merge_into(parent, phi, sub, np.full(sub.shape, -1.0, np.float32), np.minimum)
    expected = np.full(shape, 7.0, np.float32)
    expected[sub.slices] = -1.0
    np.testing.assert_array_equal(phi, expected)
    merge_into(parent, phi, None, None, np.minimum)  # an empty sub-crop changes nothing
    np.testing.assert_array_equal(phi, expected)


def test_a_stack_has_as_many_sheets_as_its_summary_says():
    frame = _frame()
    stacks = [s for s in (build_stack(np.random.default_rng(seed), frame) for seed in range(6)) if s is not None]
    assert stacks
    low, high = frame.config.stack_count_range
    for stack in stacks:
        assert stack.kind is MembraneKind.STACK
        assert low <= stack.summary["sheets"] <= high
        assert len(stack.surfaces) == len(stack.lumens) == stack.summary["sheets"]
        assert stack.summary["gap"] >= 75.0  # sheets never touch
        lumen = frame.config.sheet_lumen_range
        assert lumen[0] - 0.05 <= stack.summary["lumen"] <= lumen[1] + 0.05


def test_an_invagination_is_one_membrane_over_the_whole_volume_with_its_pits():
    frame = _frame()
    for seed in range(4):
        obj = build_invagination(np.random.default_rng(seed), frame)
        assert obj.kind is MembraneKind.INVAGINATION and len(obj.surfaces) == 1 and len(obj.lumens) == 1
        assert obj.surfaces[0].phi.shape == frame.shape
        assert obj.summary["shape"] in ("plane", "sphere") and 0 <= len(obj.summary["pits"]) <= 4
        phi = obj.surfaces[0].phi
        assert phi.min() < 0 < phi.max()  # the membrane passes through the volume
        np.testing.assert_array_equal(obj.lumens[0].phi, -phi)  # the lumen is the outside of the cell


@pytest.mark.parametrize("seed", [0, 1])
def test_organelles_repeat_for_a_seed(seed):
    frame = _frame()
    a, b = build_stack(np.random.default_rng(seed), frame), build_stack(np.random.default_rng(seed), frame)
    assert (a is None) == (b is None)
    if a is not None:
        assert a.summary == b.summary
        np.testing.assert_array_equal(a.surfaces[0].phi, b.surfaces[0].phi)
