"""``bilayer preprocess``: the spectrum command writes MemBrain-seg's TSV; bad inputs are one line, exit 2."""

from __future__ import annotations

import numpy as np

from bilayer.cli import main
from bilayer.io import write_volume
from bilayer.preprocess.spectrum import amplitude_spectrum, read_spectrum


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_spectrum_writes_the_tsv_beside_the_tomogram_or_where_asked(tmp_path, capsys):
    data = np.random.default_rng(0).normal(size=(12, 16, 20)).astype(np.float32)
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=10.0)
    code, out, err = run(capsys, "preprocess", "spectrum", str(tomo))
    assert code == 0, err
    assert "t_spectrum.tsv  10 bins" in out
    np.testing.assert_array_equal(read_spectrum(tmp_path / "t_spectrum.tsv"), amplitude_spectrum(data))
    code, _, err = run(capsys, "preprocess", "spectrum", str(tomo))
    assert code == 2 and "t_spectrum.tsv already exists" in err
    code, _, err = run(capsys, "preprocess", "spectrum", str(tomo), "--out", str(tmp_path / "sub" / "s.tsv"))
    assert code == 0 and (tmp_path / "sub" / "s.tsv").is_file(), err


def test_spectrum_refuses_what_is_no_tomogram(tmp_path, capsys):
    (tmp_path / "t.mrc").write_bytes(b"not an MRC file at all")
    code, _, err = run(capsys, "preprocess", "spectrum", str(tmp_path / "t.mrc"))
    assert code == 2 and "t.mrc" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mrc"]


def test_match_spectrum_writes_the_filtered_tomogram_with_the_inputs_geometry(tmp_path, capsys):
    from bilayer.io import read_volume
    from bilayer.preprocess.spectrum import match_spectrum

    rng = np.random.default_rng(3)
    data = rng.normal(size=(12, 16, 20)).astype(np.float32)
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=14.0, origin=(1.0, 2.0, 3.0))
    reference = write_volume(tmp_path / "ref.mrc", rng.normal(size=(12, 16, 20)).astype(np.float32), voxel_size=10.0)
    assert run(capsys, "preprocess", "spectrum", str(reference))[0] == 0
    target = tmp_path / "ref_spectrum.tsv"
    code, out, err = run(capsys, "preprocess", "match-spectrum", str(tomo), "--target", str(target), "--smoothen", "0")
    assert code == 0, err
    matched = read_volume(tmp_path / "t_matched.mrc")
    assert matched.voxel_size == (14.0, 14.0, 14.0) and matched.origin == (1.0, 2.0, 3.0)
    np.testing.assert_allclose(matched.data, match_spectrum(data, read_spectrum(target), smoothen=0), atol=1e-6)
    for bad, words in ((tmp_path / "t.mrc", "cannot read the spectrum"), (tmp_path / "notes.txt", "no 'intensity'")):
        if bad.suffix == ".txt":
            bad.write_text("freq\tamplitude\n0\t1\n")
        code, _, err = run(capsys, "preprocess", "match-spectrum", str(tomo), "--target", str(bad),
                           "--out", str(tmp_path / "x.mrc"))
        assert code == 2 and words in err and str(bad) in err and not (tmp_path / "x.mrc").exists()
