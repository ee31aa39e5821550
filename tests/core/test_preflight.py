"""bilayer.infer.preflight: every input and output checked, memory and disk estimated, before any work."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bilayer.errors import BilayerError
from bilayer.infer import InferenceConfig, OutputOptions, Predictor
from bilayer.infer.preflight import PLAUSIBLE_VOXEL_SIZE, PreflightError, check_voxel_size, memory_estimate, \
    output_bytes, plan_segmentation
from bilayer.io import Volume, write_volume


@pytest.fixture(scope="module")
def predictor(membrain_tiny_ckpt) -> Predictor:
    return Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64, tta=False), "cpu")


def _tomo(folder, name, shape=(40, 48, 56), voxel_size=10.0):
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return write_volume(folder / name, data, voxel_size=voxel_size)


def test_a_plan_holds_the_opened_tomogram_its_outputs_and_estimates(tmp_path, predictor):
    source = _tomo(tmp_path, "t.mrc")
    (plan,) = plan_segmentation([source], tmp_path, predictor, OutputOptions(scores=True))
    assert plan.source == source and plan.volume.shape == (40, 48, 56)
    assert list(plan.outputs) == ["mask", "scores", "preview"]
    assert plan.output_bytes == output_bytes((40, 48, 56), ["mask", "scores", "preview"])
    assert plan.windows.window == 64 and plan.windows.roi == 64 and not plan.windows.rescale
    assert plan.memory_bytes == memory_estimate((40, 48, 56), plan.windows, predictor)


def test_every_problem_is_listed_one_line_each(tmp_path, predictor):
    good = _tomo(tmp_path, "good.mrc")
    unset = _tomo(tmp_path, "unset.mrc", voxel_size=1.0)
    (tmp_path / "other").mkdir()
    twin = _tomo(tmp_path / "other", "good.mrc")
    with pytest.raises(PreflightError) as caught:
        plan_segmentation([good, unset, good, twin, tmp_path / "missing.mrc"], tmp_path, predictor, OutputOptions())
    problems = caught.value.problems
    assert len(problems) == 4 and all("\n" not in p for p in problems)
    assert "unset.mrc: header voxel size 1 Å" in problems[0] and "--voxel-size" in problems[0]
    assert "given twice" in problems[1]
    assert "would both write" in problems[2] and "good_seg.mrc" in problems[2]
    assert "missing.mrc does not exist" in problems[3]
    assert str(caught.value).endswith("(and 3 more problem(s))")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.mrc", "other", "unset.mrc"]


def test_voxel_sizes_outside_the_plausible_range_need_saying(predictor):
    as_is = Predictor.from_checkpoint(predictor.source, InferenceConfig(window=64, rescale=False), "cpu")
    low, high = PLAUSIBLE_VOXEL_SIZE
    for size in (low, 10.0, high):
        check_voxel_size(Volume(np.zeros((4, 4, 4)), size), as_is, given=False)
    for size in (low * 0.9, high * 1.1):
        with pytest.raises(BilayerError, match="--voxel-size"):
            check_voxel_size(Volume(np.zeros((4, 4, 4)), size), as_is, given=False)
        check_voxel_size(Volume(np.zeros((4, 4, 4)), size), as_is, given=True)  # said explicitly: believed
    check_voxel_size(Volume(np.zeros((4, 4, 4)), 80.0), predictor, given=True)
    with pytest.raises(BilayerError, match="up-sampled more than 8x"):
        check_voxel_size(Volume(np.zeros((4, 4, 4)), 90.0), predictor, given=True)
    check_voxel_size(Volume(np.zeros((4, 4, 4)), 90.0), as_is, given=True)  # not resampled: nothing to refuse


def test_a_run_too_big_for_the_memory_is_refused(tmp_path, predictor):
    source = _tomo(tmp_path, "t.mrc")
    (plan,) = plan_segmentation([source], tmp_path, predictor, OutputOptions(), memory=None)
    with pytest.raises(PreflightError, match=r"t.mrc: segmenting it needs about .* of memory .* --window"):
        plan_segmentation([source], tmp_path, predictor, OutputOptions(), memory=plan.memory_bytes - 1)


def test_the_memory_estimate_grows_with_the_window_the_batch_and_tta(membrain_tiny_ckpt):
    def estimate(**config):
        p = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(**{"window": 64, **config}), "cpu")
        return memory_estimate((200, 400, 400), p.window_plan((200, 400, 400), 10.0), p)

    base = estimate(tta=False)
    assert estimate(tta=False, window=128) > base and estimate(tta=False, batch_size=4) > base
    assert estimate(tta=True) > base


_MEASURE = """
import sys, numpy as np
from bilayer.infer import InferenceConfig, Predictor
from bilayer.infer.preflight import memory_estimate
from bilayer.io import Volume
p = Predictor.from_checkpoint(None, InferenceConfig(window=128, tta=False, fit_window=False), "cpu")
volume = Volume(np.random.default_rng(0).normal(size=(128, 160, 160)).astype(np.float32), 10.0)
p.predict(volume, emit=lambda z, s: None)
# VmHWM: this process image's own peak (ru_maxrss would carry over the forking pytest's across exec)
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak, memory_estimate(volume.shape, p.window_plan(volume.shape, 10.0), p))
"""


def test_the_memory_estimate_covers_a_measured_run_without_crying_wolf():
    """The default model on 128×160×160 at 10 Å in its own process: estimate >= peak RSS, and not 2x it."""
    from bilayer.errors import InputFileError
    from bilayer.model import default_model_path

    try:
        default_model_path()
    except InputFileError:
        pytest.skip("no embedded default model in this checkout")
    out = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    peak, estimate = map(int, out.stdout.split())
    assert peak <= estimate <= 2 * peak, (peak, estimate)


def test_the_disk_check_counts_every_output(tmp_path, predictor, monkeypatch):
    import shutil
    from collections import namedtuple

    source = _tomo(tmp_path, "t.mrc")
    need = output_bytes((40, 48, 56), ["mask", "scores", "components", "skeleton", "preview"])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * need, 0, need))
    with pytest.raises(PreflightError, match=r"the outputs need about .* free; free some space or choose another"):
        plan_segmentation([source], tmp_path, predictor,
                          OutputOptions(scores=True, components=True, skeleton=True))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * need, 0, need + 10**9))
    plan_segmentation([source], tmp_path, predictor, OutputOptions(scores=True, components=True, skeleton=True))


def test_a_voxel_size_per_tomogram_replaces_only_that_header(tmp_path, predictor):
    unset = _tomo(tmp_path, "unset.mrc", voxel_size=1.0)
    fine = _tomo(tmp_path, "fine.mrc", voxel_size=14.0)
    plans = plan_segmentation([unset, fine], tmp_path, predictor, OutputOptions(), voxel_size=[10.0, None])
    assert [p.volume.isotropic_voxel_size for p in plans] == [10.0, 14.0]
    with pytest.raises(PreflightError, match="unset.mrc: header voxel size 1 Å"):
        plan_segmentation([unset, fine], tmp_path, predictor, OutputOptions(), voxel_size=[None, 10.0])


def test_uncertainty_and_extra_masks_are_named_counted_and_checked_first(tmp_path, membrain_tiny_ckpt, monkeypatch):
    import shutil
    import tempfile
    from collections import namedtuple

    with_tta = Predictor.from_checkpoint(membrain_tiny_ckpt, InferenceConfig(window=64), "cpu")
    shape, voxels = (40, 48, 56), 40 * 48 * 56  # one 64³ window, padded evenly: a mirror-symmetric grid
    source = _tomo(tmp_path, "t.mrc", shape)
    outputs = OutputOptions(uncertainty=True, extra_thresholds="1.5, -0.5", preview=False)
    (plan,) = plan_segmentation([source], tmp_path / "a", with_tta, outputs, memory=None)
    assert list(plan.outputs) == ["mask", "uncertainty", "mask_t1.5", "mask_t-0.5"]
    assert [p.name for p in plan.outputs.values()] == ["t_seg.mrc", "t_uncertainty.mrc", "t_seg_t1.5.mrc",
                                                       "t_seg_t-0.5.mrc"]
    assert plan.output_bytes == output_bytes(shape, ["mask", "uncertainty"]) + 2 * (1024 + voxels)
    assert plan.temporary_bytes == 3 * 4 * voxels  # the passes' sums, running means and squares
    assert plan.memory_bytes == memory_estimate(shape, plan.windows, with_tta, outputs=outputs)
    (plain,) = plan_segmentation([source], tmp_path / "a", with_tta, OutputOptions(preview=False), memory=None)
    assert plain.temporary_bytes == 0 and plain.memory_bytes < plan.memory_bytes  # mirrored window by window
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "t_seg_t-0.5.mrc").write_bytes(b"mine")
    with pytest.raises(PreflightError, match="t_seg_t-0.5.mrc already exists"):
        plan_segmentation([source], tmp_path / "a", with_tta, outputs)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(0, 0, 10**6 if str(path) == str(scratch) else 10**12))
    with pytest.raises(PreflightError, match=r"scratch: test-time augmentation passes need a temporary file .* "
                                             r"set TMPDIR"):
        plan_segmentation([source], tmp_path / "b", with_tta, outputs)
    plan_segmentation([source], tmp_path / "b", with_tta, OutputOptions(extra_thresholds=(1.0,)))  # no passes
