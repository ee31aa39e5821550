"""``bilayer segment``, ``components``, ``skeletonize``: options, outputs, and every bad input
refused before any work with one line naming the file and the fix, exit 2, nothing left."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import bilayer
from bilayer.batch.runner import RUN_BOOKKEEPING
from bilayer.cli import main
from bilayer.io import read_volume, write_volume


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


#: What a run folder holds besides the outputs (bilayer.batch: the run record, records, claims, summary).
RUN_FILES = RUN_BOOKKEEPING


def _outputs(folder: Path) -> list[str]:
    """The names in ``folder`` less the run's bookkeeping, sorted (hidden temporary files included)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in RUN_FILES)


def _tomogram(folder: Path, name: str, shape=(64, 80, 72), seed=0) -> Path:
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return write_volume(folder / name, data, voxel_size=10.0, origin=(5.0, 6.0, 7.0))


def test_segment_writes_every_output_with_the_input_geometry(tmp_path, capsys, membrain_tiny_ckpt):
    source = _tomogram(tmp_path, "tomo.mrc")
    code, out, err = run(capsys, "segment", str(source), "--model", str(membrain_tiny_ckpt), "--out",
                         str(tmp_path / "out"), "--window", "64", "--no-tta", "--scores", "--components",
                         "--min-size", "5", "--skeleton")
    assert code == 0, err
    names = _outputs(tmp_path / "out")
    assert names == ["tomo_components.mrc", "tomo_preview.png", "tomo_scores.mrc", "tomo_seg.mrc",
                     "tomo_skeleton.mrc"]
    mask = read_volume(tmp_path / "out" / "tomo_seg.mrc")
    scores = read_volume(tmp_path / "out" / "tomo_scores.mrc")
    assert mask.data.dtype == np.int8 and scores.data.dtype == np.float32
    np.testing.assert_array_equal(mask.data, (scores.data > 0).astype(np.int8))
    for name in ("tomo_seg.mrc", "tomo_components.mrc", "tomo_skeleton.mrc"):
        v = read_volume(tmp_path / "out" / name)
        assert v.voxel_size == pytest.approx((10.0,) * 3) and v.origin == pytest.approx((5.0, 6.0, 7.0))
    assert out.count("\n") == 1 and "tomo.mrc: membrane" in out


def test_a_tomogram_failing_during_the_work_leaves_nothing_and_the_others_complete(tmp_path, capsys,
                                                                                   membrain_tiny_ckpt):
    good = _tomogram(tmp_path, "good.mrc")
    flat = write_volume(tmp_path / "flat.mrc", np.full((64, 80, 72), 3.0, np.float32), voxel_size=10.0)
    code, out, err = run(capsys, "segment", str(flat), str(good), "--model", str(membrain_tiny_ckpt),
                         "--out", str(tmp_path / "o"), "--window", "64", "--no-tta", "--scores", "--components")
    assert code == 2
    assert err.count("bilayer: error:") == 1 and "flat.mrc" in err and "same value everywhere" in err
    assert _outputs(tmp_path / "o") == ["good_components.mrc", "good_preview.png",
                                        "good_scores.mrc", "good_seg.mrc"]
    assert "good.mrc: membrane" in out


def test_no_rescale_feeds_the_voxels_as_they_are(tmp_path, capsys, membrain_tiny_ckpt):
    data = np.random.default_rng(3).normal(size=(64, 64, 64)).astype(np.float32)
    source = write_volume(tmp_path / "t.mrc", data, voxel_size=14.0)  # the model's voxel size is 10 Å
    scores = {}
    for name, extra in (("rescaled", []), ("as_is", ["--no-rescale"]), ("told_10", ["--voxel-size", "10"])):
        code, _, err = run(capsys, "segment", str(source), "--model", str(membrain_tiny_ckpt), "--out",
                           str(tmp_path / name), "--window", "64", "--no-tta", "--scores", "--no-preview", *extra)
        assert code == 0, err
        scores[name] = read_volume(tmp_path / name / "t_scores.mrc")
    np.testing.assert_allclose(scores["as_is"].data, scores["told_10"].data, atol=1e-6)
    assert np.abs(scores["as_is"].data - scores["rescaled"].data).max() > 1e-3
    assert scores["as_is"].voxel_size == pytest.approx((14.0,) * 3)  # the header still tells the truth


