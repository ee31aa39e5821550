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


def test_deconvolve_writes_the_tomogram_beside_it_with_the_options_given(tmp_path, capsys):
    from bilayer.io import read_volume
    from bilayer.preprocess.deconvolve import deconvolve_tomogram

    data = np.random.default_rng(5).normal(size=(12, 16, 20)).astype(np.float32)
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=14.0, origin=(1.0, 2.0, 3.0))
    code, out, err = run(capsys, "preprocess", "deconvolve", str(tomo))
    assert code == 0, err
    assert out.strip() == f"{tmp_path / 't_deconv.mrc'}  12x16x20  voxel 14 A"
    written = read_volume(tmp_path / "t_deconv.mrc")
    assert written.voxel_size == (14.0, 14.0, 14.0) and written.origin == (1.0, 2.0, 3.0)
    np.testing.assert_allclose(written.data, deconvolve_tomogram(data, 14.0), atol=1e-6)
    target = tmp_path / "sub" / "d.mrc"
    code, _, err = run(capsys, "preprocess", "deconvolve", str(tomo), "--defocus", "30000", "--voxel-size", "7",
                       "--amplitude-contrast", "0.1", "--cs", "0.01", "--voltage", "200", "--strength", "0.5",
                       "--falloff", "2", "--highpass-fraction", "0.05", "--skip-lowpass", "--frequencies", "physical",
                       "--out", str(target))
    assert code == 0, err
    expected = deconvolve_tomogram(data, 7.0, defocus=30000.0, amplitude_contrast=0.1, cs=0.01, voltage=200.0,
                                   strength=0.5, falloff=2.0, highpass_fraction=0.05, lowpass=False,
                                   frequencies="physical")
    np.testing.assert_allclose(read_volume(target).data, expected, atol=1e-6)
    assert read_volume(target).voxel_size == (7.0, 7.0, 7.0)
    code, _, err = run(capsys, "preprocess", "deconvolve", str(tomo), "--phase-flip", "--out", str(target),
                       "--overwrite")
    assert code == 0, err
    np.testing.assert_allclose(read_volume(target).data, deconvolve_tomogram(data, 14.0, phase_flip=True), atol=1e-6)


def test_deconvolve_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, capsys):
    data = np.random.default_rng(6).normal(size=(8, 10, 12)).astype(np.float32)
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=1.0)
    for argv, words in ((["--voxel-size", "10", "--defocus", "-5000"], ["defocus=-5000"]),
                        ([], ["t.mrc", "1 Å", "--voxel-size"]),
                        (["--voxel-size", "10", "--out", str(tomo)], ["t.mrc"]),
                        (["--voxel-size", "10", "--frequencies", "exact"], ["exact"])):
        code, _, err = run(capsys, "preprocess", "deconvolve", str(tomo), *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert all(word in err for word in words), err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mrc"]


def test_rescale_writes_beside_the_tomogram_into_a_folder_or_to_a_file(tmp_path, capsys):
    from bilayer.io import read_volume
    from bilayer.preprocess.rescale import rescale_volume

    data = np.random.default_rng(7).normal(size=(30, 34, 40)).astype(np.float32)
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=16.0, origin=(1.0, 2.0, 3.0))
    code, out, err = run(capsys, "preprocess", "rescale", str(tomo), "--voxel-size", "10")
    assert code == 0, err
    assert out.strip() == f"{tmp_path / 't_rescaled.mrc'}  48x54x64  voxel 10 A"
    written = read_volume(tmp_path / "t_rescaled.mrc")
    assert written.origin == (1.0, 2.0, 3.0)
    np.testing.assert_allclose(written.data, rescale_volume(data, (48, 54, 64)), atol=1e-6)
    (tmp_path / "out").mkdir()
    code, out, err = run(capsys, "preprocess", "rescale", str(tomo), "--voxel-size", "20", "--no-smooth-edge",
                         "--out", str(tmp_path / "out"), "--temp-dir", str(tmp_path / "scratch"))
    assert code == 0 and out.startswith(f"{tmp_path / 'out' / 't_rescaled.mrc'}  24x28x32"), err
    np.testing.assert_allclose(read_volume(tmp_path / "out" / "t_rescaled.mrc").data,
                               rescale_volume(data, (24, 28, 32), smooth_edge=False), atol=1e-6)
    code, out, err = run(capsys, "preprocess", "rescale", str(tomo), "--input-voxel-size", "8", "--no-smooth-edge",
                         "--out", str(tmp_path / "r.mrc"))
    assert code == 0 and out.startswith(f"{tmp_path / 'r.mrc'}  24x28x32  voxel 10 A"), err
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == []


