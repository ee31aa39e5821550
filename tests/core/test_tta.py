"""bilayer.infer.tta: MemBrain-seg's 8 mirrorings, applied per window and averaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from bilayer.errors import ConfigError
from bilayer.infer import MIRROR_AXES, SlabCollector, blend_windows, with_mirroring

ROI = (32, 32, 32)
#: torch.flip dims of MemBrain-seg's get_mirrored_img(m) on its (B, C, x, y, z) tensors, m = 0..7.
MEMBRAIN_FLIP_DIMS = [(), (4,), (3,), (4, 3), (2,), (4, 2), (3, 2), (4, 3, 2)]
#: The same 8 flips written as (B, C, z, y, x) tensor dims, in the same order.
ZYX_FLIP_DIMS = [(), (2,), (3,), (2, 3), (4,), (2, 4), (3, 4), (2, 3, 4)]


def _conv(kernel: torch.Tensor):
    pad = tuple(k // 2 for k in kernel.shape[2:])
    return lambda x: F.conv3d(x, kernel, padding=pad)


def _random_kernel(seed: int, shape=(3, 3, 3)) -> torch.Tensor:
    return torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(seed))


def _symmetric_kernel(seed: int) -> torch.Tensor:
    """A kernel equal to its own mirror image along every axis: convolution commutes with flips."""
    k = _random_kernel(seed)
    return sum(torch.flip(k, dims) if dims else k for dims in ZYX_FLIP_DIMS) / 8


def _explicit_average(predict_fn, batch: torch.Tensor) -> torch.Tensor:
    total = torch.zeros_like(batch, dtype=torch.float64)
    for dims in ZYX_FLIP_DIMS:
        flipped = torch.flip(batch, dims) if dims else batch
        out = predict_fn(flipped)
        total += (torch.flip(out, dims) if dims else out).double()
    return total / 8


def _blend(volume: np.ndarray, predict_fn) -> np.ndarray:
    collector = SlabCollector(volume.shape)
    blend_windows(volume, predict_fn, emit=collector, roi=ROI, overlap=0.5, batch_size=2)
    return collector.scores


def test_mirror_axes_are_membrain_segs_flips_in_order(rng):
    zyx = torch.from_numpy(rng.normal(size=(1, 1, 5, 6, 7)).astype(np.float32))
    xyz = zyx.permute(0, 1, 4, 3, 2)  # MemBrain-seg's layout
    assert len(MIRROR_AXES) == 8 and len({frozenset(a) for a in MIRROR_AXES}) == 8
    for axes, membrain_dims in zip(MIRROR_AXES, MEMBRAIN_FLIP_DIMS):
        theirs = (torch.flip(xyz, membrain_dims) if membrain_dims else xyz).permute(0, 1, 4, 3, 2)
        ours = torch.flip(zyx, [a + 2 for a in axes]) if axes else zyx
        assert torch.equal(ours, theirs), axes


def test_non_equivariant_predict_fn_gives_explicit_average(rng):
    predict = _conv(_random_kernel(1, (3, 5, 3)))
    batch = torch.from_numpy(rng.normal(size=(2, 1, 12, 10, 14)).astype(np.float32))
    expected = _explicit_average(predict, batch)
    plain = predict(batch)
    assert (plain.double() - expected).abs().max() > 0.1  # the flips matter for this predict_fn
    for max_batch in (None, 3, 16):
        ours = with_mirroring(predict, max_batch=max_batch)(batch)
        assert ours.dtype == torch.float32 and ours.shape == batch.shape
        np.testing.assert_allclose(ours.double().numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axes_sets", [((1,),), ((), (2,)), ((0, 2), (1,), ())])
def test_subset_of_mirrorings_gives_its_own_average(rng, axes_sets):
    predict = _conv(_random_kernel(5))
    batch = torch.from_numpy(rng.normal(size=(1, 1, 9, 11, 10)).astype(np.float32))
    outputs = [torch.flip(predict(torch.flip(batch, [a + 2 for a in axes])), [a + 2 for a in axes]) if axes
               else predict(batch) for axes in axes_sets]
    expected = torch.stack(outputs).double().mean(0)
    ours = with_mirroring(predict, axes_sets)(batch)
    np.testing.assert_allclose(ours.double().numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_flips_are_batched_as_the_caller_asks(rng):
    sizes: list[int] = []

    def predict(x):
        sizes.append(x.shape[0])
        return x

    batch = torch.from_numpy(rng.normal(size=(3, 1, 4, 4, 4)).astype(np.float32))
    with_mirroring(predict)(batch)
    assert sizes == [24]
    for max_batch, calls in ((6, [6] * 4), (5, [3] * 8), (2, [2, 1] * 8)):
        sizes.clear()
        with_mirroring(predict, max_batch=max_batch)(batch)
        assert sizes == calls, max_batch  # whole flips per call, never more than max_batch windows
    sizes.clear()
    with_mirroring(predict, axes_sets=((),))(batch)
    assert sizes == [3]


@pytest.mark.parametrize("predict", [lambda x: 2 * x + 1, _conv(_symmetric_kernel(2))], ids=["pointwise", "symmetric"])
def test_flip_equivariant_predict_fn_is_unchanged(rng, predict):
    volume = rng.normal(size=(40, 37, 50)).astype(np.float32)
    with_tta, without = _blend(volume, with_mirroring(predict)), _blend(volume, predict)
    np.testing.assert_allclose(with_tta, without, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(48, 48, 48), (40, 64, 30), (24, 64, 32)])
def test_equals_membrain_segs_whole_volume_mirroring_on_symmetric_grids(rng, shape):
    """MemBrain-seg: 8 sliding-window passes over the mirrored tomogram, flipped back, averaged.

    The shapes have mirror-symmetric window grids (size - roi a multiple of the step, two
    windows, or an even padding), where per-window mirroring must give the same scores.
    """
    volume = rng.normal(size=shape).astype(np.float32)
    predict = _conv(_random_kernel(4))
    whole = torch.from_numpy(volume)[None, None]
    expected = torch.zeros_like(whole)
    with torch.no_grad():
        for dims in ZYX_FLIP_DIMS:
            flipped = torch.flip(whole, dims) if dims else whole
            out = sliding_window_inference(flipped, ROI, 1, predict, overlap=0.5, mode="gaussian")
            expected += torch.flip(out, dims) if dims else out
    expected /= 8
    ours = _blend(volume, with_mirroring(predict))
    no_tta = _blend(volume, predict)
    assert np.abs(no_tta - expected[0, 0].numpy()).max() > 0.1
    np.testing.assert_allclose(ours, expected[0, 0].numpy(), rtol=1e-5, atol=1e-5)


def _membrain_whole_volume_tta(volume: np.ndarray, predict) -> np.ndarray:
    """MemBrain-seg: 8 sliding-window passes over the mirrored tomogram, flipped back, averaged."""
    whole = torch.from_numpy(volume)[None, None]
    expected = torch.zeros_like(whole)
    with torch.no_grad():
        for dims in ZYX_FLIP_DIMS:
            flipped = torch.flip(whole, dims) if dims else whole
            out = sliding_window_inference(flipped, ROI, 1, predict, overlap=0.5, mode="gaussian")
            expected += torch.flip(out, dims) if dims else out
    return (expected / 8)[0, 0].numpy()


@pytest.mark.parametrize("shape", [(70, 50, 25), (31, 50, 70)])  # no axis mirror-symmetric
def test_grid_mirror_passes_reproduce_membrain_seg_on_any_grid(rng, shape):
    """Where the grid is not mirror-symmetric, one blend per mirroring (grid_mirror) is exact."""
    volume = rng.normal(size=shape).astype(np.float32)
    predict = _conv(_random_kernel(6))
    expected = _membrain_whole_volume_tta(volume, predict)
    total = np.zeros(shape, np.float32)

    def add(z_start: int, slab: np.ndarray) -> None:
        total[z_start:z_start + len(slab)] += slab

    for axes in MIRROR_AXES:
        blend_windows(volume, with_mirroring(predict, (axes,)), emit=add, roi=ROI, overlap=0.5, grid_mirror=axes)
    np.testing.assert_allclose(total / 8, expected, rtol=1e-5, atol=1e-5)
    per_window = _blend(volume, with_mirroring(predict))
    assert np.abs(per_window - expected).max() > 0.1  # the grid is asymmetric: per-window TTA differs here


@pytest.mark.parametrize("axes_sets, max_batch, message", [
    ((), None, "empty"), (((3,),), None, "spatial axes"), (((0, 0),), None, "distinct"),
    (((0, 1), (1, 0)), None, "repeats"), ((("z",),), None, "axes_sets"), (MIRROR_AXES, 0, "max_batch"),
])
def test_bad_mirrorings_raise_config_error(axes_sets, max_batch, message):
    with pytest.raises(ConfigError, match=message):
        with_mirroring(lambda x: x, axes_sets, max_batch=max_batch)


def test_wrong_output_shape_raises_config_error():
    wrapped = with_mirroring(lambda x: x[:1])
    with pytest.raises(ConfigError, match="predict_fn returned shape"):
        wrapped(torch.zeros(1, 1, 4, 4, 4))
