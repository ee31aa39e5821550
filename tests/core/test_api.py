"""bilayer.segment: the one-call Python door, with the same options and the same refusals as the others."""

from __future__ import annotations

import numpy as np
import pytest

import bilayer
from bilayer.errors import BilayerError, ConfigError
from bilayer.infer import InferenceConfig, Predictor
from bilayer.io import write_volume
from segment_inputs import EXACT, random_volume


def _tomo(folder, name="t.mrc", voxel_size=10.0):
    data = np.random.default_rng(0).normal(size=(40, 48, 56)).astype(np.float32)
    return write_volume(folder / name, data, voxel_size=voxel_size)


def test_options_by_name_and_from_a_settings_file(tmp_path, membrain_tiny_ckpt):
    source = _tomo(tmp_path)
    by_name = bilayer.segment(source, membrain_tiny_ckpt, window=64, tta=False, scores=True, threshold=0.5)
    assert by_name.scores is not None
    np.testing.assert_array_equal(by_name.mask.data, by_name.scores.data > 0.5)
    settings = tmp_path / "s.yaml"
    settings.write_text(f"model: {membrain_tiny_ckpt}\nwindow: 64\ntta: false\nscores: true\nthreshold: 0.5\n")
    from_file = bilayer.segment(source, settings=settings)
    np.testing.assert_array_equal(from_file.scores.data, by_name.scores.data)


@pytest.mark.parametrize("header, given, words", [
    (1.0, None, ("t.mrc", "1 Å", "--voxel-size")),
    (5000.0, None, ("t.mrc", "5000 Å")),
    (10.0, 5000.0, ("up-sampled",)),
    (10.0, 0.5, ("in memory needs about",)),
])
def test_bad_voxel_sizes_and_runs_too_big_are_one_line_errors_before_any_work(tmp_path, membrain_tiny_ckpt,
                                                                               header, given, words):
    source = _tomo(tmp_path, voxel_size=header)
    with pytest.raises(BilayerError) as caught:
        bilayer.segment(source, membrain_tiny_ckpt, voxel_size=given, window=64, tta=False)
    for word in words:
        assert word in str(caught.value) and "\n" not in str(caught.value)


def test_an_unknown_option_lists_the_known_ones(tmp_path, membrain_tiny_ckpt):
    with pytest.raises(ConfigError, match="'windw'.*known ones"):
        bilayer.segment(_tomo(tmp_path), membrain_tiny_ckpt, windw=64)


def test_bilayer_segment_takes_arrays_volumes_and_paths(tmp_path, membrain_tiny_ckpt):
    volume = random_volume((64, 64, 70), seed=5)
    config = InferenceConfig(window=64, **EXACT)
    from_volume = bilayer.segment(volume, membrain_tiny_ckpt, config=config)
    from_array = bilayer.segment(volume.data, membrain_tiny_ckpt, voxel_size=10.0, config=config)
    path = write_volume(tmp_path / "v.mrc", volume)
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, config)
    from_path = bilayer.segment(path, predictor)
    for result in (from_array, from_path):
        np.testing.assert_array_equal(result.mask.data, from_volume.mask.data)
    assert from_volume.scores is None and from_path.mask.path is None
    assert list(tmp_path.iterdir()) == [path]  # nothing written
    with pytest.raises(ConfigError, match="voxel_size"):
        bilayer.segment(volume.data, predictor)


def test_uncertainty_and_extra_thresholds_by_name(tmp_path, membrain_tiny_ckpt):
    source = _tomo(tmp_path)
    result = bilayer.segment(source, membrain_tiny_ckpt, window=64, scores=True, uncertainty=True,
                             smooth_uncertainty=False, extra_thresholds="1.0, -1.0")
    assert set(result.extra_masks) == {1.0, -1.0}
    for t, mask in result.extra_masks.items():
        np.testing.assert_array_equal(mask.data, (result.scores.data > t).astype(np.int8))
        assert mask.voxel_size == result.mask.voxel_size
    assert result.uncertainty.data.dtype == np.float32 and result.uncertainty.shape == (40, 48, 56)
    assert 0 <= result.uncertainty.data.min() and 0 < result.uncertainty.data.max() <= 2 / 7
    assert list(tmp_path.iterdir()) == [source]  # nothing written
    plain = bilayer.segment(source, membrain_tiny_ckpt, window=64, tta=False)
    assert plain.uncertainty is None and plain.extra_masks == {}


def test_uncertainty_without_tta_is_refused_from_every_side(tmp_path, membrain_tiny_ckpt):
    from bilayer.infer import OutputOptions

    source = _tomo(tmp_path)
    with pytest.raises(ConfigError, match="tta is off"):
        bilayer.segment(source, membrain_tiny_ckpt, window=64, tta=False, uncertainty=True)
    with pytest.raises(ConfigError, match="tta is off"):  # the objects given whole meet the same check
        bilayer.segment(source, membrain_tiny_ckpt, config=InferenceConfig(window=64, tta=False),
                        outputs=OutputOptions(uncertainty=True))
