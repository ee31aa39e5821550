"""bilayer.data.synthetic.environment: a slab lies between its faces; drawn slabs keep the asked ranges."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.data.synthetic.environment import Slab, draw_slab
from bilayer.data.synthetic.fields import ModeField, full_crop

FLAT = ModeField(np.zeros(0, complex), np.zeros((0, 3)))


def _tilted_slab() -> Slab:
    tilt = np.radians(20.0)
    normal = np.array([np.cos(tilt), 0.0, np.sin(tilt)])
    return Slab(center=np.array([160.0, 160.0, 160.0]), normal=normal, half_thickness=100.0, roughness=FLAT,
                vacuum=-2.0)


def test_a_flat_slab_is_the_space_within_half_its_thickness_of_the_mid_plane():
    slab = _tilted_slab()
    crop = full_crop((32, 32, 32), 10.0)
    dz, dy, dx = crop.relative(slab.center)
    height = slab.normal[0] * dz + slab.normal[2] * dx + 0 * dy
    np.testing.assert_allclose(slab.signed_distance(crop), np.abs(height) - 100.0, atol=1e-4)
    inside = slab.inside(crop, 10.0)
    assert np.all(inside[np.abs(height) < 95.0] == 1.0) and np.all(inside[np.abs(height) > 105.0] == 0.0)
    points = np.array([[160.0, 0.0, 160.0], [160.0 + 95.0 / slab.normal[0], 50.0, 160.0], [300.0, 0.0, 160.0]])
    assert slab.contains(points).tolist() == [True, True, False]
    assert slab.contains(points, margin=10.0).tolist() == [True, False, False]


def test_face_points_lie_on_the_faces_and_the_z_interval_spans_them():
    slab = _tilted_slab()
    rng = np.random.default_rng(0)
    extent = np.array([320.0, 320.0, 320.0])
    for side in (1, -1):
        for _ in range(5):
            point = slab.face_point(rng, extent, side)
            assert (point - slab.center) @ slab.normal == pytest.approx(side * 100.0)
    lo, hi = slab.z_interval()
    half = 100.0 / np.cos(np.radians(20.0))
    assert (lo, hi) == pytest.approx((160.0 - half, 160.0 + half))
    assert slab.z_range(np.array([200.0, 320.0, 320.0])) == pytest.approx((lo, 200.0))
    assert slab.summary() == {"thickness": 200.0, "center_z": 160.0, "tilt_deg": 20.0, "vacuum_density": -2.0}


@pytest.mark.parametrize("curtaining", [False, True])
def test_drawn_slabs_keep_to_the_asked_thickness_tilt_and_vacuum(curtaining):
    rng = np.random.default_rng(4)
    extent = np.array([400.0, 1280.0, 1280.0])
    for _ in range(30):
        slab = draw_slab(rng, extent, (300.0, 900.0), 12.0, (1.0, 3.0), curtaining=curtaining)
        assert 150.0 <= slab.half_thickness <= 450.0
        assert np.linalg.norm(slab.normal) == pytest.approx(1.0)
        assert np.degrees(np.arccos(slab.normal[0])) <= 12.0 + 1e-9
        assert -3.0 <= slab.vacuum <= -1.0
        assert slab.center[1:] == pytest.approx(extent[1:] / 2)
        lo, hi = slab.z_interval()
        assert lo < extent[0] and hi > 0  # the slab passes through the volume
    flat = draw_slab(rng, extent, (500.0, 500.0), 0.0, (2.0, 2.0), curtaining=False)
    assert flat.normal == pytest.approx([1.0, 0.0, 0.0]) and flat.half_thickness == 250.0 and flat.vacuum == -2.0
