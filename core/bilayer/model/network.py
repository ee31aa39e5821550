"""The MemBrain-seg U-Net: its architecture as data, the network built from it, and the
architecture read back from a set of weights.

MemBrain-seg 0.0.10 (``segmentation/networks/unet.py``) uses a MONAI ``DynUNet`` with
residual blocks, kernel 3, strides 1-2-2-2-2-2, filters 32…1024, instance normalisation,
leaky ReLU (slope 0.01), one output channel and two deep-supervision heads: 91 M parameters.
:func:`build_network` builds the same modules under the same names, so its ``state_dict()``
keys are exactly those of MemBrain-seg's ``SemanticSegmentationUnet`` without the
Lightning module's leading ``_model.``.

What the forward pass returns (see :class:`MembraneUNet`):

* **eval mode** (inference): one tensor, the full-resolution logits (B, out_channels, *spatial*),
  like MONAI's ``DynUNet``. MemBrain-seg's subclass returns a list here and its inference
  takes element 0; this tensor is that element.
* **training mode with deep supervision**: a list ``[full, half, quarter]`` of logits at their
  own resolutions (full, 1/2, 1/4 for the default strides), compared with labels downsampled
  to match, as MemBrain-seg and nnU-Net do (MONAI instead upsamples the heads and stacks them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

import torch
from monai.networks.nets import DynUNet
from torch import nn

from bilayer.errors import ConfigError

__all__ = [
    "MembraneUNet",
    "NetworkConfig",
    "Norm",
    "build_network",
    "check_keys",
    "check_state_dict",
    "config_from_state_dict",
    "count_parameters",
]


class Norm(str, Enum):
    """Feature normalisation inside the convolution blocks."""

    INSTANCE = "instance"  # with learnable affine weights, as MemBrain-seg (and nnU-Net)
    BATCH = "batch"


_MONAI_NORM = {Norm.INSTANCE: ("INSTANCE", {"affine": True}), Norm.BATCH: ("BATCH", {})}


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
            object.__setattr__(self, name, tuple(value))
            for item in getattr(self, name):
                _check_positive_int(name, item)
        for name in ("in_channels", "out_channels", "kernel_size", "deep_supervision_heads"):
            _check_positive_int(name, getattr(self, name))
        for name in ("residual", "deep_supervision"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"network {name}={getattr(self, name)!r} must be true or false")
        for name, low, high in (("negative_slope", 0.0, math.inf), ("dropout", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
                raise ConfigError(f"network {name}={value!r} must be a number in [{low}, {high})")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.norm, Norm):
            try:
                object.__setattr__(self, "norm", Norm(self.norm))
            except ValueError as e:
                valid = ", ".join(n.value for n in Norm)
                raise ConfigError(f"network norm={self.norm!r} is not one of: {valid}") from e
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
        return cls(**check_keys(cls, data, "network configuration"))


def check_keys(cls: type, data: Any, what: str) -> dict[str, Any]:
    """``data`` as a dict after checking it is a mapping whose keys are fields of dataclass ``cls``.

    Raises:
        ConfigError: ``data`` is not a mapping, or a key is unknown (the message names it).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a mapping, not {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown {what} key {key!r}; known keys: {', '.join(sorted(known))}")
    return dict(data)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"network {name} value {value!r} must be a positive integer")


class MembraneUNet(DynUNet):
    """MONAI ``DynUNet`` built from a :class:`NetworkConfig`, with MemBrain-seg's
    deep-supervision outputs in training mode.

    Attributes:
        config: the architecture this network was built from.
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__(
            spatial_dims=3,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            kernel_size=[config.kernel_size] * len(config.strides),
            strides=list(config.strides),
            upsample_kernel_size=list(config.strides[1:]),
            filters=list(config.filters),
            dropout=config.dropout or None,
            norm_name=_MONAI_NORM[config.norm],
            act_name=("leakyrelu", {"inplace": True, "negative_slope": config.negative_slope}),
            deep_supervision=config.deep_supervision,
            deep_supr_num=config.deep_supervision_heads,
            res_block=config.residual,
        )
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits for a (B, in_channels, z, y, x) batch; each spatial size a multiple of
        ``config.size_multiple``.

        Returns:
            In eval mode, or without deep supervision: the full-resolution logits
            (B, out_channels, z, y, x). In training mode with deep supervision: the list
            ``[full, head_1, …]`` where head ``i`` has the resolution of level ``i``
            (1/2, 1/4, … for stride-2 levels).
        """
        out = self.output_block(self.skip_layers(x))
        if self.training and self.deep_supervision:
            return [out, *self.heads]
        return out


