"""bilayer.batch.records: the run folder's settings record, per-tomogram records, summary and table."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from bilayer.batch import records
from bilayer.batch.records import (
    RUN_FILE,
    SUMMARY_COLUMNS,
    RecordStatus,
    TomogramRecord,
    changed_settings,
    format_table,
    is_done,
    model_id,
    open_run,
    read_record,
    recorded_settings,
    run_table,
    settings_hash,
    tomogram_key,
    write_record,
    write_summary,
)
from bilayer.errors import ConfigError, InputFileError

SETTINGS = {"threshold": 0.5, "window": 160, "tta": True, "voxel_size": None}
MODEL = "sha256:" + "ab" * 32


def _done(run, folder: Path, name: str, *, seconds: float = 2.5, fraction: float = 0.125):
    """A tomogram with one published output and its done record; returns (tomogram, key, output)."""
    tomogram = folder / f"{name}.mrc"
    tomogram.parent.mkdir(parents=True, exist_ok=True)
    tomogram.write_bytes(b"t")
    out = run.folder / f"{name}_seg.mrc"
    out.write_bytes(b"m")
    key = tomogram_key(tomogram)
    write_record(run, key, TomogramRecord.done(run, tomogram, {"mask": out}, seconds=seconds,
                                               membrane_fraction=fraction))
    return tomogram, key, out


def test_first_open_writes_the_run_record_and_the_same_settings_reopen(tmp_path):
    run = open_run(tmp_path / "run", SETTINGS, MODEL)
    saved = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert saved["settings"] == SETTINGS and saved["model_id"] == MODEL
    assert saved["settings_hash"] == run.settings_hash == settings_hash(SETTINGS, MODEL)
    again = open_run(tmp_path / "run", dict(reversed(list(SETTINGS.items()))), MODEL)
    assert again.settings_hash == run.settings_hash
    assert json.loads((tmp_path / "run" / RUN_FILE).read_text()) == saved


def test_changed_settings_or_model_are_refused_naming_the_keys_and_the_fix(tmp_path):
    open_run(tmp_path, SETTINGS, MODEL)
    before = (tmp_path / RUN_FILE).read_text()
    with pytest.raises(ConfigError, match=r"other settings \(threshold, window; see .*--redo.*new folder") as e:
        open_run(tmp_path, {**SETTINGS, "threshold": 0.6, "window": 128}, MODEL)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"other settings \(model_id;"):
        open_run(tmp_path, SETTINGS, "sha256:" + "cd" * 32)
    with pytest.raises(ConfigError, match=r"other settings \(extra;"):
        open_run(tmp_path, {**SETTINGS, "extra": 1}, MODEL)
    assert (tmp_path / RUN_FILE).read_text() == before


def test_redo_rewrites_the_run_record_and_marks_every_record_stale(tmp_path):
    run = open_run(tmp_path / "run", SETTINGS, MODEL)
    _, key_a, _ = _done(run, tmp_path / "in", "a")
    key_b = tomogram_key(tmp_path / "in" / "b.mrc")
    write_record(run, key_b, TomogramRecord.failed(run, tmp_path / "in" / "b.mrc", "boom", seconds=1))
    assert is_done(run, key_a)
    same = open_run(tmp_path / "run", SETTINGS, MODEL, redo=True)
    assert not is_done(same, key_a)  # a redo with the same settings redoes everything
    assert read_record(same, key_a).status is RecordStatus.STALE
    assert read_record(same, key_b).status is RecordStatus.STALE
    new = open_run(tmp_path / "run", {**SETTINGS, "threshold": 0.7}, MODEL, redo=True)
    assert json.loads((tmp_path / "run" / RUN_FILE).read_text())["settings"]["threshold"] == 0.7
    assert open_run(tmp_path / "run", {**SETTINGS, "threshold": 0.7}, MODEL).settings_hash == new.settings_hash


def test_settings_that_are_not_json_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not plain JSON"):
        open_run(tmp_path, {"path": Path("x")}, MODEL)
    assert not (tmp_path / RUN_FILE).exists()


def test_done_and_failed_records_round_trip(tmp_path):
    run = open_run(tmp_path / "run", SETTINGS, MODEL)
    tomogram, key, _ = _done(run, tmp_path / "in", "a", seconds=3.14159, fraction=0.25)
    got = read_record(run, key)
    assert (got.tomogram, got.status, got.seconds, got.membrane_fraction) == (str(tomogram), RecordStatus.DONE,
                                                                              3.142, 0.25)
    assert got.outputs == {"mask": "a_seg.mrc"}  # inside the run folder: relative, so a moved run stays whole
    assert (got.settings_hash, got.model_id) == (run.settings_hash, MODEL)
    assert got.host and got.finished.endswith("+00:00")
    assert TomogramRecord.from_dict(got.to_dict()) == got
    failed = TomogramRecord.failed(run, tmp_path / "b.mrc", "cannot read b.mrc:\n  bad header", seconds=0.5)
    write_record(run, "b", failed)
    back = read_record(run, "b")
    assert back == failed and back.reason == "cannot read b.mrc: bad header" and back.status is RecordStatus.FAILED
    assert not is_done(run, "b")


def test_a_done_record_without_its_outputs_is_not_done(tmp_path):
    run = open_run(tmp_path / "run", SETTINGS, MODEL)
    _, key, out = _done(run, tmp_path / "in", "a")
    outside = tmp_path / "elsewhere" / "a_scores.mrc"
    outside.parent.mkdir()
    outside.write_bytes(b"s")
    write_record(run, key, TomogramRecord.done(run, tmp_path / "in" / "a.mrc", {"mask": out, "scores": outside},
                                               seconds=1, membrane_fraction=0.1))
    assert read_record(run, key).outputs["scores"] == str(outside)
    assert is_done(run, key)
    outside.unlink()
    assert not is_done(run, key)
    assert not is_done(run, "never-seen")


def test_a_record_made_with_other_settings_is_not_done(tmp_path):
    run = open_run(tmp_path / "run", SETTINGS, MODEL)
    _, key, _ = _done(run, tmp_path / "in", "a")
    record = read_record(run, key)
    write_record(run, key, TomogramRecord.from_dict({**record.to_dict(), "settings_hash": "0" * 16}))
    assert not is_done(run, key)
    (run.records / f"{key}.json").write_text("{not json")
    assert read_record(run, key) is None and not is_done(run, key)


def test_summary_json_and_csv_are_rebuilt_from_the_records(tmp_path):
    run = open_run(tmp_path / "run", SETTINGS, MODEL)
    a, key_a, _ = _done(run, tmp_path / "in", "a", seconds=2.5, fraction=0.125)
    b = tmp_path / "in" / "b.mrc"
    write_record(run, tomogram_key(b), TomogramRecord.failed(run, b, "no voxel size, give one", seconds=0.25))
    c, key_c, out_c = _done(run, tmp_path / "in", "c", seconds=1.0, fraction=0.5)
    out_c.unlink()
    json_path, csv_path = write_summary(run)
    summary = json.loads(json_path.read_text())
    assert summary["counts"] == {"done": 1, "failed": 1, "stale": 1}
    assert summary["tomograms"] == [
        {"tomogram": str(a), "key": key_a, "status": "done", "seconds": 2.5, "membrane_fraction": 0.125,
         "outputs": {"mask": "a_seg.mrc"}, "reason": ""},
        {"tomogram": str(b), "key": tomogram_key(b), "status": "failed", "seconds": 0.25, "membrane_fraction": None,
         "outputs": {}, "reason": "no voxel size, give one"},
        {"tomogram": str(c), "key": key_c, "status": "stale", "seconds": 1.0, "membrane_fraction": 0.5,
         "outputs": {"mask": "c_seg.mrc"}, "reason": ""},
    ]
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [list(SUMMARY_COLUMNS),
                    [str(a), "done", "2.5", "0.125", "a_seg.mrc", ""],
                    [str(b), "failed", "0.25", "", "", "no voxel size, give one"],
                    [str(c), "stale", "1.0", "0.5", "c_seg.mrc", ""]]


def test_run_table_statuses_with_a_fake_claim_state(tmp_path):
    run = open_run(tmp_path / "run", SETTINGS, MODEL)
    done, key_done, _ = _done(run, tmp_path / "in", "done", seconds=4.0, fraction=0.2)
    failed, retried, running, waiting, stale = (tmp_path / "in" / f"{n}.mrc"
                                                for n in ("failed", "retried", "running", "waiting", "stale"))
    for t in (failed, retried):
        write_record(run, tomogram_key(t), TomogramRecord.failed(run, t, "bad header", seconds=1))
    held = {tomogram_key(retried), tomogram_key(running), key_done}
    state = {tomogram_key(stale): "stale"}
    order = [done, failed, retried, running, waiting, stale]
    rows = run_table(run, order, lambda key: "held" if key in held else state.get(key, "free"))
    assert [r.status for r in rows] == ["done", "failed", "running", "running", "waiting", "waiting"]
    assert [r.tomogram for r in rows] == [str(t) for t in order]
    assert (rows[0].seconds, rows[0].membrane_fraction, rows[1].reason) == (4.0, 0.2, "bad header")
    assert [r.status for r in run_table(run, order)] == ["done", "failed", "failed", "waiting", "waiting", "waiting"]
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["tomogram", "status", "seconds", "membrane", "reason"]
    assert lines[1].split() == [str(done), "done", "4.0", "0.2000"]
    assert lines[2].split()[-2:] == ["bad", "header"]
    assert lines[-1] == "1 done, 1 failed, 2 running, 2 waiting"
    column = lines[0].index("status")  # the status column is aligned after the widest tomogram
    assert column == max(len(str(t)) for t in order) + 2
    assert all(line[column:].startswith(r.status) for line, r in zip(lines[1:], rows))


def test_keys_are_safe_unique_and_stable(tmp_path):
    one, two = tmp_path / "x" / "t.mrc", tmp_path / "y" / "t.mrc"
    assert tomogram_key(one) != tomogram_key(two)
    assert tomogram_key(one).startswith("t-") and tomogram_key(one) == tomogram_key(str(one))
    digest = hashlib.sha256(str(one.resolve()).encode()).hexdigest()[:10]
    assert tomogram_key(one) == f"t-{digest}"
    odd = tomogram_key(tmp_path / ".hidden name:*?.rec")
    assert odd.startswith("hidden_name___-") and "/" not in odd
    assert len(tomogram_key(tmp_path / ("L" * 300 + ".mrc"))) == 60 + 1 + 10


def test_an_interrupted_write_leaves_the_old_record_and_no_partial_file(tmp_path, monkeypatch):
    run = open_run(tmp_path / "run", SETTINGS, MODEL)
    _, key, _ = _done(run, tmp_path / "in", "a")
    path = run.records / f"{key}.json"
    before = path.read_text()
    real = records.atomic_open

    @contextmanager
    def interrupted(*args, **kwargs):
        with real(*args, **kwargs) as f:
            class Half:
                def write(self, data):
                    f.write(data[: len(data) // 2])
                    raise KeyboardInterrupt
            yield Half()

    monkeypatch.setattr(records, "atomic_open", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_record(run, key, TomogramRecord.failed(run, "a.mrc", "x", seconds=1))
    with pytest.raises(KeyboardInterrupt):
        write_summary(run)
    assert path.read_text() == before
    assert sorted(p.name for p in run.records.iterdir()) == [path.name]
    assert not (run.folder / "summary.json").exists() and not (run.folder / "summary.csv").exists()


def test_model_id_hashes_the_file_and_names_a_missing_one(tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x" * (3 << 20 | 5))  # more than one read chunk
    assert model_id(ckpt) == "sha256:" + hashlib.sha256(ckpt.read_bytes()).hexdigest()
    from bilayer.model.zoo import default_model_path

    assert model_id() == "sha256:" + hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    with pytest.raises(InputFileError, match="missing.pt.*--model"):
        model_id(tmp_path / "missing.pt")


def test_recorded_settings_drop_what_does_not_change_outputs_and_the_comparison_names_keys():
    options = {"device": "cuda:1", "batch_size": 4, "threshold": 0.5}
    assert recorded_settings(options) == {"threshold": 0.5}
    assert changed_settings({"a": 1, "b": 2}, {"a": 1, "c": 3}) == ["b", "c"]
    assert changed_settings({"a": 1, "b": None}, {"a": 1}) == []  # a missing key reads as None
    assert changed_settings({"a": [1, 2]}, {"a": [1, 2]}) == []


def test_the_module_does_not_import_torch():
    import subprocess

    code = ("import sys, bilayer.batch.records as r; r.tomogram_key('t.mrc'); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
