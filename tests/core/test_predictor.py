"""bilayer.infer.predictor: scores are the network's, with TTA, bfloat16, rescaling and fitted windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bilayer.errors import ConfigError, VoxelSizeError
from bilayer.infer import MIRROR_AXES, InferenceConfig, OutputOptions, Precision, Predictor, segment_volume
from bilayer.io import Volume
from bilayer.model import load_checkpoint
from segment_inputs import EXACT, random_volume


def _network_scores(ckpt, window: np.ndarray) -> np.ndarray:
    """Independent reference: standardise, transpose to MemBrain-seg's (x, y, z), run the network."""
    model = load_checkpoint(ckpt)
    x = (window - window.astype(np.float64).mean()) / window.astype(np.float64).std()
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0), dtype=np.float32))[None, None]
    with torch.no_grad():
        out = model.network(tensor)
    return out[0, 0].numpy().transpose(2, 1, 0)


def test_membrain_checkpoint_predicts_its_network_output_on_one_window(membrain_tiny_ckpt):
    volume = random_volume((64, 64, 64))
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, **EXACT))
    result = segment_volume(volume, predictor, outputs=OutputOptions(scores=True))
    expected = _network_scores(membrain_tiny_ckpt, volume.data)
    # Two float32 networks sum in different orders (oneDNN picks kernels by CPU and thread count):
    # up to 2e-4 apart on an AVX512 CPU with one thread, on scores of about ±3.
    np.testing.assert_allclose(result.scores.data, expected, atol=5e-4)
    confident = np.abs(expected) > 5e-4  # float32 rounding may flip a score this close to 0
    np.testing.assert_array_equal(result.mask.data[confident], (expected[confident] > 0).astype(np.int8))
    assert confident.mean() > 0.999
    assert result.mask.data.dtype == np.int8


def test_tta_averages_the_eight_flipped_predictions(membrain_tiny_ckpt):
    volume = random_volume((64, 64, 64), seed=1)
    config = InferenceConfig(window=64, **{**EXACT, "tta": True})
    scores = segment_volume(volume, Predictor.from_checkpoint(membrain_tiny_ckpt, config),
                     outputs=OutputOptions(scores=True)).scores.data
    flips = []
    for axes in MIRROR_AXES:
        flipped = np.flip(volume.data, axes) if axes else volume.data
        out = _network_scores(membrain_tiny_ckpt, np.ascontiguousarray(flipped))
        flips.append(np.flip(out, axes) if axes else out)
    np.testing.assert_allclose(scores, np.mean(flips, axis=0), atol=1e-4)


def test_bfloat16_gives_nearly_the_same_scores(membrain_tiny_ckpt):
    volume = random_volume((64, 64, 80), seed=2)
    exact = segment_volume(volume, Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, **EXACT)),
                    outputs=OutputOptions(scores=True)).scores.data
    bf16 = segment_volume(volume, Predictor.from_checkpoint(
        membrain_tiny_ckpt, InferenceConfig(window=64, **{**EXACT, "precision": Precision.BFLOAT16})),
        outputs=OutputOptions(scores=True)).scores.data
    assert not np.array_equal(exact, bf16)  # it really ran in bfloat16
    assert np.abs(exact - bf16).max() < 0.05 * np.abs(exact).max()


@pytest.mark.parametrize("voxel_size", [7.0, 14.0])
def test_other_voxel_sizes_are_rescaled_window_by_window_and_keep_the_shape(membrain_tiny_ckpt, voxel_size):
    volume = random_volume((40, 70, 60), voxel_size=voxel_size, seed=4)
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, tta=False))
    result = segment_volume(volume, predictor, outputs=OutputOptions(scores=True))
    assert result.mask.shape == volume.shape and result.scores.shape == volume.shape
    assert result.mask.voxel_size == volume.voxel_size
    assert np.isfinite(result.scores.data).all()


def test_anisotropic_voxels_are_refused(membrain_tiny_ckpt):
    volume = Volume(np.zeros((8, 8, 8), np.float32) + np.arange(8), voxel_size=(20.0, 10.0, 10.0))
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, tta=False))
    with pytest.raises(VoxelSizeError, match="anisotropic"):
        segment_volume(volume, predictor)


def test_a_window_too_small_for_the_model_is_refused(membrain_tiny_ckpt):
    with pytest.raises(ConfigError, match="at least 64"):
        Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=32))


def test_float16_on_the_cpu_is_refused(membrain_tiny_ckpt):
    with pytest.raises(ConfigError, match="GPU"):
        Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(precision=Precision.FLOAT16), device="cpu")


