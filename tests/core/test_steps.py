"""bilayer.preprocess.steps: one options contract for every preprocessing step, every input and output
checked before any work, and each step run through the same file-level path the adapters use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bilayer.errors import ConfigError, PreflightError
from bilayer.io import read_volume, write_volume
from bilayer.preprocess.deconvolve import DeconvolutionOptions, deconvolve_tomogram
from bilayer.preprocess.spectrum import SpectrumMatching, amplitude_spectrum, match_spectrum, write_spectrum
from bilayer.preprocess.steps import PreprocessOptions, Step, default_destination, output_kind, plan_preprocessing, \
    preprocess_file, preprocess_options


@pytest.fixture
def tomogram(tmp_path: Path) -> Path:
    data = np.random.default_rng(3).normal(size=(20, 24, 28)).astype(np.float32)
    return write_volume(tmp_path / "t.mrc", data, voxel_size=8.0, origin=(10.0, 20.0, 30.0))


def test_each_step_needs_what_it_works_from():
    assert PreprocessOptions(step="rescale").target_voxel_size == 10.0  # MemBrain-seg's default
    with pytest.raises(ConfigError, match=r"target_voxel_size=1.0 is out of range; use a value in \[2"):
        PreprocessOptions(step="rescale", target_voxel_size=1.0)
    with pytest.raises(ConfigError, match="match-spectrum needs the spectrum to match"):
        PreprocessOptions(step="match-spectrum")
    with pytest.raises(ConfigError, match="choose the preprocessing step: one of rescale, match-spectrum, deconvolve"):
        PreprocessOptions.from_dict({"defocus": 30000})
    with pytest.raises(ConfigError, match="step='denoise' is not one of"):
        PreprocessOptions(step="denoise")
    assert PreprocessOptions(step="deconvolve").step is Step.DECONVOLVE


def test_options_are_flat_and_round_trip_with_the_nested_steps_options():
    names = PreprocessOptions.names()
    assert {"step", "voxel_size", "target_voxel_size", "smooth_edge", "target_spectrum", "cutoff", "smoothen",
            "defocus", "phase_flip"} <= set(names)
    assert len(names) == len(set(names)), "an option name is used twice"
    options = PreprocessOptions.from_dict({"step": "deconvolve", "defocus": 30000.0, "smoothen": 4.0,
                                           "voxel_size": 7.5})
    assert options.deconvolution == DeconvolutionOptions(defocus=30000.0)
    assert options.matching == SpectrumMatching(smoothen=4.0)
    assert PreprocessOptions.from_dict(options.to_dict()) == options
    assert set(options.to_dict()) == set(names)
    json.dumps(options.to_dict())
    with pytest.raises(ConfigError, match=r"unknown preprocessing setting\(s\) 'defocuss'; known ones: step"):
        PreprocessOptions.from_dict({"step": "deconvolve", "defocuss": 1.0})
    with pytest.raises(ConfigError, match="defocus=-5.0"):
        PreprocessOptions.from_dict({"step": "deconvolve", "defocus": -5.0})


def test_the_merge_point_takes_defaults_then_the_settings_file_then_given_values(tmp_path):
    settings = tmp_path / "p.yaml"
    settings.write_text("step: rescale\ntarget_voxel_size: 12\nsmooth_edge: false\n")
    options = preprocess_options(settings, target_voxel_size=10.0, smooth_edge=None)
    assert (options.step, options.target_voxel_size, options.smooth_edge) == (Step.RESCALE, 10.0, False)
    assert options.output_voxel_size(7.0) == 10.0
    assert preprocess_options(step="deconvolve").output_voxel_size(7.0) == 7.0


def test_every_step_has_an_output_name_of_its_own(tmp_path):
    names = {default_destination(tmp_path / "rec_TS_01.mrc", tmp_path / "out", step).name for step in Step}
    assert names == {"rec_TS_01_rescaled.mrc", "rec_TS_01_matched.mrc", "rec_TS_01_deconv.mrc"}
    assert output_kind("deconvolve") == "deconvolved"


def test_the_plan_lists_every_problem_and_writes_nothing(tmp_path, tomogram):
    bad_header = write_volume(tmp_path / "one.mrc", np.ones((8, 8, 8), np.float32), voxel_size=1.0)
    (tmp_path / "broken.mrc").write_bytes(b"no MRC here")
    existing = tmp_path / "t_deconv.mrc"
    existing.write_bytes(b"old")
    options = PreprocessOptions(step="deconvolve")
    sources = [tomogram, bad_header, tmp_path / "broken.mrc", tmp_path / "missing.mrc", tomogram]
    destinations = [existing, tmp_path / "one_deconv.mrc", tmp_path / "b.mrc", tmp_path / "m.mrc", bad_header]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(PreflightError) as caught:
        plan_preprocessing(sources, destinations, options)
    problems = caught.value.problems
    assert len(problems) == 5, problems
    assert "t_deconv.mrc already exists" in problems[0]
    assert "one.mrc: header voxel size 1 Å" in problems[1] and "--voxel-size" in problems[1]
    assert "broken.mrc" in problems[2] and "missing.mrc" in problems[3]
    assert "one.mrc" in problems[4]  # an input may not be replaced
    assert all("\n" not in p for p in problems)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    plans = plan_preprocessing([bad_header], [tmp_path / "ok.mrc"], options, voxel_sizes=[12.0])
    assert plans[0].voxel_size == 12.0 and plans[0].output_voxel_size == 12.0


def test_two_inputs_may_not_write_one_file(tmp_path, tomogram):
    with pytest.raises(PreflightError, match="would both be written to"):
        plan_preprocessing([tomogram, tomogram], [tmp_path / "o.mrc", tmp_path / "o.mrc"],
                           PreprocessOptions(step="deconvolve"))


def test_a_missing_target_spectrum_is_a_planning_problem(tmp_path, tomogram):
    options = PreprocessOptions(step="match-spectrum", target_spectrum=str(tmp_path / "nowhere.tsv"))
    with pytest.raises(PreflightError, match="nowhere.tsv"):
        plan_preprocessing([tomogram], [tmp_path / "o.mrc"], options)


def test_match_spectrum_and_deconvolve_run_through_the_file_path_with_the_inputs_geometry(tmp_path, tomogram):
    data = read_volume(tomogram).data
    target = write_spectrum(tmp_path / "target.tsv", amplitude_spectrum(np.random.default_rng(9).normal(
        size=(20, 24, 28)).cumsum(axis=2)))
    for options, expected in (
        (PreprocessOptions(step="match-spectrum", target_spectrum=str(target), matching=SpectrumMatching(smoothen=3)),
         match_spectrum(data, amplitude_spectrum(np.random.default_rng(9).normal(size=(20, 24, 28)).cumsum(axis=2)),
                        smoothen=3)),
        (PreprocessOptions(step="deconvolve", voxel_size=9.0, deconvolution=DeconvolutionOptions(defocus=20000)),
         deconvolve_tomogram(data, 9.0, defocus=20000)),
    ):
        plan, = plan_preprocessing([tomogram], [default_destination(tomogram, tmp_path / "out", options.step)],
                                   options)
        (tmp_path / "out").mkdir(exist_ok=True)
        written = read_volume(preprocess_file(plan, options))
        np.testing.assert_allclose(written.data, expected, rtol=1e-5, atol=1e-5)
        assert written.origin == (10.0, 20.0, 30.0)
        assert written.voxel_size == pytest.approx((plan.output_voxel_size,) * 3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t_deconv.mrc", "t_matched.mrc"]


def test_the_python_door_takes_options_by_name_or_from_a_settings_file(tmp_path, tomogram):
    import bilayer
    from bilayer.preprocess.rescale import rescale_file

    written = bilayer.preprocess_tomogram(tomogram, step="rescale", target_voxel_size=16.0, smooth_edge=False)
    assert written == tmp_path / "t_rescaled.mrc"
    expected = rescale_file(tomogram, tmp_path / "expected.mrc", 16.0, smooth_edge=False)
    np.testing.assert_array_equal(read_volume(written).data, read_volume(expected).data)
    assert read_volume(written).voxel_size == (16.0, 16.0, 16.0)
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"step": "deconvolve", "defocus": 25000}))
    (tmp_path / "out").mkdir()
    written = bilayer.preprocess_tomogram(tomogram, tmp_path / "out", settings=settings, strength=0.5)
    assert written == tmp_path / "out" / "t_deconv.mrc"
    np.testing.assert_allclose(read_volume(written).data,
                               deconvolve_tomogram(read_volume(tomogram).data, 8.0, defocus=25000, strength=0.5),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(PreflightError, match="t_deconv.mrc already exists"):
        bilayer.preprocess_tomogram(tomogram, tmp_path / "out", settings=settings)
