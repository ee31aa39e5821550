"""The architecture of the MemBrain-seg U-Net as data (no torch needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from bilayer.checks import choice, flag, known_keys, number
from bilayer.errors import ConfigError

__all__ = ["NetworkConfig", "Norm"]


class Norm(str, Enum):
    """Feature normalisation inside the convolution blocks."""

    INSTANCE = "instance"  # with learnable affine weights, as MemBrain-seg (and nnU-Net)
    BATCH = "batch"


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of the U-Net; the defaults are MemBrain-seg 0.0.10's network exactly.

    Attributes:
        in_channels: input channels (1: one tomogram).
        out_channels: output channels (1: membrane logits; score > 0 means membrane).
        filters: feature channels per level, from full resolution down to the bottleneck.
        strides: stride of each level's first convolution; ``strides[0]`` is the input
            block (1 keeps full resolution). Spatial sizes must be multiples of their product.
        kernel_size: isotropic convolution kernel size (odd).
        residual: residual convolution blocks (MONAI ``UnetResBlock``) instead of plain ones.
        deep_supervision: add deep-supervision output heads (used in training only).
        deep_supervision_heads: number of heads, from the 1/2-resolution level downwards.
        norm: feature normalisation (:class:`Norm`).
        negative_slope: slope of the leaky ReLU for negative inputs.
        dropout: dropout probability after each convolution (0: none, as MemBrain-seg).
    """

    in_channels: int = 1
    out_channels: int = 1
    filters: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    strides: tuple[int, ...] = (1, 2, 2, 2, 2, 2)
    kernel_size: int = 3
    residual: bool = True
    deep_supervision: bool = True
    deep_supervision_heads: int = 2
    norm: Norm = Norm.INSTANCE
    negative_slope: float = 0.01
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("filters", "strides"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ConfigError(f"network {name}={value!r} must be a list of positive integers")
            object.__setattr__(self, name, tuple(number(f"network {name}[{i}]", item, 1, integer=True)
                                                 for i, item in enumerate(value)))
        for name in ("in_channels", "out_channels", "kernel_size", "deep_supervision_heads"):
            object.__setattr__(self, name, number(f"network {name}", getattr(self, name), 1, integer=True))
        for name in ("residual", "deep_supervision"):
            object.__setattr__(self, name, flag(f"network {name}", getattr(self, name)))
        object.__setattr__(self, "negative_slope", number("network negative_slope", self.negative_slope, 0.0))
        object.__setattr__(self, "dropout", number("network dropout", self.dropout, 0.0, 1.0, open_high=True))
        object.__setattr__(self, "norm", choice("network norm", self.norm, Norm))
        self._check_levels()

    def _check_levels(self) -> None:
        if len(self.filters) != len(self.strides) or len(self.strides) < 3:
            raise ConfigError(
                f"network filters {self.filters} and strides {self.strides} must have the same length, "
                "at least 3 (one entry per level)"
            )
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"network kernel_size={self.kernel_size} must be odd")
        if max(self.strides) > self.kernel_size + 1:
            raise ConfigError(
                f"network strides {self.strides} must not exceed kernel_size + 1 = {self.kernel_size + 1}"
            )
        if self.deep_supervision and self.deep_supervision_heads > len(self.strides) - 2:
            raise ConfigError(
                f"network deep_supervision_heads={self.deep_supervision_heads} must be at most "
                f"{len(self.strides) - 2} for {len(self.strides)} levels"
            )

    @property
    def size_multiple(self) -> int:
        """Spatial sizes of the input (voxels per axis) must be multiples of this (32 by default)."""
        return math.prod(self.strides)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-able values (lists, numbers, strings)."""
        data = asdict(self)
        data.update(filters=list(self.filters), strides=list(self.strides), norm=self.norm.value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        """Read a configuration written by :meth:`to_dict`; missing keys take the defaults.

        Raises:
            ConfigError: a key is unknown or a value is invalid.
        """
        return cls(**known_keys(cls, data, "network configuration"))

