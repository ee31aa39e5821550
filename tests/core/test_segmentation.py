"""bilayer.infer.segmentation: the mask thresholds the scores; files stream with the input's geometry."""

from __future__ import annotations

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