def build_network(config: NetworkConfig) -> MembraneUNet:
    """Build the network for ``config``, freshly initialised (Kaiming normal, as MONAI does).

    Its ``state_dict()`` keys and shapes match MemBrain-seg's network for the same
    architecture, so MemBrain-seg weights load into it unchanged (after the ``_model.`` prefix
    is removed). The torch random state decides the initial weights.
    """
    return MembraneUNet(config)


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module``, each shared parameter counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> NetworkConfig:
    """Work out the architecture that produced ``state_dict`` (keys without any prefix).

    Channel counts, kernel size, levels, residual blocks, normalisation and deep-supervision
    heads are read from the tensor names and shapes. What weights cannot show is assumed to
    be MemBrain-seg's: input-block stride 1, leaky-ReLU slope 0.01, no dropout; deeper strides
    are the transposed-convolution kernel sizes. The result is verified: a network built from
    it has exactly these keys and shapes.

    Raises:
        ConfigError: the weights are not those of a network :func:`build_network` can make;
            the message says which tensor is missing, unexpected or of the wrong shape.
    """
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    first = _shape(shapes, "input_block.conv1.conv.weight", 5)
    levels = 2 + sum(1 for k in shapes if k.startswith("downsamples.") and k.endswith(".conv1.conv.weight"))
    filters = [first[0]]
    filters += [_shape(shapes, f"downsamples.{i}.conv1.conv.weight", 5)[0] for i in range(levels - 2)]
    filters.append(_shape(shapes, "bottleneck.conv1.conv.weight", 5)[0])
    strides = [1] + [_shape(shapes, f"upsamples.{i}.transp_conv.conv.weight", 5)[2] for i in range(levels - 1)][::-1]
    heads = sum(1 for k in shapes if k.startswith("deep_supervision_heads.") and k.endswith(".conv.conv.weight"))
    config = NetworkConfig(
        in_channels=first[1],
        out_channels=_shape(shapes, "output_block.conv.conv.weight", 5)[0],
        filters=tuple(filters),
        strides=tuple(strides),
        kernel_size=first[2],
        residual=any(".conv3." in k for k in shapes),
        deep_supervision=heads > 0,
        deep_supervision_heads=max(heads, 1),
        norm=Norm.BATCH if "input_block.norm1.running_mean" in shapes else Norm.INSTANCE,
    )
    check_state_dict(config, state_dict)
    return config


def _shape(shapes: Mapping[str, tuple[int, ...]], key: str, ndim: int) -> tuple[int, ...]:
    if key not in shapes:
        raise ConfigError(f"weights lack {key!r}, so they are not those of a MemBrain-seg/DynUNet network")
    if len(shapes[key]) != ndim:
        raise ConfigError(f"weights {key!r} have shape {shapes[key]}, expected a {ndim}-D tensor")
    return shapes[key]


def check_state_dict(config: NetworkConfig, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Check that the network built from ``config`` has exactly the tensors of ``state_dict``
    (names and shapes). The network is built on the meta device, so nothing is allocated.

    Raises:
        ConfigError: tensors are missing, unexpected or of the wrong shape; the message
            counts each kind and names one example.
    """
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_network(config).state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    if missing or unexpected or wrong:
        detail = [f"{len(missing)} missing (e.g. {missing[0]!r})"] if missing else []
        detail += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})"] if unexpected else []
        if wrong:
            detail.append(
                f"{len(wrong)} of the wrong shape (e.g. {wrong[0]!r}: {shapes[wrong[0]]}, "
                f"expected {expected[wrong[0]]})"
            )
        raise ConfigError(f"weights do not fit the architecture {config.to_dict()}: tensors " + ", ".join(detail))
