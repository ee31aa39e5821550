"""bilayer.batch.runner: a resumable run over tomograms: records, claims, failures, kill -9 at random
moments and two processes sharing one run folder (real ``python -m bilayer segment`` processes)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bilayer.batch.claims import try_claim
from bilayer.batch.records import RUN_FILE, is_done, read_record, tomogram_key
from bilayer.batch.runner import RUN_BOOKKEEPING, open_existing_run, run_batch, run_status
from bilayer.cli import main
from bilayer.errors import ConfigError, PreflightError
from bilayer.infer.config import SegmentOptions
from bilayer.io import read_volume, write_volume

SHAPE = (64, 64, 64)


@pytest.fixture(scope="module")
def setup(membrain_tiny_ckpt):
    from bilayer.infer.predictor import Predictor

    options = SegmentOptions.from_dict({"model": str(membrain_tiny_ckpt), "window": 64, "tta": False,
                                        "preview": False, "device": "cpu"})
    return options, Predictor.from_checkpoint(options.model, options.inference, options.device)


def _tomogram(folder: Path, name: str, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)
    return write_volume(folder / name, data, voxel_size=10.0)


def _mtimes(folder: Path, names) -> dict[str, int]:
    return {n: (folder / n).stat().st_mtime_ns for n in names}


def test_a_failing_tomogram_is_recorded_the_others_complete_and_retry_failed_takes_it_again(tmp_path, setup):
    options, predictor = setup
    a, b = _tomogram(tmp_path, "a.mrc"), _tomogram(tmp_path, "b.mrc", seed=1)
    flat = write_volume(tmp_path / "flat.mrc", np.full(SHAPE, 3.0, np.float32), voxel_size=10.0)
    run_dir = tmp_path / "run"
    report = run_batch([a, flat, b], run_dir, options, predictor)
    assert (report.done, report.failed, report.exit_status) == ([a, b], [flat], 2)
    run = open_existing_run(run_dir)
    record = read_record(run, tomogram_key(flat))
    assert record.status.value == "failed" and "flat.mrc" in record.reason and "same value" in record.reason
    assert "\n" not in record.reason
    done = read_record(run, tomogram_key(a))
    mask = read_volume(run_dir / "a_seg.mrc").data
    assert done.membrane_fraction == float(np.count_nonzero(mask)) / mask.size
    assert done.outputs == {"mask": "a_seg.mrc"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["counts"] == {"done": 2, "failed": 1, "stale": 0}
    csv_rows = (run_dir / "summary.csv").read_text().splitlines()
    assert len(csv_rows) == 4 and any(r.startswith(f"{flat.absolute()},failed,") for r in csv_rows)

    before = _mtimes(run_dir, ["a_seg.mrc", "b_seg.mrc"])
    again = run_batch([a, flat, b], run_dir, options, predictor)
    assert (again.done, again.failed, again.done_before, again.failed_before) == ([], [], [a, b], [flat])
    assert again.exit_status == 2 and _mtimes(run_dir, ["a_seg.mrc", "b_seg.mrc"]) == before

    write_volume(flat, np.random.default_rng(5).normal(size=SHAPE).astype(np.float32), voxel_size=10.0,
                 overwrite=True)  # the user fixed the tomogram
    retried = run_batch([a, flat, b], run_dir, options, predictor, retry_failed=True)
    assert (retried.done, retried.done_before, retried.exit_status) == ([flat], [a, b], 0)
    assert [r.status for r in run_status(run_dir)] == ["done", "done", "done"]


def test_a_changed_setting_is_refused_naming_it_and_redo_redoes_everything(tmp_path, setup):
    options, predictor = setup
    a = _tomogram(tmp_path, "a.mrc")
    run_dir = tmp_path / "run"
    run_batch([a], run_dir, options, predictor)
    record_before = (run_dir / RUN_FILE).read_text()
    from bilayer.infer.predictor import Predictor

    higher = SegmentOptions.from_dict({**options.to_dict(), "threshold": 1.5})
    with pytest.raises(ConfigError, match="other inference options"):
        run_batch([a], run_dir, higher, predictor)
    predictor = Predictor.from_checkpoint(higher.model, higher.inference, higher.device)
    with pytest.raises(ConfigError, match=r"\(threshold; see .*--redo"):
        run_batch([a], run_dir, higher, predictor)
    assert (run_dir / RUN_FILE).read_text() == record_before
    scores_before = read_volume(run_dir / "a_seg.mrc").data.copy()
    report = run_batch([a], run_dir, higher, predictor, redo=True)
    assert report.done == [a] and report.done_before == []
    assert read_volume(run_dir / "a_seg.mrc").data.sum() < scores_before.sum()  # a higher threshold: fewer voxels
    assert is_done(open_existing_run(run_dir), tomogram_key(a))


def test_outputs_in_a_folder_without_a_run_record_need_overwrite_and_a_runs_own_are_replaced(tmp_path, setup):
    options, predictor = setup
    a = _tomogram(tmp_path, "a.mrc")
    old = tmp_path / "old"
    old.mkdir()
    (old / "a_seg.mrc").write_bytes(b"someone's")
    with pytest.raises(PreflightError, match="a_seg.mrc already exists"):
        run_batch([a], old, options, predictor)
    assert sorted(p.name for p in old.iterdir()) == ["a_seg.mrc"]  # refused before the run record
    assert run_batch([a], old, options, predictor, overwrite=True).done == [a]
    assert read_volume(old / "a_seg.mrc").shape == SHAPE
    # killed after publishing, before recording: the run's own outputs are redone without --overwrite
    run = open_existing_run(old)
    (run.records / f"{tomogram_key(a)}.json").unlink()
    assert run_batch([a], old, options, predictor).done == [a]


def test_a_tomogram_claimed_by_a_live_process_is_left_to_it_and_one_with_shared_outputs_is_refused(tmp_path, setup):
    options, predictor = setup
    a, b = _tomogram(tmp_path, "a.mrc"), _tomogram(tmp_path, "b.mrc", seed=1)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    claim = try_claim(run_dir, tomogram_key(a))
    with claim:
        report = run_batch([a, b], run_dir, options, predictor)
        assert (report.held, report.done, report.exit_status) == ([a], [b], 0)
        assert not (run_dir / "a_seg.mrc").exists()
        assert [r.status for r in run_status(run_dir)] == ["running", "done"]
    assert [r.status for r in run_status(run_dir)] == ["waiting", "done"]
    assert run_batch([a, b], run_dir, options, predictor).done == [a]
    other = _tomogram(tmp_path / "elsewhere", "a.mrc", seed=2)
    with pytest.raises(PreflightError, match="would both write"):
        run_batch([a, other], run_dir, options, predictor)


# ---- real processes: kill -9 at random moments, two workers on one folder ---------------------------

def _segment_argv(run_dir: Path, sources, ckpt: Path) -> list[str]:
    return [sys.executable, "-m", "bilayer", "segment", *map(str, sources), "--out", str(run_dir), "--model",
            str(ckpt), "--window", "64", "--no-tta", "--no-preview", "--device", "cpu"]


def _check_visible(run_dir: Path, stems) -> None:
    """Every visible name is bookkeeping or a complete output; no temporary file shows."""
    for path in run_dir.iterdir():
        if path.name in RUN_BOOKKEEPING:
            continue
        assert not path.name.startswith("."), path
        assert path.name in {f"{s}_seg.mrc" for s in stems}, path
        assert read_volume(path).shape == SHAPE  # whole: a truncated file fails to read
    for record in (run_dir / "records").glob("*.json") if (run_dir / "records").is_dir() else []:
        json.loads(record.read_text())  # complete JSON


def test_kill_9_at_random_moments_loses_nothing_and_redoes_nothing_finished(tmp_path, membrain_tiny_ckpt):
    sources = [_tomogram(tmp_path, f"t{i}.mrc", seed=i) for i in range(3)]
    stems = [s.stem for s in sources]
    rng = random.Random(21)
    for trial in range(3):
        run_dir = tmp_path / f"run{trial}"
        proc = subprocess.Popen(_segment_argv(run_dir, sources, membrain_tiny_ckpt), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (run_dir / RUN_FILE).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the model is loaded and the inputs checked: the work starts now
        time.sleep(rng.uniform(0.0, 1.2))  # each tomogram takes about 0.3 s here
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _check_visible(run_dir, stems)
        run = open_existing_run(run_dir)
        finished = [s for s in sources if is_done(run, tomogram_key(s))]
        print(f"trial {trial}: {len(finished)} finished when killed")
        before = _mtimes(run_dir, [f"{s.stem}_seg.mrc" for s in finished])
        assert main([*_segment_argv(run_dir, sources, membrain_tiny_ckpt)[3:]]) == 0
        assert all(is_done(run, tomogram_key(s)) for s in sources)
        assert _mtimes(run_dir, before) == before
        assert not list((run_dir / "claims").iterdir())
        _check_visible(run_dir, stems)


def test_two_processes_on_one_run_folder_do_disjoint_tomograms_and_together_all(tmp_path, membrain_tiny_ckpt):
    sources = [_tomogram(tmp_path, f"t{i}.mrc", seed=i) for i in range(4)]
    run_dir = tmp_path / "run"
    procs = [subprocess.Popen(_segment_argv(run_dir, sources, membrain_tiny_ckpt), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    did = [{line.split(":")[0] for line in out.splitlines() if ": membrane" in line} for out, _ in results]
    assert not did[0] & did[1], did
    assert did[0] | did[1] == {s.name for s in sources}
    run = open_existing_run(run_dir)
    assert all(is_done(run, tomogram_key(s)) for s in sources)
    assert os.listdir(run_dir / "claims") == []


def test_sigterm_during_a_tomogram_releases_its_claim_and_leaves_nothing_partial(tmp_path, membrain_tiny_ckpt):
    sources = [_tomogram(tmp_path, f"t{i}.mrc", seed=i) for i in range(3)]
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_segment_argv(run_dir, sources, membrain_tiny_ckpt), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run_dir / "claims").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the first tomogram is claimed: it is being segmented
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert os.listdir(run_dir / "claims") == []  # released, not left to go stale
    _check_visible(run_dir, [s.stem for s in sources])
    run = open_existing_run(run_dir)
    assert not all(is_done(run, tomogram_key(s)) for s in sources)