def test_segment_refuses_a_checkpoint_that_would_run_code(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import torch

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload()}, evil)
    source = _tomogram(tmp_path, "t.mrc")
    code, _, err = run(capsys, "segment", str(source), "--model", str(evil), "--out", str(tmp_path / "o"))
    assert code == 2 and "evil.ckpt" in err and "run code" in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists()
    assert not (tmp_path / "o" / "t_seg.mrc").exists()


def test_segment_without_a_model_uses_the_default_or_says_how_to_give_one(tmp_path, capsys):
    from bilayer.model import default_model_path

    code, out, err = run(capsys, "segment", str(_tomogram(tmp_path, "t.mrc")), "--out", str(tmp_path), "--no-tta")
    try:
        default_model_path()
    except bilayer.errors.InputFileError:
        assert code == 2 and "--model" in err and "default model" in err
    else:
        assert code == 0 and (tmp_path / "t_seg.mrc").is_file(), err


def test_components_and_skeletonize_commands(tmp_path, capsys):
    mask = np.zeros((24, 32, 32), np.int8)
    mask[8:13, 4:28, 4:28] = 1  # a thick plate
    mask[18:21, 2:5, 2:5] = 1  # a small blob
    path = write_volume(tmp_path / "m.mrc", mask, voxel_size=12.0)
    code, out, err = run(capsys, "components", str(path), "--min-size", "100")
    assert code == 0, err
    labels = read_volume(tmp_path / "m_components.mrc")
    assert "1 components" in out and set(np.unique(labels.data)) == {0, 1}
    code, out, err = run(capsys, "skeletonize", str(path), "--out", str(tmp_path / "sk"))
    assert code == 0, err
    skeleton = read_volume(tmp_path / "sk" / "m_skeleton.mrc").data
    interior = (slice(8, 24), slice(8, 24))  # the plate's mid-plane, away from its rims
    assert skeleton[(10, *interior)].all() and not skeleton[(slice(8, 10), *interior)].any()
    assert not skeleton[(slice(11, 13), *interior)].any()
    assert read_volume(tmp_path / "sk" / "m_skeleton.mrc").voxel_size == pytest.approx((12.0,) * 3)
    for command, name in (("skeletonize", "m_skeleton.mrc"), ("components", "m_components.mrc")):
        code, _, err = run(capsys, command, str(path), "--out", str(tmp_path / "vs"), "--voxel-size", "14")
        assert code == 0, err
        assert read_volume(tmp_path / "vs" / name).voxel_size == pytest.approx((14.0,) * 3)
    assert read_volume(path).voxel_size == pytest.approx((12.0,) * 3)  # the input is untouched


# ---- every bad input: one line naming the file and the fix, exit 2, nothing in --out, inputs untouched ----

def _digest(paths) -> dict:
    import hashlib

    return {p: hashlib.md5(Path(p).read_bytes()).hexdigest() for p in paths}


def _header_voxel_size(path: Path, value: float) -> Path:
    import mrcfile

    with mrcfile.open(path, mode="r+") as m:
        m.voxel_size = value
    return path


def _refused(capsys, tmp_path, inputs, *extra, model=None, expect=()) -> str:
    """Run segment, assert the run was refused cleanly, return stderr."""
    before = _digest(inputs)
    out_dir = tmp_path / "out"
    argv = ["segment", *map(str, inputs), "--out", str(out_dir), "--window", "64", "--no-tta", "--scores",
            *(["--model", str(model)] if model else []), *extra]
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert all(line.startswith("bilayer: error: ") for line in lines), err
    for text in expect:
        assert text in err, err
    assert not out_dir.exists() or not list(out_dir.iterdir()), list(out_dir.iterdir())
    assert _digest(inputs) == before
    return err


