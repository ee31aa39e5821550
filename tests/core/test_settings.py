"""bilayer.settings: settings files and the one merge rule, defaults ← file ← explicit values."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bilayer.data.synthetic import SynthConfig
from bilayer.errors import ConfigError
from bilayer.settings import merged_config, plain_values, read_settings


def test_json_and_yaml_files_read_alike_and_no_file_is_empty(tmp_path):
    (tmp_path / "a.json").write_text('{"seed": 3, "shape": [32, 48, 64]}')
    (tmp_path / "a.yaml").write_text("seed: 3\nshape: [32, 48, 64]\n")
    assert read_settings(tmp_path / "a.json") == read_settings(tmp_path / "a.yaml") == {"seed": 3,
                                                                                        "shape": [32, 48, 64]}
    assert read_settings(None) == {}


def test_later_layers_win_and_none_is_not_given(tmp_path):
    (tmp_path / "s.yaml").write_text("shape: [32, 48, 64]\nvoxel_size: 12\n")
    config = merged_config(SynthConfig, tmp_path / "s.yaml", defaults={"voxel_size": 8.0}, voxel_size=14.0,
                           shape=None)
    assert config.shape == (32, 48, 64) and config.voxel_size == 14.0
    with pytest.raises(ConfigError, match="SynthConfig"):
        merged_config(SynthConfig, None, what="generator settings", no_such_field=1)


def test_plain_values_are_json_ready():
    import enum

    class Colour(str, enum.Enum):
        RED = "red"

    @dataclass(frozen=True)
    class Example:
        colour: Colour = Colour.RED
        pair: tuple = (1, 2)
        n: int = 3

    assert plain_values(Example()) == {"colour": "red", "pair": [1, 2], "n": 3}
