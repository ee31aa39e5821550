"""What a model needs besides its weights: :class:`ModelInfo`, stored as JSON in checkpoints."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from types import MappingProxyType
from typing import Any

from bilayer._version import __version__
from bilayer.checks import choice, known_keys, number
from bilayer.errors import ConfigError
from bilayer.model.config import NetworkConfig

__all__ = ["AxisOrder", "MEMBRAIN_VOXEL_SIZE", "ModelInfo", "Normalisation"]

MEMBRAIN_VOXEL_SIZE = 10.0  # Å; MemBrain-seg's models are trained at 10 Å per voxel


class Normalisation(str, Enum):
    """How a tomogram's intensities are normalised before the network sees them."""

    #: The whole tomogram is shifted to mean 0 and scaled to standard deviation 1 (population
    #: std, float32) once, before windowing: MemBrain-seg's ``load_tomogram(normalize_data=True)``.
    TOMOGRAM_ZSCORE = "tomogram_zscore"


class AxisOrder(str, Enum):
    """Order in which the tomogram's axes fill the network's three spatial dimensions."""

    ZYX = "zyx"  #: the (z, y, x) array as read: Bilayer's convention
    XYZ = "xyz"  #: ``array.transpose(2, 1, 0)``, and the scores back: MemBrain-seg's convention


@dataclass(frozen=True)
class ModelInfo:
    """What a model needs besides its weights to be used correctly; stored as JSON.

    Attributes:
        network: the architecture.
        voxel_size: isotropic voxel size the model was trained at, in Å; tomograms are
            rescaled to it before inference.
        normalisation: intensity normalisation the model expects.
        axis_order: order of the tomogram axes in the network input.
        bilayer_version: version of Bilayer that wrote the checkpoint.
        source: where the weights come from ("bilayer", or "membrain-seg import of <file>").
        training: free JSON-able facts about training (epochs, data, losses, …); read-only.
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    voxel_size: float = MEMBRAIN_VOXEL_SIZE
    normalisation: Normalisation = Normalisation.TOMOGRAM_ZSCORE
    axis_order: AxisOrder = AxisOrder.ZYX
    bilayer_version: str = __version__
    source: str = "bilayer"
    training: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.network, NetworkConfig):
            raise ConfigError(f"model info network must be a NetworkConfig, not {type(self.network).__name__}")
        if not isinstance(self.bilayer_version, str) or not isinstance(self.source, str):
            raise ConfigError(
                f"model bilayer_version and source must be strings: {self.bilayer_version!r}, {self.source!r}"
            )
        try:
            training = json.loads(json.dumps(dict(self.training)))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model training facts must be JSON-able (numbers, strings, lists, dicts): {e}") from e
        object.__setattr__(self, "voxel_size", number("model voxel_size", self.voxel_size, 0.0, open_low=True))
        object.__setattr__(self, "normalisation", choice("model normalisation", self.normalisation, Normalisation))
        object.__setattr__(self, "axis_order", choice("model axis_order", self.axis_order, AxisOrder))
        object.__setattr__(self, "training", MappingProxyType(training))

    def to_dict(self) -> dict[str, Any]:
        """The metadata as plain JSON-able values."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(network=self.network.to_dict(), normalisation=self.normalisation.value)
        data.update(axis_order=self.axis_order.value, training=json.loads(json.dumps(dict(self.training))))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        """Read metadata written by :meth:`to_dict`; missing keys take the defaults.

        Raises:
            ConfigError: a key is unknown or a value is invalid.
        """
        values = known_keys(cls, data, "model info")
        if "network" in values:
            values["network"] = NetworkConfig.from_dict(values["network"])
        return cls(**values)

