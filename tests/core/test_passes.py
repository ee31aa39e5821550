"""bilayer.infer.passes: passes streamed in any slabs are averaged, leaving no temporary file behind."""

from __future__ import annotations

import numpy as np


def test_pass_accumulator_averages_passes_streamed_in_any_slabs(tmp_path):
    from bilayer.infer import PassAccumulator, SlabCollector

    rng = np.random.default_rng(7)
    volumes = [rng.normal(size=(9, 4, 5)).astype(np.float32) for _ in range(3)]
    collector = SlabCollector((9, 4, 5))
    with PassAccumulator((9, 4, 5), 3, collector, directory=str(tmp_path)) as passes:
        for index, (volume, cuts) in enumerate(zip(volumes, ([0, 4, 9], [0, 1, 2, 9], [0, 3, 6, 9]))):
            emit = passes.emitter(index)
            for a, b in zip(cuts, cuts[1:]):
                emit(a, volume[a:b])
    assert collector.complete
    np.testing.assert_allclose(collector.scores, np.mean(volumes, axis=0), rtol=1e-6)
    assert list(tmp_path.iterdir()) == []  # the temporary file is unnamed and gone