@pytest.mark.parametrize(("shape", "voxel_size", "fitted"), [
    ((70, 70, 70), 10.0, 96),  # eight 64³ windows (2.1 M voxels) or one 96³ (0.88 M)
    ((48, 100, 100), 10.0, 64),  # 1 × 3 × 3 of 64³ (2.4 M) or 1 × 2 × 2 of 96³ (3.5 M)
    ((40, 64, 64), 14.0, 96),  # resampled: 1 × 2 × 2 windows of 46 voxels (1.05 M model voxels) or one of 70
])
def test_a_fitted_window_predicts_as_that_window_would(membrain_tiny_ckpt, shape, voxel_size, fitted):
    """The window grows (by up to 32) only where that predicts fewer model voxels, and then
    the scores are those of that window size set by hand."""
    from bilayer.infer import fit_window, window_count
    from bilayer.preprocess.pixel_size import rescaled_window_size

    def roi_of(w: int) -> int:
        return rescaled_window_size(w, 10.0, voxel_size)

    chosen = fit_window(shape, 64, 32, 0.5, roi_of)
    costs = {w: window_count(shape, roi_of(w), 0.5) * w**3 for w in (64, 96)}
    assert chosen == fitted == min(costs, key=costs.get)
    volume = random_volume(shape, voxel_size=voxel_size, seed=8)

    def scores(**config) -> np.ndarray:
        predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(**{**EXACT, **config}))
        return segment_volume(volume, predictor, outputs=OutputOptions(scores=True)).scores.data

    fit, fixed_fitted, fixed = scores(window=64, fit_window=True), scores(window=chosen), scores(window=64)
    np.testing.assert_array_equal(fit, fixed_fitted)
    assert np.array_equal(fit, fixed) is (fitted == 64)


def _membrain_passes(ckpt, volume: Volume, roi: int = 64) -> np.ndarray:
    """MemBrain-seg's TTA: the standardised tomogram mirrored 8 times, each through MONAI's sliding
    window (gaussian, half overlap), flipped back: (8, z, y, x)."""
    from monai.inferers import sliding_window_inference

    network = load_checkpoint(ckpt).network
    data = volume.data.astype(np.float64)
    standard = ((data - data.mean()) / data.std()).astype(np.float32)

    def xyz_network(window: torch.Tensor) -> torch.Tensor:
        return network(window.permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)

    passes = []
    with torch.no_grad():
        for axes in MIRROR_AXES:
            flipped = torch.from_numpy(np.ascontiguousarray(np.flip(standard, axes) if axes else standard))
            out = sliding_window_inference(flipped[None, None], (roi,) * 3, 1, xyz_network, overlap=0.5,
                                           mode="gaussian")[0, 0].numpy()
            passes.append(np.flip(out, axes) if axes else out)
    return np.array(passes)


@pytest.mark.parametrize("tta_grid", ["membrain", "window"])
def test_tta_on_an_asymmetric_grid_reproduces_membrain_seg_whole_volume_mirroring(membrain_tiny_ckpt, tta_grid):
    """MemBrain-seg mirrors the tomogram, then places windows (MONAI) on it; on x = 112 with
    windows of 64 at half overlap its mirrored grid (0, 16, 48) differs from the plain (0, 32, 48)."""
    from bilayer.infer import mirror_symmetric

    volume = random_volume((64, 64, 112), seed=6)
    assert not mirror_symmetric(volume.shape, (64,) * 3, 0.5)
    config = InferenceConfig(window=64, **{**EXACT, "tta": True, "tta_grid": tta_grid})
    scores = segment_volume(volume, Predictor.from_checkpoint(membrain_tiny_ckpt, config),
                     outputs=OutputOptions(scores=True)).scores.data
    expected = np.mean(_membrain_passes(membrain_tiny_ckpt, volume), axis=0)
    if tta_grid == "membrain":
        np.testing.assert_allclose(scores, expected, atol=1e-4)
    else:  # each window mirrored in place: close, but not MemBrain-seg's numbers
        assert np.abs(scores - expected).max() > 1e-3
        assert np.abs(scores - expected).max() < 0.5 * np.abs(expected).max()


@pytest.mark.parametrize("shape", [(64, 64, 112), (64, 80, 64)])  # an asymmetric grid, a symmetric one
def test_the_raw_uncertainty_is_membrain_segs_variance_map(membrain_tiny_ckpt, shape):
    """torch.var (n - 1) over the sigmoid of MemBrain-seg's 8 passes, as its --store-uncertainty-map
    computes it before smoothing; the scores stay the passes' mean."""
    from bilayer.infer import SlabCollector

    volume = random_volume(shape, seed=7)
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, **{**EXACT, "tta": True}))
    scores, spread = SlabCollector(shape), SlabCollector(shape)
    predictor.predict(volume, emit=scores, uncertainty=spread)
    passes = _membrain_passes(membrain_tiny_ckpt, volume)
    expected = torch.var(torch.sigmoid(torch.from_numpy(passes)), dim=0).numpy()
    np.testing.assert_allclose(spread.scores, expected, atol=2e-5)
    assert expected.max() > 100 * 2e-5  # the copies really disagree somewhere
    np.testing.assert_allclose(scores.scores, passes.mean(axis=0), atol=1e-4)


def test_uncertainty_without_tta_is_refused_before_any_work(membrain_tiny_ckpt):
    predictor = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, **EXACT))
    calls = []
    with pytest.raises(ConfigError, match="turn test-time augmentation"):
        predictor.predict(random_volume((64, 64, 64)), emit=lambda *a: calls.append(a),
                          uncertainty=lambda *a: calls.append(a))
    assert calls == []