def test_rescale_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, capsys):
    tomo = write_volume(tmp_path / "t.mrc", np.random.default_rng(8).normal(size=(30, 30, 30)).astype(np.float32),
                        voxel_size=1.0)
    for argv, words in (([], ["t.mrc", "1 Å", "--voxel-size"]),
                        (["--input-voxel-size", "10", "--voxel-size", "0.5"], ["target_voxel_size", "0.5"]),
                        (["--input-voxel-size", "10", "--voxel-size", "80"], ["--no-smooth-edge"]),
                        (["--input-voxel-size", "10", "--out", str(tomo), "--overwrite"], ["t.mrc", "is an input"])):
        code, _, err = run(capsys, "preprocess", "rescale", str(tomo), *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert all(word in err for word in words), err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mrc"]


def test_match_mask_puts_the_mask_on_the_original_grid_with_its_header(tmp_path, capsys):
    from bilayer.io import read_volume

    original = write_volume(tmp_path / "tomo.mrc", np.zeros((40, 50, 60), np.float32), voxel_size=8.0,
                            origin=(4.0, 5.0, 6.0))
    mask = np.random.default_rng(9).integers(0, 2, size=(32, 40, 48)).astype(np.uint8)
    seg = write_volume(tmp_path / "tomo_rescaled_seg.mrc", mask, voxel_size=10.0, dtype=np.uint8)
    code, out, err = run(capsys, "preprocess", "match-mask", str(seg), "--like", str(original))
    assert code == 0, err
    assert out.strip() == f"{tmp_path / 'tomo_seg.mrc'}  40x50x60  voxel 8 A"
    back = read_volume(tmp_path / "tomo_seg.mrc")
    assert back.data.dtype == np.uint8 and back.origin == (4.0, 5.0, 6.0)
    assert back.data[0, 0, 0] == mask[0, 0, 0] and back.data[-1, -1, -1] == mask[-1, -1, -1]
    code, _, err = run(capsys, "preprocess", "match-mask", str(seg), "--like", str(original))
    assert code == 2 and "tomo_seg.mrc already exists" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "preprocess", "match-mask", str(seg), "--like", str(original), "--voxel-size", "5",
                       "--out", str(tmp_path / "other.mrc"))
    assert code == 2 and "covers" in err and not (tmp_path / "other.mrc").exists()


def test_the_step_commands_merge_a_settings_file_under_the_options_given(tmp_path, capsys):
    from bilayer.io import read_volume
    from bilayer.preprocess.deconvolve import deconvolve_tomogram

    data = np.random.default_rng(5).normal(size=(16, 20, 24)).astype(np.float32)
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=10.0)
    settings = tmp_path / "p.yaml"
    settings.write_text("defocus: 20000\nstrength: 2\n")
    code, out, err = run(capsys, "preprocess", "deconvolve", str(tomo), "--settings", str(settings),
                         "--strength", "0.5")
    assert code == 0, err
    written = read_volume(tmp_path / "t_deconv.mrc").data
    np.testing.assert_array_equal(written, deconvolve_tomogram(data, 10.0, defocus=20000, strength=0.5))
    settings.write_text("step: rescale\n")  # the command names the step; a file may not change it
    code, _, err = run(capsys, "preprocess", "deconvolve", str(tomo), "--settings", str(settings), "--out",
                       str(tmp_path / "o.mrc"))
    assert code == 0 and (tmp_path / "o.mrc").is_file(), err


def test_every_preprocessing_option_is_an_option_of_a_step_command():
    from bilayer.cli_preprocess import deconvolve, match_spectrum, rescale
    from bilayer.preprocess.steps import PreprocessOptions

    names = {p.name for command in (deconvolve, match_spectrum, rescale) for p in command.params}
    assert [n for n in PreprocessOptions.names() if n not in names and n != "step"] == []