def test_a_1_angstrom_header_is_refused_before_any_work(tmp_path, capsys, membrain_tiny_ckpt):
    source = _header_voxel_size(_tomogram(tmp_path, "unset.mrc"), 1.0)
    err = _refused(capsys, tmp_path, [source], model=membrain_tiny_ckpt, expect=("unset.mrc", "1 Å", "--voxel-size"))
    assert len(err.strip().splitlines()) == 1 and "warning" not in err


def test_a_5000_angstrom_header_is_refused_and_so_is_the_value_given_explicitly(tmp_path, capsys,
                                                                                 membrain_tiny_ckpt):
    source = _header_voxel_size(_tomogram(tmp_path, "huge.mrc"), 5000.0)
    _refused(capsys, tmp_path, [source], model=membrain_tiny_ckpt, expect=("huge.mrc", "5000 Å", "--voxel-size"))
    _refused(capsys, tmp_path, [source], "--voxel-size", "5000", model=membrain_tiny_ckpt,
             expect=("huge.mrc", "up-sampled", "--voxel-size"))


def test_a_run_that_cannot_fit_the_memory_is_refused_naming_the_fix(tmp_path, capsys, membrain_tiny_ckpt):
    source = _tomogram(tmp_path, "fine.mrc")  # 0.5 Å said explicitly: windows of 1280³ voxels
    _refused(capsys, tmp_path, [source], "--voxel-size", "0.5", model=membrain_tiny_ckpt,
             expect=("fine.mrc", "of memory", "--window"))


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_truncated_tomogram_in_a_batch_stops_it_before_any_work(tmp_path, capsys, membrain_tiny_ckpt, where):
    good = _tomogram(tmp_path, "good.mrc")
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(good.read_bytes()[:-500])
    inputs = [bad, good] if where == "first" else [good, bad]
    err = _refused(capsys, tmp_path, inputs, model=membrain_tiny_ckpt, expect=("bad.mrc is truncated",))
    assert len(err.strip().splitlines()) == 1


def test_the_same_file_twice_or_two_files_with_one_stem_are_refused(tmp_path, capsys, membrain_tiny_ckpt):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _tomogram(tmp_path / "a", "tomo.mrc")
    second = _tomogram(tmp_path / "b", "tomo.mrc", seed=1)
    _refused(capsys, tmp_path, [first, first], model=membrain_tiny_ckpt, expect=("given twice",))
    err = _refused(capsys, tmp_path, [first, second], model=membrain_tiny_ckpt,
                   expect=("a/tomo.mrc and", "b/tomo.mrc would both write", "tomo_seg.mrc"))
    assert len(err.strip().splitlines()) == 1


def test_an_output_that_would_replace_an_input_or_exists_is_refused(tmp_path, capsys, membrain_tiny_ckpt):
    source = _tomogram(tmp_path, "t.mrc")
    shadow = _tomogram(tmp_path, "t_seg.mrc", seed=2)  # an input named like t.mrc's mask
    before = _digest([source, shadow])
    code, _, err = run(capsys, "segment", str(source), str(shadow), "--out", str(tmp_path), "--window", "64",
                       "--no-tta", "--model", str(membrain_tiny_ckpt), "--overwrite", "--no-preview")
    assert code == 2 and "t_seg.mrc is an input" in err and _digest([source, shadow]) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mrc", "t_seg.mrc"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "t_scores.mrc").write_bytes(b"mine")
    code, _, err = run(capsys, "segment", str(source), "--out", str(tmp_path / "out"), "--window", "64", "--no-tta",
                       "--model", str(membrain_tiny_ckpt), "--scores")
    assert code == 2 and "t_scores.mrc already exists" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["t_scores.mrc"]
    assert (tmp_path / "out" / "t_scores.mrc").read_bytes() == b"mine"


