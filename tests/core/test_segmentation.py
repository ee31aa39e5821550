"""bilayer.infer.segmentation: the mask thresholds the scores; files stream with the input's geometry."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bilayer.infer import InferenceConfig, OutputOptions, Predictor, segment_file, segment_volume
from bilayer.io import output_paths, read_volume, write_volume
from bilayer.postprocess import connected_components, skeletonize
from segment_inputs import EXACT, random_volume


def test_file_output_streams_to_the_same_answer_with_the_input_geometry(tmp_path, membrain_tiny_ckpt):
    volume = random_volume((100, 70, 66), voxel_size=(10.0, 10.0, 10.0), origin=(12.0, -3.5, 700.0), seed=3)
    source = write_volume(tmp_path / "tomo.mrc", volume)
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, **EXACT))
    outputs = OutputOptions(scores=True, components=True, skeleton=True, preview=True)
    in_memory = segment_volume(read_volume(source), predictor, outputs=outputs)
    report = segment_file(source, tmp_path / "out", predictor, outputs=outputs)
    assert set(report.outputs) == {"mask", "scores", "components", "skeleton", "preview"}
    assert report.outputs == output_paths(source, tmp_path / "out", outputs.kinds)
    for kind in ("mask", "scores", "components", "skeleton"):
        written = read_volume(report.outputs[kind])
        np.testing.assert_array_equal(written.data, getattr(in_memory, kind).data)
        assert written.voxel_size == pytest.approx(volume.voxel_size)
        assert written.origin == pytest.approx(volume.origin)
    assert report.membrane_fraction == pytest.approx(float(in_memory.mask.data.mean()))
    assert report.outputs["preview"].read_bytes()[:4] == b"\x89PNG"
    assert "tomo.mrc" in report.summary()


def test_the_mask_is_the_scores_above_the_threshold_and_post_processing_follows_it(membrain_tiny_ckpt):
    volume = random_volume((64, 64, 72), origin=(1.0, 2.0, 3.0), seed=9)
    first = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, **EXACT))
    threshold = float(np.quantile(segment_volume(volume, first, outputs=OutputOptions(scores=True)).scores.data, 0.7))
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, threshold=threshold, **EXACT))
    outputs = OutputOptions(scores=True, components=True, skeleton=True, min_size=5)
    result = segment_volume(volume, predictor, outputs=outputs)
    mask = result.mask.data
    assert mask.dtype == np.int8 and mask.mean() == pytest.approx(0.3, abs=0.01)
    np.testing.assert_array_equal(mask, (result.scores.data > threshold).astype(np.int8))
    np.testing.assert_array_equal(result.components.data, connected_components(mask, min_size=5).labels)
    np.testing.assert_array_equal(result.skeleton.data, skeletonize(mask).astype(np.int8))
    for output in (result.mask, result.scores, result.components, result.skeleton):
        assert output.voxel_size == volume.voxel_size and output.origin == volume.origin
    plain = segment_volume(volume, predictor)
    np.testing.assert_array_equal(plain.mask.data, mask)
    assert plain.scores is None and plain.components is None and plain.skeleton is None


def test_uncertainty_and_extra_masks_stream_to_files_as_in_memory(tmp_path, membrain_tiny_ckpt):
    """With TTA: the uncertainty map (MemBrain-seg's smoothing of the raw variance, streamed) and one
    mask per extra threshold, written with the other outputs and the input's geometry."""
    from bilayer.infer import smooth_uncertainty

    volume = random_volume((64, 64, 70), voxel_size=(12.0, 12.0, 12.0), origin=(1.0, 2.0, 3.0), seed=4)
    source = write_volume(tmp_path / "tomo.mrc", volume)
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, **{**EXACT, "tta": True}))
    outputs = OutputOptions(scores=True, uncertainty=True, extra_thresholds=(0.5, -1.0), preview=False)
    report = segment_file(source, tmp_path / "out", predictor, outputs=outputs)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "tomo_scores.mrc", "tomo_seg.mrc", "tomo_seg_t-1.mrc", "tomo_seg_t0.5.mrc", "tomo_uncertainty.mrc"]
    assert report.outputs == outputs.paths(source, tmp_path / "out")
    raw = segment_volume(read_volume(source), predictor, outputs=replace(outputs, smooth_uncertainty=False))
    scores = read_volume(report.outputs["scores"]).data
    np.testing.assert_array_equal(scores, raw.scores.data)
    for t, kind in outputs.extra_mask_kinds.items():
        written = read_volume(report.outputs[kind])
        np.testing.assert_array_equal(written.data, (scores > t).astype(np.int8))
        np.testing.assert_array_equal(raw.extra_masks[t].data, written.data)
        assert written.voxel_size == pytest.approx(volume.voxel_size) and written.origin == pytest.approx(volume.origin)
    uncertainty = read_volume(report.outputs["uncertainty"])
    assert uncertainty.data.dtype == np.float32 and uncertainty.origin == pytest.approx(volume.origin)
    assert uncertainty.voxel_size == pytest.approx(volume.voxel_size)
    mask = read_volume(report.outputs["mask"]).data > 0
    np.testing.assert_array_equal(uncertainty.data, smooth_uncertainty(raw.uncertainty.data, mask))
    assert 0 < raw.uncertainty.data.max() <= 2 / 7 and raw.uncertainty.data.min() >= 0
    assert raw.uncertainty.voxel_size == volume.voxel_size and raw.uncertainty.origin == volume.origin


def test_uncertainty_leaves_the_scores_of_membrain_seg_passes_untouched(membrain_tiny_ckpt):
    """Where MemBrain-seg's mirrored windows differ (x = 112), the passes run either way: same bytes;
    where they coincide, the per-window average and the passes' mean agree to float32 rounding."""
    config = InferenceConfig(window=64, **{**EXACT, "tta": True})
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, config)
    for shape, same_bytes in (((64, 64, 112), True), ((64, 64, 64), False)):
        volume = random_volume(shape, seed=5)
        plain = segment_volume(volume, predictor, outputs=OutputOptions(scores=True)).scores.data
        spread = segment_volume(volume, predictor, outputs=OutputOptions(scores=True, uncertainty=True)).scores.data
        if same_bytes:
            np.testing.assert_array_equal(spread, plain)
        else:
            np.testing.assert_allclose(spread, plain, atol=1e-5)
