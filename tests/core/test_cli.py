"""The ``bilayer`` command: version, help, one-line errors with exit 2, nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest

import bilayer
from bilayer.cli import main
from bilayer.io import read_volume, write_volume


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"bilayer {bilayer.__version__}"


def test_python_dash_m_and_console_script_both_work():
    for command in ([sys.executable, "-m", "bilayer", "--version"], [shutil.which("bilayer") or "bilayer", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"bilayer {bilayer.__version__}"


def test_synth_help_names_its_outputs_and_options(capsys):
    code, out, _ = run(capsys, "synth", "--help")
    assert code == 0
    for word in ("--seed", "--shape", "--voxel-size", "--config", "_labels.mrc", "ignore"):
        assert word in out


def test_help_lists_the_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("synth", "preview", "info"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [["--no-such-option"], ["no-such-command"], ["info"], ["synth", "--shape", "1", "2"], ["synth", "--count", "0"]],
)
def test_usage_errors_are_one_line_with_exit_2(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("bilayer: error: ")
    assert "Usage:" not in err


def _bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input the issue names, with the words its message must contain."""
    cases: dict[str, tuple[Path, str]] = {"missing": (folder / "nothere.mrc", "does not exist")}
    text = folder / "notes.mrc"
    text.write_text("this is not a tomogram\n" * 100)
    cases["not an MRC"] = (text, "not a readable MRC file")
    png = folder / "picture.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    cases["other format"] = (png, "not an MRC file by its name")
    good = folder / "good.mrc"
    write_volume(good, np.zeros((8, 16, 16), np.float32), voxel_size=10)
    truncated = folder / "truncated.mrc"
    truncated.write_bytes(good.read_bytes()[:-100])
    cases["truncated"] = (truncated, "truncated")
    flat = folder / "flat.mrc"
    with mrcfile.new(flat) as mrc:
        mrc.set_data(np.zeros((16, 16), np.float32))
        mrc.voxel_size = 10
    cases["2D image"] = (flat, "2-D image")
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        bad = folder / f"{name}.mrc"
        data = np.zeros((8, 16, 16), np.float32)
        data[4, 4, 4] = value
        write_volume(bad, data, voxel_size=10)
        cases[name] = (bad, "NaN or Inf")
    zero = folder / "zero_voxel.mrc"
    with mrcfile.new(zero) as mrc:
        mrc.set_data(np.zeros((8, 16, 16), np.float32))
        mrc.voxel_size = 0
    cases["voxel size 0"] = (zero, "--voxel-size")
    return cases