def test_nan_values_an_output_folder_that_is_a_file_and_a_bad_settings_file(tmp_path, capsys, membrain_tiny_ckpt):
    data = np.random.default_rng(0).normal(size=(64, 64, 64)).astype(np.float32)
    data[30, 3, 4] = np.nan
    nan = write_volume(tmp_path / "nan.mrc", data, voxel_size=10.0)
    _refused(capsys, tmp_path, [nan], model=membrain_tiny_ckpt, expect=("nan.mrc contains NaN",))
    source = _tomogram(tmp_path, "t.mrc")
    (tmp_path / "file").write_text("")
    code, _, err = run(capsys, "segment", str(source), "--out", str(tmp_path / "file"), "--model",
                       str(membrain_tiny_ckpt))
    assert code == 2 and "file" in err and "--out" in err and len(err.strip().splitlines()) == 1
    settings = tmp_path / "s.yaml"
    settings.write_text("windw: 96\n")
    _refused(capsys, tmp_path, [source], "--settings", str(settings), model=membrain_tiny_ckpt,
             expect=("windw", "known ones"))


def test_a_full_output_disk_is_refused_before_any_work(tmp_path, capsys, membrain_tiny_ckpt):
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN); the in-work case is tested below")
    try:
        source = _tomogram(tmp_path, "t.mrc", shape=(96, 96, 96))
        code, _, err = run(capsys, "segment", str(source), "--out", str(small), "--window", "64", "--no-tta",
                           "--scores", "--model", str(membrain_tiny_ckpt))
        assert code == 2 and "free" in err and "--out" in err and len(err.strip().splitlines()) == 1
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_disk_filling_up_during_the_work_leaves_no_partial_files(tmp_path, capsys, membrain_tiny_ckpt,
                                                                    monkeypatch):
    import errno

    import bilayer.io.mrc_writer as mrc_writer

    first, second = _tomogram(tmp_path, "a.mrc"), _tomogram(tmp_path, "b.mrc", seed=1)
    argv = ["segment", str(first), str(second), "--window", "64", "--no-tta", "--scores", "--no-preview", "--model",
            str(membrain_tiny_ckpt), "--out"]
    original, writes, fail_at = mrc_writer._pwrite_all, [], [None]

    def fill_up(fd, data, offset):
        writes.append(offset)
        if fail_at[0] is not None and len(writes) >= fail_at[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(fd, data, offset)

    monkeypatch.setattr(mrc_writer, "_pwrite_all", fill_up)
    assert run(capsys, *argv, str(tmp_path / "counted"))[0] == 0
    fail_at[0], writes[:] = len(writes) // 2 + 2, []  # a's outputs are done; the disk fills during b's
    code, out, err = run(capsys, *argv, str(tmp_path / "o"))
    assert code == 2, (out, err)
    assert err.count("bilayer: error:") == 1 and "No space left on device" in err and "--out" in err
    assert "a.mrc: membrane" in out and "b.mrc" not in out
    names = _outputs(tmp_path / "o")  # hidden temporary files would show here too
    assert names == ["a_scores.mrc", "a_seg.mrc"]


def test_a_file_size_limit_stops_the_run_in_one_line_with_nothing_left(tmp_path, membrain_tiny_ckpt):
    """A real write failure (EFBIG, as a full disk gives ENOSPC) in a separate process."""
    import resource
    import signal
    import subprocess
    import sys

    source = _tomogram(tmp_path, "t.mrc", shape=(64, 96, 96))
    limit = 200_000  # bytes: the mask (~590 kB) cannot be written

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, "-m", "bilayer", "segment", str(source), "--out", str(tmp_path / "o"),
                             "--window", "64", "--no-tta", "--model", str(membrain_tiny_ckpt)],
                            capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "t_seg.mrc" in lines[0] and "File too large" in lines[0], result.stderr
    assert _outputs(tmp_path / "o") == []


