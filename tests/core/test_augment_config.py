"""AugmentConfig: plain data (no torch, no MONAI), every field declares its check, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bilayer
from bilayer.augment import AugmentConfig as ExportedConfig
from bilayer.augment.config import CHECK, AugmentConfig, Outside, _prob
from bilayer.errors import ConfigError


def test_config_round_trips_through_json():
    config = AugmentConfig(zoom_range=(0.8, 1.2), outside=Outside.IGNORE, median_separable=True,
                           missing_wedge_tilt_deg=(40.0, 60.0), erase_max_cuboids=3)
    text = json.dumps(config.to_dict())
    again = AugmentConfig.from_dict(json.loads(text))
    assert again == config
    assert json.loads(text)["outside"] == "ignore" and json.loads(text)["zoom_range"] == [0.8, 1.2]
    assert AugmentConfig.from_dict({}) == AugmentConfig()


def test_values_are_canonicalised():
    config = AugmentConfig(zoom_range=[0.8, 1], outside="ignore", rotation_prob=1, median_size=[3, 5])
    assert config.zoom_range == (0.8, 1.0) and isinstance(config.zoom_range[1], float)
    assert config.outside is Outside.IGNORE and config.rotation_prob == 1.0
    assert config.median_size == (3, 5) and all(type(v) is int for v in config.median_size)


def test_defaults_are_membrain_segs():
    config = AugmentConfig()
    assert (config.rotation_prob, config.max_rotation_deg, config.zoom_prob, config.zoom_range) == (0.75, 30.0, 0.3,
                                                                                                     (0.7, 1.43))
    assert (config.median_prob, config.blur_prob, config.noise_prob, config.low_res_prob) == (0.25, 0.3, 0.4, 0.35)
    assert (config.gamma_prob, config.erase_prob, config.sharpen_prob, config.flip_prob) == (0.25, 0.4, 0.2, 0.5)
    assert config.outside is Outside.BORDER


@pytest.mark.parametrize("field,value", [
    ("rotation_prob", 1.2),
    ("zoom_range", (1.5, 0.7)),
    ("zoom_range", "wide"),
    ("max_rotation_deg", -1.0),
    ("missing_wedge_tilt_deg", (45.0, 90.0)),
    ("median_size", (2, 7.5)),
    ("median_separable", "yes"),
    ("low_res_scale", (0.2, 1.5)),
    ("erase_max_cuboids", 0),
    ("outside", "zeros"),
    ("noise_max_std", float("nan")),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        AugmentConfig(**{field: value})


def test_an_unknown_outside_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="border, ignore"):
        AugmentConfig(outside="zeros")


def test_unknown_settings_are_listed():
    with pytest.raises(ConfigError, match="rotaton_prob.*known keys.*rotation_prob"):
        AugmentConfig.from_dict({"rotaton_prob": 0.5})
    with pytest.raises(ConfigError, match="mapping"):
        AugmentConfig.from_dict([("rotation_prob", 0.5)])


def _unchecked(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if not callable(f.metadata.get(CHECK))]


def test_every_field_declares_its_check():
    assert _unchecked(AugmentConfig) == []
    for field in dataclasses.fields(AugmentConfig):  # each check accepts its own default
        assert field.metadata[CHECK](field.name, field.default) == field.default


def test_a_field_without_a_check_is_caught_here_not_at_import():
    @dataclasses.dataclass(frozen=True)
    class Extended(AugmentConfig):  # defining it (as importing the module would) must not fail
        new_step_prob: float = 0.5
        new_step_sigma: float = 1.0

    assert _unchecked(Extended) == ["new_step_prob", "new_step_sigma"]  # what the test above would report
    with pytest.raises(ConfigError, match="Extended.new_step_prob declares no check"):
        Extended()

    @dataclasses.dataclass(frozen=True)
    class Declared(AugmentConfig):
        new_step_prob: float = _prob(0.5)

    assert Declared().new_step_prob == 0.5
    with pytest.raises(ConfigError, match="new_step_prob"):
        Declared(new_step_prob=2.0)


def test_the_package_exports_the_config():
    assert ExportedConfig is AugmentConfig


def test_importing_the_config_loads_neither_torch_nor_monai():
    code = ("import sys, bilayer.augment.config, bilayer.augment; bilayer.augment.AugmentConfig; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'monai'}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(bilayer.__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "[]"