@pytest.mark.parametrize(
    "case", ["missing", "not an MRC", "other format", "truncated", "2D image", "nan", "inf", "voxel size 0"]
)
def test_bad_inputs_give_one_line_naming_the_file_exit_2_and_no_output(tmp_path, capsys, case):
    inputs = tmp_path / "in"
    inputs.mkdir()
    path, words = _bad_inputs(inputs)[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = sorted(p.name for p in inputs.iterdir())
    code, out, err = run(capsys, "preview", str(path), "--out", str(out_dir / "p.png"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("bilayer: error: ")
    assert path.name in err and words in err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []
    assert sorted(p.name for p in inputs.iterdir()) == before


def test_voxel_size_on_the_command_line_rescues_a_zero_header(tmp_path, capsys):
    path, _ = _bad_inputs(tmp_path)["voxel size 0"]
    code, out, err = run(capsys, "info", str(path), "--voxel-size", "13.5")
    assert code == 0, err
    assert "13.5" in out


def test_output_folder_not_writable_is_one_line_and_leaves_nothing(tmp_path, capsys, real_crops):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run(capsys, "preview", str(real_crops["visfd"]), "--out", str(blocker / "sub" / "p.png"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "a_file" in err
    if os.geteuid() != 0:  # root writes anywhere, so this case only means something for users
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        code, _, err = run(capsys, "preview", str(real_crops["visfd"]), "--out", str(locked / "p.png"))
        assert code == 2 and "locked" in err
        assert list(locked.iterdir()) == []


def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bilayer", "--debug", "info", str(tmp_path / "none.mrc")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "InputFileError" in result.stderr


def test_info_on_the_real_crops(capsys, real_crop_paths):
    code, out, err = run(capsys, "info", str(real_crop_paths["tardis"]), str(real_crop_paths["visfd"]))
    assert code == 0
    lines = out.strip().splitlines()
    assert "78×64×32" in lines[0] and "uint8" in lines[0] and "23.2" in lines[0]
    assert "16×16×16" in lines[1] and "int16" in lines[1] and "19.73" in lines[1]
    assert err.count("bilayer: warning:") == 1 and "tardis" in err  # the legacy header, one line


def test_preview_of_a_real_crop_with_a_mask(tmp_path, capsys, real_crops):
    volume = read_volume(real_crops["visfd"])
    mask_path = write_volume(tmp_path / "mask.mrc", volume.with_data(volume.data > np.median(volume.data)))
    code, out, err = run(capsys, "preview", str(real_crops["visfd"]), "--mask", str(mask_path))
    assert code == 0, err
    png = tmp_path / "visfd_membrane_crop_16_preview.png"
    assert out.strip() == str(png)
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, _, err = run(capsys, "preview", str(real_crops["visfd"]))
    assert code == 2 and "already exists" in err


def test_synth_writes_image_labels_parameters_and_preview(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, err = run(capsys, "synth", "--out", str(out), "--shape", "32", "48", "40", "--voxel-size", "12",
                            "--seed", "3")
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["synth_0003.json", "synth_0003.mrc", "synth_0003_labels.mrc", "synth_0003_preview.png"]
    image, labels = read_volume(out / "synth_0003.mrc"), read_volume(out / "synth_0003_labels.mrc")
    assert image.shape == labels.shape == (32, 48, 40)
    assert image.data.dtype == np.float32 and labels.data.dtype == np.int8
    assert image.voxel_size == labels.voxel_size == pytest.approx((12.0, 12.0, 12.0))
    assert set(np.unique(labels.data)) <= {0, 1, 2}
    record = json.loads((out / "synth_0003.json").read_text())
    assert record["seed"] == 3 and record["config"]["voxel_size"] == 12.0
    assert (out / "synth_0003_preview.png").read_bytes()[:4] == b"\x89PNG"
    assert "synth_0003.mrc" in stdout and "12.00 Å" in stdout


def test_synth_is_reproducible_and_seeds_differ(tmp_path, capsys):
    for folder in ("a", "b"):
        code, _, err = run(capsys, "synth", "--out", str(tmp_path / folder), "-n", "2", "--seed", "5",
                           "--shape", "24", "32", "32", "--no-preview")
        assert code == 0, err
    a5, b5 = (read_volume(tmp_path / f / "synth_0005.mrc").data for f in ("a", "b"))
    np.testing.assert_array_equal(a5, b5)
    a6 = read_volume(tmp_path / "a" / "synth_0006.mrc").data
    assert not np.array_equal(a5, a6)
    assert not (tmp_path / "a" / "synth_0005_preview.png").exists()


def test_synth_refuses_to_clobber_and_writes_nothing_then(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path), "-n", "2", "--shape", "16", "24", "24", "--no-preview"]
    assert run(capsys, *args)[0] == 0
    (tmp_path / "synth_0000.mrc").unlink()
    stamp = (tmp_path / "synth_0001.mrc").stat().st_mtime_ns
    code, _, err = run(capsys, *args)
    assert code == 2 and "synth_0000_labels.mrc already exists" in err
    assert not (tmp_path / "synth_0000.mrc").exists()  # nothing of the refused set was written
    assert (tmp_path / "synth_0001.mrc").stat().st_mtime_ns == stamp
    assert run(capsys, *args, "--overwrite")[0] == 0


def test_synth_reads_a_config_file_and_rejects_a_bad_one(tmp_path, capsys):
    good = tmp_path / "config.json"
    good.write_text(json.dumps({"shape": [16, 32, 32], "voxel_size": 15.0}))
    code, out, err = run(capsys, "synth", "--out", str(tmp_path / "o"), "--config", str(good), "--no-preview")
    assert code == 0, err
    assert read_volume(tmp_path / "o" / "synth_0000.mrc").shape == (16, 32, 32)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"voxel_size_range": [20.0, 5.0]}))
    code, _, err = run(capsys, "synth", "--out", str(tmp_path / "p"), "--config", str(bad))
    assert code == 2 and "voxel_size_range" in err and len(err.strip().splitlines()) == 1
    as_yaml = tmp_path / "config.yaml"  # the same settings reader as training: YAML too
    as_yaml.write_text("shape: [16, 32, 48]\nvoxel_size: 15.0\n")
    code, _, err = run(capsys, "synth", "--out", str(tmp_path / "y"), "--config", str(as_yaml), "--no-preview")
    assert code == 0, err
    assert read_volume(tmp_path / "y" / "synth_0000.mrc").shape == (16, 32, 48)
