"""bilayer.data.synthetic.mitochondria: the inner membrane stays the drawn spacing inside the outer one."""

from __future__ import annotations

import numpy as np
from bilayer.data.synthetic import MembraneKind, SynthConfig
from bilayer.data.synthetic.membranes import Frame
from bilayer.data.synthetic.mitochondria import build_mitochondrion


def _mitochondria(count: int) -> list:
    shape, vs = (48, 64, 64), 14.0
    extent = np.array(shape) * vs
    frame = Frame(shape, vs, SynthConfig(shape=shape), (0.0, extent[0]), (0.0, extent[0]), float("inf"),
                  np.full(shape, np.inf, np.float32))
    found = []
    for seed in range(40):
        obj = build_mitochondrion(np.random.default_rng(seed), frame)
        if obj is not None:
            found.append(obj)
        if len(found) == count:
            break
    return found


def test_the_inner_membrane_stays_at_least_the_spacing_inside_the_outer_one():
    found = _mitochondria(4)
    assert len(found) == 4
    for obj in found:
        assert obj.kind is MembraneKind.MITOCHONDRION
        outer, inner = obj.surfaces
        spacing = obj.summary["membrane_spacing"]
        assert 110.0 <= spacing <= 200.0
        # the matrix is a smooth maximum of (outer + spacing) and the cristae, never below the first
        assert np.all(inner.phi >= outer.phi + np.float32(spacing - 0.05) - 1e-3)
        assert (outer.phi < 0).any() and (inner.phi < 0).any()
        assert obj.summary["cristae_shape"] in ("lamellar", "tubular") and obj.summary["cristae"] >= 0
        assert len(obj.lumens) == 2  # the matrix and the space between the membranes


def test_a_mitochondrion_repeats_for_a_seed():
    a, b = _mitochondria(1)[0], _mitochondria(1)[0]
    assert a.summary == b.summary
    for s, t in zip(a.surfaces, b.surfaces):
        np.testing.assert_array_equal(s.phi, t.phi)
