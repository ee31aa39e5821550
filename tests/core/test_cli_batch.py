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


def test_segment_takes_globs_lists_and_relion_star_lists(tmp_path, capsys, membrain_tiny_ckpt, monkeypatch):
    shape = (64, 64, 64)
    folder = tmp_path / "tomos"
    folder.mkdir()
    paths = [write_volume(folder / f"ts_{i}.mrc", np.random.default_rng(i).normal(size=shape).astype(np.float32),
                          voxel_size=10.0) for i in range(3)]
    (tmp_path / "todo.txt").write_text("# the third\ntomos/ts_2.mrc\n")
    (tmp_path / "tomograms.star").write_text("data_\nloop_\n_rlnMicrographName #1\ntomos/ts_0.mrc\n")
    monkeypatch.chdir(tmp_path)
    common = ["--model", str(membrain_tiny_ckpt), "--window", "64", "--no-tta", "--no-preview"]
    code, out, err = _run(capsys, "segment", "tomos/ts_[01].mrc", "@todo.txt", "--out", "run", *common)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "run").glob("*_seg.mrc")) == [f"{p.stem}_seg.mrc" for p in paths]
    code, out, err = _run(capsys, "segment", "tomograms.star", "--out", "run", *common)
    assert code == 0 and "1 done before, 0 to do" in out
    code, out, err = _run(capsys, "segment", "tomos/ts_0.mrc", "gone.mrc", "lost.mrc", "--out", "run", *common)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "2 tomogram file(s) do not exist" in err and "gone.mrc" in err and "lost.mrc" in err
    code, out, err = _run(capsys, "segment", "nothing*.mrc", "--out", "run", *common)
    assert code == 2 and "the pattern nothing*.mrc matches no tomogram file" in err
