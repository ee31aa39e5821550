"""bilayer.data.synthetic.config: SynthConfig round-trips through JSON; errors name the field and range."""

from __future__ import annotations

import json

import pytest
from bilayer.data.synthetic import SceneType, SynthConfig
from bilayer.errors import BilayerError, ConfigError


def test_config_round_trips_through_json():
    config = SynthConfig(shape=(32, 48, 64), voxel_size=12.0, scene_type=SceneType.IN_VITRO, snr_range=(0.2, 2.0))
    data = json.loads(json.dumps(config.to_dict()))
    assert data["scene_type"] == "in_vitro"
    assert SynthConfig.from_dict(data) == config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"snr_range": (0.0, 1.0)}, "snr_range"),
        ({"voxel_size_range": (20.0, 5.0)}, "voxel_size_range"),
        ({"shape": (8, 64, 64)}, "shape"),
        ({"voxel_size": -3.0}, "voxel_size"),
        ({"tilt_range": (45.0, 120.0)}, "tilt_range"),
        ({"membrane_count_range": (1, 2.5)}, "membrane_count_range"),
        ({"invert_probability": 1.5}, "invert_probability"),
        ({"label_thickness": 1.0}, "label_thickness"),
    ],
)
def test_config_errors_name_the_field_and_range(kwargs, field):
    with pytest.raises(ConfigError, match=field) as info:
        SynthConfig(**kwargs)
    assert isinstance(info.value, BilayerError)
    assert f"SynthConfig.{field}" in str(info.value)
    assert "[" in str(info.value) or "<=" in str(info.value)


def test_from_dict_rejects_unknown_keys_and_bad_scene_types():
    with pytest.raises(ConfigError, match="snr_rang"):
        SynthConfig.from_dict({"snr_rang": [0.1, 1.0]})
    with pytest.raises(ConfigError, match="lamella, in_vitro, or null"):
        SynthConfig.from_dict({"scene_type": "cryo"})
