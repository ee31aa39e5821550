"""Choosing the torch device a computation runs on, with one-line errors."""

from __future__ import annotations

import torch

from bilayer.errors import ConfigError

__all__ = ["cpu_has_native_bfloat16", "resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` → the first GPU if there is one, else the CPU; otherwise as given.

    Raises:
        ConfigError: an unknown device, or a GPU that is not there.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device {device!r} is not a torch device; use cpu, cuda, cuda:N or auto") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but this machine has no usable CUDA GPU; use --device cpu")
    return resolved


def cpu_has_native_bfloat16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX, where oneDNN runs bfloat16 convolutions fast."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
