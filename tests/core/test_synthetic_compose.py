"""bilayer.data.synthetic.compose: each placed membrane geometry puts its density inside its label band."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from bilayer.data.synthetic import MembraneKind, SynthConfig
from bilayer.data.synthetic.compose import MEMBRANE_BUILDERS, place_membrane
from bilayer.data.synthetic.membranes import Frame
from bilayer.data.synthetic.render import Canvas


@pytest.mark.parametrize("kind", list(MembraneKind))
def test_labels_sit_on_the_bilayer_density(kind):
    """For every geometry, the bilayer density lies in the label band, not beside it."""
    rng = np.random.default_rng(3)
    vs, shape = 10.0, (48, 48, 48)
    canvas = Canvas(shape, vs, tilt_range=(-60.0, 60.0), hidden_angle=90.0)
    extent = np.array(shape) * vs
    frame = Frame(
        shape, vs, SynthConfig(shape=shape), (0.0, extent[0]), (0.0, extent[0]), float("inf"), canvas.membrane_distance
    )
    inside = np.ones(shape, np.float32)
    summary = None
    for _ in range(10):
        summary = place_membrane(rng, frame, canvas, inside, MEMBRANE_BUILDERS[kind])
        if summary is not None:
            break
    assert summary is not None and summary["kind"] == kind.value
    density = np.clip(canvas.membrane_density, 0, None)
    near_band = scipy.ndimage.binary_dilation(canvas.band)
    assert density[near_band].sum() > 0.9 * density.sum()
    assert density[canvas.band].mean() > 5 * density[~near_band].mean()
