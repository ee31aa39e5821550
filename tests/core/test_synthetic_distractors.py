"""bilayer.data.synthetic.distractors: filaments, gold and granules are density only, clear of membranes."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.data.synthetic import DistractorKind, SynthConfig
from bilayer.data.synthetic.distractors import add_filaments, add_gold, add_granules
from bilayer.data.synthetic.environment import Slab
from bilayer.data.synthetic.fields import ModeField
from bilayer.data.synthetic.membranes import Frame
from bilayer.data.synthetic.render import Canvas

SHAPE, VS = (40, 48, 48), 10.0


def _scene(membrane_at_z: float | None = None) -> tuple[Frame, Canvas]:
    """A frame over the whole volume and a canvas whose only "membrane" is the plane z = ``membrane_at_z`` Å."""
    canvas = Canvas(SHAPE, VS, tilt_range=(-60.0, 60.0), hidden_angle=90.0)
    if membrane_at_z is not None:
        z = np.arange(SHAPE[0], dtype=np.float32)[:, None, None] * VS
        canvas.membrane_distance[:] = np.abs(z - membrane_at_z)
    extent = np.array(SHAPE) * VS
    frame = Frame(SHAPE, VS, SynthConfig(shape=SHAPE), (0.0, extent[0]), (0.0, extent[0]), float("inf"),
                  canvas.membrane_distance)
    return frame, canvas


def test_filaments_are_density_only_and_cut_away_next_to_membranes():
    frame, canvas = _scene(membrane_at_z=200.0)
    summaries = add_filaments(np.random.default_rng(2), frame, canvas, 6)
    assert len(summaries) == 6
    assert {s["kind"] for s in summaries} <= {DistractorKind.MICROTUBULE.value, DistractorKind.ACTIN.value}
    assert canvas.density.max() > 0.5 and canvas.density.min() >= 0.0
    assert not canvas.density[canvas.membrane_distance <= 35.0].any()  # within 3.5 nm of the membrane: nothing
    assert not canvas.band.any() and not canvas.ignore.any() and not canvas.membrane_density.any()
    assert not canvas.scatterer.any()
    assert add_filaments(np.random.default_rng(2), frame, canvas, 0) == []


def test_gold_beads_are_dense_scatterers_of_the_configured_size():
    frame, canvas = _scene()
    slab = Slab(np.array([200.0, 240.0, 240.0]), np.array([1.0, 0.0, 0.0]), 150.0,
                ModeField(np.zeros(0, complex), np.zeros((0, 3))), -2.0)
    beads = add_gold(np.random.default_rng(5), frame, canvas, slab, 8)
    assert beads and all(b["kind"] == DistractorKind.GOLD.value for b in beads)
    low, high = frame.config.gold_diameter_range
    for bead in beads:
        assert low / 2 - 0.05 <= bead["radius"] <= high / 2 + 0.05
        index = np.rint(np.array(bead["center"]) / VS).astype(int)
        if np.all((index >= 0) & (index < SHAPE)):
            assert canvas.scatterer[tuple(index)] >= 3.0 * 0.5  # at least half a voxel of gold, density >= 3
    assert canvas.scatterer.max() >= 3.0
    assert not canvas.density.any() and not canvas.band.any()


def test_granules_stay_clear_of_the_membranes():
    frame, canvas = _scene(membrane_at_z=30.0)  # a membrane near the bottom leaves room above it
    granules = []
    for seed in range(6):
        granules += add_granules(np.random.default_rng(seed), frame, canvas, 2)
    assert granules and all(g["kind"] == DistractorKind.GRANULE.value for g in granules)
    assert all(g["radius"] >= 50.0 and 1.2 <= g["density"] <= 3.0 for g in granules)
    assert not canvas.density[canvas.membrane_distance < 50.0].any()
    assert canvas.density.max() > 1.0 and not canvas.band.any()


@pytest.mark.parametrize("count", [0, 3])
def test_no_room_means_no_granules(count):
    frame, canvas = _scene(membrane_at_z=200.0)
    canvas.membrane_distance[:] = 40.0  # membranes everywhere nearby: nothing fits
    assert add_granules(np.random.default_rng(0), frame, canvas, count) == []
    assert not canvas.density.any()
