"""bilayer.losses.config: MemBrain-seg's settings by default, a JSON round trip, bad values named."""

from __future__ import annotations

import json

import pytest

from bilayer.errors import ConfigError
from bilayer.losses import DEEP_SUPERVISION_WEIGHTS, LossConfig


def test_config_defaults_are_membrain_seg_and_round_trip_through_json():
    config = LossConfig()
    assert (config.bce_weight, config.dice_weight, config.surface_dice, config.skeleton_iterations) == (1, 1, False, 5)
    assert config.deep_supervision_weights == DEEP_SUPERVISION_WEIGHTS == (1.0, 0.5, 0.25, 0.125, 0.0675)
    assert config.head_weights(3) == (1.0, 0.5, 0.25)
    custom = LossConfig(surface_dice=True, surface_dice_weight=0.5, deep_supervision_weights=[1, 0.25])
    assert LossConfig.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom
    assert LossConfig.from_dict({}) == config


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"bce_weight": -1.0}, "bce_weight"),
        ({"dice_smooth": 0.0}, "dice_smooth"),
        ({"skeleton_iterations": 1.5}, "skeleton_iterations"),
        ({"surface_dice": "yes"}, "surface_dice"),
        ({"deep_supervision_weights": (0.0, 1.0)}, "full-resolution"),
        ({"deep_supervision_weights": "1, 0.5"}, "deep_supervision_weights"),
        ({"bce_weight": 0.0, "dice_weight": 0.0}, "all 0"),
        ({"surface_dice_weight": float("nan")}, "surface_dice_weight"),
    ],
)
def test_bad_config_raises(options, match):
    with pytest.raises(ConfigError, match=match):
        LossConfig(**options)


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match=r"unknown loss configuration key\(s\) 'lambda_ce'"):
        LossConfig.from_dict({"lambda_ce": 1.0})
