"""``bilayer status RUN``: the run folder's table (done / failed / running / waiting), exit 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bilayer.batch.claims import try_claim
from bilayer.batch.records import tomogram_key
from bilayer.cli import main
from bilayer.io import write_volume


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_shows_done_failed_running_and_waiting_tomograms(tmp_path, capsys, membrain_tiny_ckpt):
    shape = (64, 64, 64)
    good = write_volume(tmp_path / "good.mrc", np.random.default_rng(0).normal(size=shape).astype(np.float32),
                        voxel_size=10.0)
    flat = write_volume(tmp_path / "flat.mrc", np.full(shape, 3.0, np.float32), voxel_size=10.0)
    busy = write_volume(tmp_path / "busy.mrc", np.random.default_rng(1).normal(size=shape).astype(np.float32),
                        voxel_size=10.0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with try_claim(run_dir, tomogram_key(busy)):  # held by "another process"
        code, _, _ = _run(capsys, "segment", str(good), str(flat), str(busy), "--out", str(run_dir), "--model",
                          str(membrain_tiny_ckpt), "--window", "64", "--no-tta", "--no-preview")
        assert code == 2
        code, out, err = _run(capsys, "status", str(run_dir))
        assert code == 0 and err == ""
    lines = out.strip().splitlines()
    rows = {Path(line.split()[0]).name: line.split()[1] for line in lines[1:-1]}
    assert lines[0].split() == ["tomogram", "status", "seconds", "membrane", "reason"]
    assert rows == {"good.mrc": "done", "flat.mrc": "failed", "busy.mrc": "running"}
    assert "same value everywhere" in next(line for line in lines if "flat.mrc" in line)
    assert lines[-1] == "1 done, 1 failed, 1 running, 0 waiting"
    code, out, _ = _run(capsys, "status", str(run_dir))  # the claims released: busy waits
    assert code == 0 and out.strip().splitlines()[-1] == "1 done, 1 failed, 0 running, 1 waiting"


def test_status_of_a_folder_that_is_no_run_says_so_in_one_line(tmp_path, capsys):
    code, out, err = _run(capsys, "status", str(tmp_path))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "not a run folder" in err and "bilayer_run.json" in err
