"""The tensors of a MemBrain-seg U-Net, by name and shape, worked out without building it.

MONAI's ``DynUNet`` (which MemBrain-seg and :func:`bilayer.model.network.build_network` use)
names its weights after its modules: ``input_block``, ``downsamples.{i}``, ``bottleneck``,
``upsamples.{i}`` (a transposed convolution and a plain block), ``output_block``,
``deep_supervision_heads.{i}``, and the same modules again under ``skip_layers``. Knowing
them from a :class:`NetworkConfig` alone lets checkpoints be checked and read, and inference
run (:class:`~bilayer.model.lean.LeanUNet`), without importing MONAI (~180 MB of memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bilayer.errors import ConfigError
from bilayer.model.config import NetworkConfig, Norm

__all__ = ["BlockNames", "block_names", "check_state_dict", "config_from_state_dict", "state_dict_shapes"]

Shape = tuple[int, ...]
#: Per block: (conv1, norm1, conv2, norm2, conv3 or None, norm3 or None) module names.
BlockNames = tuple[str, str, str, str, "str | None", "str | None"]


def block_names(prefix: str, residual: bool, projects: bool) -> BlockNames:
    """Module names of one convolution block; ``projects``: a residual 1×1 projection exists."""
    conv3, norm3 = (f"{prefix}.conv3.conv", f"{prefix}.norm3") if residual and projects else (None, None)
    return f"{prefix}.conv1.conv", f"{prefix}.norm1", f"{prefix}.conv2.conv", f"{prefix}.norm2", conv3, norm3


def state_dict_shapes(config: NetworkConfig) -> dict[str, Shape]:
    """Every tensor of the network :func:`~bilayer.model.network.build_network` makes for ``config``."""
    c, k, f = config, config.kernel_size, config.filters
    levels = len(f)
    canonical: dict[str, dict[str, Shape]] = {}  # module path -> its tensors
    inputs = [c.in_channels, *f[:-1]]
    paths = ["input_block", *(f"downsamples.{i}" for i in range(levels - 2)), "bottleneck"]
    for path, cin, cout, stride in zip(paths, inputs, f, c.strides):
        canonical[path] = _block(cin, cout, k, stride, c.residual, c.norm)
    for i in range(levels - 1):  # upsamples run from the bottleneck up
        cin, cout = f[levels - 1 - i], f[levels - 2 - i]
        up = c.strides[levels - 1 - i]
        tensors = {"transp_conv.conv.weight": (cin, cout, up, up, up)}
        tensors.update({f"conv_block.{n}": s for n, s in _block(2 * cout, cout, k, 1, False, c.norm).items()})
        canonical[f"upsamples.{i}"] = tensors
    canonical["output_block"] = _out(f[0], c.out_channels)
    heads = c.deep_supervision_heads if c.deep_supervision else 0
    for i in range(heads):
        canonical[f"deep_supervision_heads.{i}"] = _out(f[i + 1], c.out_channels)
    shapes = {f"{path}.{name}": s for path, tensors in canonical.items() for name, s in tensors.items()}
    for level in range(levels - 1):  # MONAI's skip_layers chain refers to the same modules again
        prefix = "skip_layers" + ".next_layer" * level
        aliases = {"downsample": paths[level], "upsample": f"upsamples.{levels - 2 - level}"}
        if 1 <= level <= heads:
            aliases["super_head"] = f"deep_supervision_heads.{level - 1}"
        if level == levels - 2:
            aliases["next_layer"] = "bottleneck"
        for alias, path in aliases.items():
            shapes.update({f"{prefix}.{alias}.{n}": s for n, s in canonical[path].items()})
    return shapes


def check_state_dict(config: NetworkConfig, state_dict: Mapping[str, Any]) -> None:
    """Check that the network for ``config`` has exactly the tensors of ``state_dict``.

    Raises:
        ConfigError: tensors are missing, unexpected or of the wrong shape; the message
            counts each kind and names one example.
    """
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    expected = state_dict_shapes(config)
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    if missing or unexpected or wrong:
        detail = [f"{len(missing)} missing (e.g. {missing[0]!r})"] if missing else []
        detail += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})"] if unexpected else []
        if wrong:
            detail.append(f"{len(wrong)} of the wrong shape (e.g. {wrong[0]!r}: {shapes[wrong[0]]}, "
                          f"expected {expected[wrong[0]]})")
        raise ConfigError(f"weights do not fit the architecture {config.to_dict()}: tensors " + ", ".join(detail))


def config_from_state_dict(state_dict: Mapping[str, Any]) -> NetworkConfig:
    """Work out the architecture that produced ``state_dict`` (keys without any prefix).

    Channel counts, kernel size, levels, residual blocks, normalisation and deep-supervision
    heads are read from the tensor names and shapes. What weights cannot show is assumed to
    be MemBrain-seg's: input-block stride 1, leaky-ReLU slope 0.01, no dropout; deeper strides
    are the transposed-convolution kernel sizes. The result is verified with
    :func:`check_state_dict`.

    Raises:
        ConfigError: the weights are not those of such a network; the message says which
            tensor is missing, unexpected or of the wrong shape.
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


def _block(cin: int, cout: int, k: int, stride: int, residual: bool, norm: Norm) -> dict[str, Shape]:
    """Tensors of a MONAI UnetResBlock (``residual``) or UnetBasicBlock."""
    tensors = {"conv1.conv.weight": (cout, cin, k, k, k), "conv2.conv.weight": (cout, cout, k, k, k)}
    names = ["norm1", "norm2"]
    if residual and (cin != cout or stride != 1):
        tensors["conv3.conv.weight"] = (cout, cin, 1, 1, 1)
        names.append("norm3")
    for name in names:
        tensors.update({f"{name}.{n}": s for n, s in _norm(cout, norm).items()})
    return tensors


def _norm(channels: int, norm: Norm) -> dict[str, Shape]:
    tensors: dict[str, Shape] = {"weight": (channels,), "bias": (channels,)}
    if norm is Norm.BATCH:
        tensors.update(running_mean=(channels,), running_var=(channels,), num_batches_tracked=())
    return tensors


def _out(cin: int, cout: int) -> dict[str, Shape]:
    return {"conv.conv.weight": (cout, cin, 1, 1, 1), "conv.conv.bias": (cout,)}


def _shape(shapes: Mapping[str, Shape], key: str, ndim: int) -> Shape:
    if key not in shapes:
        raise ConfigError(f"weights lack {key!r}, so they are not those of a MemBrain-seg/DynUNet network")
    if len(shapes[key]) != ndim:
        raise ConfigError(f"weights {key!r} have shape {shapes[key]}, expected a {ndim}-D tensor")
    return shapes[key]
