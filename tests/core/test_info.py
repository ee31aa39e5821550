"""bilayer.model.info: ModelInfo round-trips through JSON, stays read-only, and names bad keys and values."""

from __future__ import annotations

import json

import pytest
from bilayer.errors import ConfigError
from bilayer.model import AxisOrder, ModelInfo, NetworkConfig, Normalisation

SMALL = NetworkConfig(filters=(4, 8, 8, 16), strides=(1, 2, 2, 2))


def test_model_info_round_trip_and_checks():
    info = ModelInfo(network=SMALL, voxel_size=7, axis_order="xyz", training={"data": {"tomograms": 12}})
    assert info.voxel_size == 7.0 and info.axis_order is AxisOrder.XYZ
    assert ModelInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert ModelInfo.from_dict({}) == ModelInfo()
    assert ModelInfo().normalisation is Normalisation.TOMOGRAM_ZSCORE and ModelInfo().voxel_size == 10.0
    with pytest.raises(TypeError):
        info.training["data"] = 1
    with pytest.raises(ConfigError, match="'pixel_size'"):
        ModelInfo.from_dict({"pixel_size": 10.0})
    with pytest.raises(ConfigError, match="tomogram_zscore"):
        ModelInfo(normalisation="minmax")
    with pytest.raises(ConfigError, match="voxel_size"):
        ModelInfo(voxel_size=0.0)
    with pytest.raises(ConfigError, match="JSON"):
        ModelInfo(training={"optimizer": object()})