def test_a_settings_file_sets_options_and_the_command_line_overrides_it(tmp_path, capsys, membrain_tiny_ckpt):
    source = _tomogram(tmp_path, "t.mrc")
    settings = tmp_path / "s.yaml"
    settings.write_text(f"model: {membrain_tiny_ckpt}\nwindow: 64\ntta: no\nscores: yes\nthreshold: 0.5\n"
                        "preview: no\n")
    code, _, err = run(capsys, "segment", str(source), "--out", str(tmp_path / "a"), "--settings", str(settings))
    assert code == 0, err
    assert _outputs(tmp_path / "a") == ["t_scores.mrc", "t_seg.mrc"]
    scores = read_volume(tmp_path / "a" / "t_scores.mrc").data
    np.testing.assert_array_equal(read_volume(tmp_path / "a" / "t_seg.mrc").data, scores > 0.5)
    code, _, err = run(capsys, "segment", str(source), "--out", str(tmp_path / "b"), "--settings", str(settings),
                       "--threshold", "-0.5")
    assert code == 0, err
    np.testing.assert_array_equal(read_volume(tmp_path / "b" / "t_seg.mrc").data, scores > -0.5)


def test_every_engine_option_is_an_option_of_segment_and_arrives():
    from bilayer.cli_segment import segment_command, segment_options_from_args
    from bilayer.infer.config import SegmentOptions

    params = {p.name for p in segment_command.params}
    missing = [name for name in SegmentOptions.names() if name not in params]
    assert not missing, f"engine options without a `bilayer segment` option: {missing}"
    argv = ["t.mrc", "--model", "m.ckpt", "--device", "cpu", "--voxel-size", "12.5", "--window", "96",
            "--fixed-window", "--overlap", "0.25", "--no-tta", "--tta-grid", "window", "--batch-size", "3",
            "--precision", "float32", "--threshold", "0.7", "--no-rescale", "--rescale-like-membrain",
            "--padding", "zeros", "--scores", "--components", "--min-size", "7", "--skeleton", "--no-preview",
            "--raw-uncertainty", "--extra-threshold", "0.5, 1.5", "--extra-threshold", "-1"]
    got = segment_options_from_args(argv).to_dict()
    defaults = SegmentOptions().to_dict()
    assert got["extra_thresholds"] == [0.5, 1.5, -1.0]
    unsettable = {"uncertainty"}  # needs TTA, which this command line turns off: checked on its own below
    assert all(got[name] != defaults[name] for name in SegmentOptions.names() if name not in unsettable), got
    assert segment_options_from_args(["t.mrc", "--uncertainty"]).outputs.uncertainty is True


def test_threshold_writes_a_mask_per_threshold_from_segments_scores(tmp_path, capsys, membrain_tiny_ckpt):
    source = _tomogram(tmp_path, "t.mrc")
    code, _, err = run(capsys, "segment", str(source), "--model", str(membrain_tiny_ckpt), "--out", str(tmp_path / "s"),
                       "--window", "64", "--no-tta", "--scores", "--no-preview")
    assert code == 0, err
    scores = tmp_path / "s" / "t_scores.mrc"
    code, out, err = run(capsys, "threshold", str(scores), "-t", "0", "-t", "1.5", "--out", str(tmp_path / "m"))
    assert code == 0, err
    assert out.count("\n") == 2 and "t_seg_t1.5.mrc  threshold 1.5" in out
    np.testing.assert_array_equal(read_volume(tmp_path / "m" / "t_seg_t0.mrc").data,
                                  read_volume(tmp_path / "s" / "t_seg.mrc").data)  # 0 is segment's default
    high = read_volume(tmp_path / "m" / "t_seg_t1.5.mrc")
    np.testing.assert_array_equal(high.data, read_volume(scores).data > 1.5)
    assert high.origin == pytest.approx((5.0, 6.0, 7.0))
    code, _, err = run(capsys, "threshold", str(scores), str(tmp_path / "s" / "t_seg.mrc"), "-t", "2",
                       "--out", str(tmp_path / "n"))
    assert code == 2 and "t_seg.mrc holds int8 values, not scores" in err
    assert not (tmp_path / "n").exists() or list((tmp_path / "n").iterdir()) == []


