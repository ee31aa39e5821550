"""bilayer.data.synthetic.particles: rendered proteins keep their mass; templates clip; lumps keep centres."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.data.synthetic.particles import (
    PointGroup,
    crowding_texture,
    lumpy,
    render_point_groups,
    ribosome_templates,
    splat_template,
)


def test_rendered_proteins_keep_their_mass_and_sit_at_their_points():
    shape, vs = (32, 32, 32), 10.0
    one = PointGroup(np.array([[160.0, 150.0, 170.0]]), np.array([2.0]), 30.0, "protein")
    density = render_point_groups([one], shape, vs)
    assert density.dtype == np.float32 and density.shape == shape
    volume = 4 / 3 * np.pi * 30.0**3 / vs**3
    assert float(density.sum(dtype=np.float64)) == pytest.approx(2.0 * volume, rel=1e-4)
    assert np.unravel_index(np.argmax(density), shape) == (16, 15, 17)
    two = PointGroup(np.array([[50.0, 60.0, 70.0], [400.0, 0.0, 0.0]]), np.array([1.0, 5.0]), 20.0, "small")
    both = render_point_groups([one, two], shape, vs)  # the point outside the volume is dropped
    np.testing.assert_allclose(both, density + render_point_groups([two], shape, vs), atol=1e-5)
    assert float(render_point_groups([two], shape, vs).sum()) == pytest.approx(4 / 3 * np.pi * 8.0, rel=1e-4)
    assert not render_point_groups([], shape, vs).any()


def test_a_template_is_added_where_it_fits_and_clipped_at_the_faces():
    density = np.zeros((6, 6, 6), np.float32)
    template = np.ones((3, 3, 3), np.float32)
    splat_template(density, template, np.array([30.0, 30.0, 30.0]), 10.0, weight=2.0)
    assert density.sum() == 2.0 * 27 and np.all(density[2:5, 2:5, 2:5] == 2.0)
    splat_template(density, template, np.array([0.0, 0.0, 0.0]), 10.0)
    assert density.sum() == 2.0 * 27 + 8 and np.all(density[:2, :2, :2] == 1.0)
    splat_template(density, template, np.array([200.0, 0.0, 0.0]), 10.0)  # wholly outside: nothing
    assert density.sum() == 2.0 * 27 + 8


def test_lumpy_proteins_keep_their_centres_and_amplitudes():
    rng = np.random.default_rng(3)
    points = np.array([[0.0, 0.0, 0.0], [100.0, 200.0, 300.0], [-50.0, 5.0, 7.0]])
    group = lumpy(rng, points, np.array([1.0, 2.0, 3.0]), 40.0, "peripheral_protein")
    assert group.radius == pytest.approx(26.0) and group.kind == "peripheral_protein"
    assert 3 <= len(group.points) <= 9 and len(group.amplitudes) == len(group.points)
    starts = [i for i in range(len(group.points)) if i == 0 or group.amplitudes[i] != group.amplitudes[i - 1]]
    np.testing.assert_array_equal(group.points[starts], points)  # each protein's first lump is at its centre
    offsets = [np.linalg.norm(group.points[i] - points[int(group.amplitudes[i]) - 1]) for i in range(len(group.points))]
    assert max(offsets) <= 0.45 * 40.0 + 1e-9
    empty = lumpy(rng, np.zeros((0, 3)), np.zeros(0), 40.0, "none")
    assert len(empty.points) == 0 and empty.radius == pytest.approx(26.0)


def test_crowding_is_non_negative_with_the_asked_mean():
    texture = crowding_texture(np.random.default_rng(2), (32, 32, 32), 5.0, 0.8)
    assert texture.dtype == np.float32 and texture.min() >= 0.0
    assert float(texture.mean()) == pytest.approx(0.8 / 4, rel=1e-4)  # fine voxels: no averaging to undo


def test_ribosome_templates_are_odd_cubes_dense_in_the_middle():
    templates = ribosome_templates(np.random.default_rng(1), 10.0, 2)
    assert len(templates) == 2
    z, y, x = np.meshgrid(*[np.arange(39) - 19] * 3, indexing="ij")
    radius = np.sqrt(z * z + y * y + x * x)
    for t in templates:
        assert t.shape == (39, 39, 39) and t.dtype == np.float32 and t.min() >= 0.0
        assert 1.3 - 1e-4 <= np.percentile(t[t > 0], 99) <= 1.8 + 1e-4  # the drawn peak density
        assert t[radius <= 10].mean() > 3 * t[radius >= 16].mean()  # a dense blob, not a ring
        assert t[0, 0, 0] < 1e-3 * t.max()
