"""bilayer.infer.passes: passes streamed in any slabs are averaged (and their spread measured), leaving no
temporary file behind; mirrored passes give the TTA copies' mean and the variance of their probabilities."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch
from scipy.special import expit


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


def test_the_spread_is_the_sample_variance_of_the_passes_probabilities_in_any_slabs(tmp_path):
    from bilayer.infer import PassAccumulator, SlabCollector

    rng = np.random.default_rng(8)
    volumes = [rng.normal(0.0, 3.0, size=(9, 4, 5)).astype(np.float32) for _ in range(4)]
    means, spreads = SlabCollector((9, 4, 5)), SlabCollector((9, 4, 5))
    order = []
    with PassAccumulator((9, 4, 5), 4, lambda z, s: (order.append(("mean", z)), means(z, s)),
                         directory=str(tmp_path), spread=lambda z, s: (order.append(("spread", z)), spreads(z, s))) \
            as passes:
        for index, (volume, cuts) in enumerate(zip(volumes, ([0, 9], [0, 1, 2, 9], [0, 3, 6, 9], [0, 2, 5, 9]))):
            emit = passes.emitter(index)
            for a, b in itertools.pairwise(cuts):
                emit(a, volume[a:b])
    assert means.complete and spreads.complete
    assert order == [("mean", 0), ("spread", 0), ("mean", 2), ("spread", 2), ("mean", 5), ("spread", 5)]
    np.testing.assert_allclose(spreads.scores, np.var(expit(np.array(volumes, np.float64)), axis=0, ddof=1),
                               atol=1e-7)
    plain = SlabCollector((9, 4, 5))
    with PassAccumulator((9, 4, 5), 4, plain, directory=str(tmp_path)) as passes:
        for index, volume in enumerate(volumes):
            passes.emitter(index)(0, volume)
    np.testing.assert_array_equal(means.scores, plain.scores)  # the spread leaves the mean's arithmetic alone


def test_a_spread_needs_two_passes():
    from bilayer.errors import ConfigError
    from bilayer.infer import PassAccumulator

    with pytest.raises(ConfigError, match="at least 2 to measure their spread"):
        PassAccumulator((2, 2, 2), 1, print, spread=print)


def _blend(volume, roi):
    from bilayer.infer import blend_windows

    return functools.partial(blend_windows, volume, roi=roi, overlap=0.5)


def _run(volume, predict_fn, roi, mirror_grid=True):
    from bilayer.infer import SlabCollector, mirrored_passes

    means, spreads = SlabCollector(volume.shape), SlabCollector(volume.shape)
    mirrored_passes(_blend(volume, roi), predict_fn, shape=volume.shape, emit=means, spread=spreads,
                    mirror_grid=mirror_grid)
    return means.scores, spreads.scores


@pytest.mark.parametrize("mirror_grid", [True, False])
def test_copies_that_agree_have_no_spread(mirror_grid):
    rng = np.random.default_rng(3)
    volume = rng.normal(size=(20, 24, 40)).astype(np.float32)
    weight = torch.ones(1, 1, 3, 3, 3) / 27.0  # a mirror-symmetric blur: flip-equivariant

    def blur(x):
        return torch.nn.functional.conv3d(x, weight, padding=1)

    means, spreads = _run(volume, lambda x: 3.0 * x - 1.0, (16, 16, 16), mirror_grid)  # pointwise: exactly 0
    assert not spreads.any()
    np.testing.assert_allclose(means, 3.0 * volume - 1.0, atol=1e-5)
    _, spreads = _run(volume, blur, (16, 16, 16), mirror_grid)
    assert np.abs(spreads).max() < 1e-12


@pytest.mark.parametrize("mirror_grid", [True, False])
def test_a_window_that_sees_its_own_position_gives_the_variance_computed_by_hand(mirror_grid):
    """One window covers the volume; the network adds a ramp in window coordinates, so each mirrored
    copy, flipped back, carries the ramp mirrored on its axes."""
    from bilayer.infer import MIRROR_AXES

    rng = np.random.default_rng(4)
    shape = (6, 7, 8)
    volume = rng.normal(size=shape).astype(np.float32)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    ramp = (2.0 * z + 1.0 * y - 1.5 * x).astype(np.float32)

    def with_ramp(batch):
        return batch + torch.from_numpy(ramp)

    means, spreads = _run(volume, with_ramp, shape, mirror_grid)
    copies = np.array([volume + (np.flip(ramp, axes) if axes else ramp) for axes in MIRROR_AXES], np.float64)
    np.testing.assert_allclose(means, copies.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(spreads, np.var(expit(copies), axis=0, ddof=1), atol=1e-7)
    assert spreads.max() > 0.01


def test_on_many_windows_the_spread_is_over_the_blended_copies_and_the_mean_is_the_per_window_average():
    from bilayer.infer import MIRROR_AXES, with_mirroring
    from sliding_reference import blended, random_conv

    rng = np.random.default_rng(5)
    volume = rng.normal(size=(40, 36, 56)).astype(np.float32)  # x: windows at 0, 16, 24 and mirrored 0, 8, 24
    network = random_conv(seed=2)
    roi = (16, 16, 32)
    means, spreads = _run(volume, network, roi)
    copies = np.array([blended(volume, with_mirroring(network, (axes,)), roi=roi, overlap=0.5, grid_mirror=axes)
                       for axes in MIRROR_AXES], np.float64)
    np.testing.assert_allclose(means, copies.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(spreads, np.var(expit(copies), axis=0, ddof=1), atol=1e-6)
    window_means, _ = _run(volume, network, roi, mirror_grid=False)
    per_window = blended(volume, with_mirroring(network), roi=roi, overlap=0.5)
    np.testing.assert_allclose(window_means, per_window, atol=1e-5)
