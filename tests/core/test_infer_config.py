"""bilayer.infer.config: the one options contract of segmentation and its merge point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bilayer.errors import ConfigError
from bilayer.infer.config import InferenceConfig, OutputOptions, Padding, Precision, SegmentOptions, TtaGrid, \
    segment_options


def test_round_trip_through_a_flat_dict_and_json():
    options = segment_options(window=192, tta=False, tta_grid="window", precision="float32", padding="zeros",
                              scores=True, min_size=5, device="cuda:1", voxel_size=13.5, model="m.ckpt")
    data = options.to_dict()
    assert list(data) == list(SegmentOptions.names())
    assert SegmentOptions.from_dict(json.loads(json.dumps(data))) == options
    assert options.inference.precision is Precision.FLOAT32 and options.inference.padding is Padding.ZEROS
    assert options.inference.tta_grid is TtaGrid.WINDOW and options.outputs.min_size == 5


def test_the_merge_is_defaults_then_file_then_explicit_values(tmp_path):
    settings = tmp_path / "s.yaml"
    settings.write_text("window: 96\nthreshold: 0.5\nscores: yes\n")
    merged = segment_options(settings, threshold=1.5, overlap=None)  # None: not given
    assert merged.inference.window == 96 and merged.inference.threshold == 1.5
    assert merged.outputs.scores is True and merged.inference.overlap == InferenceConfig().overlap
    (tmp_path / "s.json").write_text('{"window": 128}')
    assert segment_options(tmp_path / "s.json").inference.window == 128
    (tmp_path / "empty.yaml").write_text("")
    assert segment_options(tmp_path / "empty.yaml") == SegmentOptions()


@pytest.mark.parametrize("values, words", [
    ({"windw": 96}, ("'windw'", "known ones", "window")),
    ({"window": 100}, ("window=100", "multiple of 32", "e.g. 96")),
    ({"window": 16}, ("window=16", "[32",)),
    ({"overlap": 1.0}, ("overlap=1.0", "[0, 1)")),
    ({"padding": "edge"}, ("padding='edge'", "reflect, zeros")),
    ({"precision": "half"}, ("precision='half'", "auto, float32, bfloat16, float16")),
    ({"tta": "yes"}, ("tta='yes'", "true or false")),
    ({"threshold": float("nan")}, ("threshold=nan",)),
    ({"batch_size": 0}, ("batch_size=0",)),
    ({"min_size": -1}, ("min_size=-1",)),
    ({"device": "gpu0"}, ("device='gpu0'", "cuda:N")),
    ({"voxel_size": 0}, ("voxel_size=0",)),
])
def test_bad_values_are_one_line_naming_the_option_and_what_is_allowed(values, words):
    with pytest.raises(ConfigError) as caught:
        segment_options(**values)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_bad_settings_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("window: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        segment_options(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml must hold a mapping"):
        segment_options(listing)
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        segment_options(tmp_path / "nowhere.yaml")


def test_output_kinds_follow_the_options_mask_first():
    assert OutputOptions().kinds == ("mask", "preview")
    assert OutputOptions(scores=True, components=True, skeleton=True, preview=False).kinds == \
        ("mask", "scores", "components", "skeleton")


def test_the_contract_loads_no_torch():
    code = "import sys, bilayer.infer.config, bilayer.settings, bilayer.checks, bilayer.io.naming; " \
           "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"window": 100}, "multiple of 32"), ({"overlap": 1.0}, "overlap"), ({"batch_size": 0}, "batch_size"),
     ({"precision": "float8"}, "precision")],
)
def test_bad_inference_options_are_config_errors(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        InferenceConfig(**kwargs)


@pytest.mark.parametrize(("given", "kept"), [
    ((), ()),
    ("0.5, 1.5", (0.5, 1.5)),
    ("  -1 2;3  ", (-1.0, 2.0, 3.0)),
    ([1, "2.5", 1.0], (1.0, 2.5)),  # repeats once, order kept
    (["0.5,1", 2], (0.5, 1.0, 2.0)),
    (0.25, (0.25,)),
    ("", ()),
])
def test_extra_thresholds_are_numbers_or_text_of_numbers(given, kept):
    options = segment_options(extra_thresholds=given)
    assert options.outputs.extra_thresholds == kept
    assert SegmentOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options


@pytest.mark.parametrize(("given", "words"), [
    ("0.5, high", ("extra_thresholds", "'high' is not a number")),
    ([float("inf")], ("extra_thresholds=inf", "finite")),
    ([True], ("extra_thresholds=True",)),
    ({"t": 1}, ("list of numbers",)),
    ("0.1 0.1000000001", ("would write one mask file", "first 6 digits")),
])
def test_bad_extra_thresholds_name_the_option_and_the_fix(given, words):
    with pytest.raises(ConfigError) as caught:
        segment_options(extra_thresholds=given)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_uncertainty_is_an_output_that_needs_tta():
    outputs = segment_options(uncertainty=True).outputs
    assert outputs.kinds == ("mask", "uncertainty", "preview") and outputs.smooth_uncertainty is True
    with pytest.raises(ConfigError, match="spread of the test-time-augmentation copies, but tta is off; turn "
                                          r"test-time augmentation \(tta\) on, or uncertainty off"):
        segment_options(uncertainty=True, tta=False)
    assert segment_options(uncertainty=False, smooth_uncertainty=False, tta=False).outputs.kinds == ("mask", "preview")


def test_every_output_path_is_named_by_the_naming_module(tmp_path):
    from bilayer.io.naming import output_name, threshold_mask_name

    outputs = OutputOptions(scores=True, uncertainty=True, extra_thresholds=(1.5, -2.0), preview=False)
    paths = outputs.paths("data/TS_1.mrc", tmp_path)
    assert list(paths) == ["mask", "scores", "uncertainty", "mask_t1.5", "mask_t-2"]
    assert paths["uncertainty"] == tmp_path / output_name("TS_1.mrc", "uncertainty")
    assert paths["uncertainty"].name == "TS_1_uncertainty.mrc"
    assert paths["mask_t1.5"].name == threshold_mask_name("TS_1_scores.mrc", 1.5) == "TS_1_seg_t1.5.mrc"
    assert outputs.extra_mask_kinds == {1.5: "mask_t1.5", -2.0: "mask_t-2"}
