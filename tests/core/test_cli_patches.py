"""``bilayer patches``: suggest → extract → merge from the command line; bad inputs are one line, exit
status 2, and write nothing."""

from __future__ import annotations

import nrrd
import numpy as np
import pytest
from bilayer.annotation.positions import read_positions
from bilayer.cli import main
from bilayer.data.folder import find_pairs
from bilayer.io import read_volume, write_volume


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(32, 40, 48)).astype(np.float32)
    labels = (rng.random((32, 40, 48)) < 0.2).astype(np.int8)
    uncertainty = (0.01 * rng.random((32, 40, 48))).astype(np.float32)
    uncertainty[16:32, 20:36, 4:20] = 0.5
    tomo = write_volume(tmp_path / "tomo.mrc", image, voxel_size=10.0)
    seg = write_volume(tmp_path / "tomo_seg.mrc", labels, voxel_size=10.0)
    unc = write_volume(tmp_path / "tomo_uncertainty.mrc", uncertainty, voxel_size=10.0)
    return tomo, seg, unc, image, labels


def test_the_loop_from_the_command_line(tmp_path, capsys, files):
    tomo, seg, unc, image, labels = files
    code, out, err = run(capsys, "patches", "suggest", unc, "--count", "2", "--size", "16", "--out",
                         tmp_path / "where.star")
    assert code == 0, err
    assert out.count("\n") == 1 and "where.star  2 patches of 16³" in out
    centres = read_positions(tmp_path / "where.star", tomo_name="tomo")
    assert centres[0].tolist() == [24, 28, 12]

    code, out, err = run(capsys, "patches", "extract", tomo, "--labels", seg, "--at", tmp_path / "where.star",
                         "--at", "2,3,30", "--size", "16", "--border", "2", "--out", tmp_path / "data")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 6 and lines[0].endswith("imagesTr/tomo_x12_y28_z24_0000.mrc  centre x 12 y 28 z 24  "
                                                  "box x 4-19 y 20-35 z 16-31")
    assert lines[4].endswith("centre x 2 y 3 z 30  box x 0-15 y 0-15 z 16-31  (shifted inside the tomogram)")
    assert len(find_pairs(tmp_path / "data")) == 3
    np.testing.assert_array_equal(read_volume(tmp_path / "data/imagesTr/tomo_x2_y3_z30_0000.mrc").data,
                                  image[16:32, 0:16, 0:16])

    folder = tmp_path / "corrections" / "tomo_x12_y28_z24"
    folder.mkdir(parents=True)
    add = np.zeros((16, 16, 16), dtype=np.uint8)
    add[5:9, 6, 7:10] = 1
    nrrd.write(str(folder / "Add1.nrrd"), add, index_order="C")
    code, out, err = run(capsys, "patches", "merge", tmp_path / "data", "--corrections", tmp_path / "corrections")
    assert code == 0, err
    assert out.strip().endswith("labelsTr/tomo_x12_y28_z24.mrc")
    merged = read_volume(tmp_path / "data/labelsTr/tomo_x12_y28_z24.mrc").data
    expected = np.where(add == 1, 1, labels[16:32, 20:36, 4:20])
    np.testing.assert_array_equal(merged[2:-2, 2:-2, 2:-2], expected[2:-2, 2:-2, 2:-2])


def test_suggest_from_scores_writes_membrain_csv(tmp_path, capsys):
    scores = np.full((32, 32, 32), 5.0, dtype=np.float32)
    scores[0:16, 16:32, 16:32] = 0.1
    path = write_volume(tmp_path / "t_scores.mrc", scores, voxel_size=10.0)
    code, out, err = run(capsys, "patches", "suggest", path, "--from-scores", "--count", "1", "--size", "16",
                         "--out", tmp_path / "c.csv")
    assert code == 0, err
    assert (tmp_path / "c.csv").read_text() == "24,24,8\n" and "mean -|score|" in out


@pytest.mark.parametrize("argv, words", [
    (["extract", "{tomo}", "--labels", "{tmp}/none.mrc", "--at", "10,10,10", "--size", "16", "--border", "2",
      "--out", "{tmp}/data"], "none.mrc does not exist"),
    (["extract", "{tomo}", "--labels", "{seg}", "--at", "10,10", "--size", "16", "--out", "{tmp}/data"],
     "10,10 does not exist; give a CSV (x,y,z per line) or STAR file of patch centres, or one position as x,y,z"),
    (["extract", "{tomo}", "--labels", "{seg}", "--at", "10,10,100", "--size", "16", "--border", "2",
      "--out", "{tmp}/data"], "centre x=10 y=10 z=100 lies outside"),
    (["extract", "{tomo}", "--labels", "{unc}", "--at", "10,10,10", "--size", "16", "--border", "2",
      "--out", "{tmp}/data"], "expected only 0 background, 1 membrane, 2 ignore"),
    (["merge", "{tmp}/data", "--corrections", "{tmp}"], "holds no label files"),
    (["suggest", "{unc}", "--size", "40", "--out", "{tmp}/c.csv"], "smaller than a 40³ patch"),
    (["suggest", "{unc}", "--out", "{unc}"], "is an input"),
])
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, capsys, files, argv, words):
    tomo, seg, unc, _, _ = files
    before = _listing(tmp_path)
    names = {"tomo": tomo, "seg": seg, "unc": unc, "tmp": tmp_path}
    argv = [a.format(**names) for a in argv]
    code, out, err = run(capsys, "patches", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert _listing(tmp_path) == before