def test_segment_writes_the_uncertainty_and_masks_at_extra_thresholds(tmp_path, capsys, membrain_tiny_ckpt):
    source = _tomogram(tmp_path, "t.mrc", shape=(40, 64, 64))
    out = tmp_path / "o"
    code, _, err = run(capsys, "segment", str(source), "--model", str(membrain_tiny_ckpt), "--out", str(out),
                       "--window", "64", "--uncertainty", "--extra-threshold", "-0.5,1", "--scores", "--no-preview")
    assert code == 0, err
    assert _outputs(out) == ["t_scores.mrc", "t_seg.mrc", "t_seg_t-0.5.mrc", "t_seg_t1.mrc",
                             "t_uncertainty.mrc"]
    scores = read_volume(out / "t_scores.mrc").data
    np.testing.assert_array_equal(read_volume(out / "t_seg_t-0.5.mrc").data, scores > -0.5)
    uncertainty = read_volume(out / "t_uncertainty.mrc")
    assert uncertainty.data.dtype == np.float32 and 0 <= uncertainty.data.min() and uncertainty.data.max() <= 2 / 7
    assert uncertainty.voxel_size == pytest.approx((10.0,) * 3) and uncertainty.origin == pytest.approx((5.0, 6.0, 7.0))
    code, _, err = run(capsys, "segment", str(source), "--model", str(membrain_tiny_ckpt), "--out",
                       str(tmp_path / "n"), "--uncertainty", "--no-tta")
    assert code == 2 and err.count("\n") == 1 and "turn test-time augmentation (tta) on" in err
    assert not (tmp_path / "n").exists() or list((tmp_path / "n").iterdir()) == []
    code, _, err = run(capsys, "segment", str(source), "--model", str(membrain_tiny_ckpt), "--out",
                       str(tmp_path / "n"), "--extra-threshold", "half")
    assert code == 2 and "extra_thresholds: 'half' is not a number" in err


# ---- --out is a run folder: reruns skip what is done, changed settings need --redo ----------------------

def test_a_rerun_does_only_the_rest_a_changed_setting_needs_redo_and_retry_failed_retakes_failures(tmp_path, capsys,
                                                                                                  membrain_tiny_ckpt):
    a, b = _tomogram(tmp_path, "a.mrc", shape=(64, 64, 64)), _tomogram(tmp_path, "b.mrc", shape=(64, 64, 64), seed=1)
    flat = write_volume(tmp_path / "flat.mrc", np.full((64, 64, 64), 3.0, np.float32), voxel_size=10.0)
    argv = ["segment", "--out", str(tmp_path / "run"), "--model", str(membrain_tiny_ckpt), "--window", "64",
            "--no-tta", "--no-preview"]
    code, out, err = run(capsys, *argv, str(a), str(flat))
    assert code == 2 and err.count("bilayer: error:") == 1 and "flat.mrc" in err
    mask = tmp_path / "run" / "a_seg.mrc"
    before = mask.stat().st_mtime_ns
    code, out, err = run(capsys, *argv, str(a), str(flat), str(b))
    assert code == 2 and out.splitlines()[0] == "2 done before (1 failed: --retry-failed takes them), 1 to do"
    assert "b.mrc: membrane" in out and "a.mrc: membrane" not in out and err == ""
    assert mask.stat().st_mtime_ns == before
    code, out, err = run(capsys, *argv, str(a), str(flat), str(b), "--threshold", "1")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "(threshold;" in lines[0] and "--redo" in lines[0], err
    assert mask.stat().st_mtime_ns == before
    code, out, err = run(capsys, *argv, str(a), str(flat), str(b), "--retry-failed")
    assert code == 2 and out.splitlines()[0] == "2 done before, 1 to do" and "flat.mrc" in err
    code, out, err = run(capsys, *argv, str(a), str(b), "--threshold", "1", "--redo")
    assert code == 0, err
    assert "a.mrc: membrane" in out and "b.mrc: membrane" in out and mask.stat().st_mtime_ns != before
    code, out, _ = run(capsys, *argv, str(a), str(b), "--threshold", "1")
    assert code == 0 and out.strip() == "2 done before, 0 to do"
