"""Settings files and the one merge rule every job uses: defaults ← settings file ← explicit values.

A job's options are a frozen configuration (``TrainConfig``, ``SynthConfig``, ``SegmentOptions``)
with ``to_dict``/``from_dict``. Every door (command line, Python, Scipion, RELION) builds it
through :func:`merged_config`, so the same file and the same explicit values give the same
configuration everywhere. Settings files are JSON or YAML mappings (YAML reads JSON too).
"""

from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path
from typing import Any, Mapping, TypeVar

from bilayer.errors import ConfigError

__all__ = ["merged_config", "plain_values", "read_settings"]

C = TypeVar("C")


def read_settings(path: str | os.PathLike | None, what: str = "settings") -> dict[str, Any]:
    """A JSON or YAML mapping of settings, or {} without a file.

    Raises:
        ConfigError: the file cannot be read or parsed, or holds no mapping.
    """
    if not path:
        return {}
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        reason = " ".join(str(e).split())
        raise ConfigError(f"cannot read {what} from {path}: {reason}; give a JSON or YAML mapping") from e
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of {what} (key: value), not {type(values).__name__}")
    return values


def merged_config(cls: type[C], settings_file: str | os.PathLike | None = None,
                  defaults: Mapping[str, Any] | None = None, what: str = "settings", **values: Any) -> C:
    """``cls.from_dict`` of ``defaults`` ← the file's settings ← ``values`` (``None`` values are not given).

    Raises:
        ConfigError: an unreadable file, an unknown key or a bad value (from ``cls``).
    """
    merged: dict[str, Any] = {**(defaults or {}), **read_settings(settings_file, what)}
    merged.update({k: v for k, v in values.items() if v is not None})
    return cls.from_dict(merged)  # type: ignore[attr-defined]


def plain_values(config: Any) -> dict[str, Any]:
    """A dataclass configuration's fields as JSON-ready values: enums by their value, tuples as lists
    (nested configurations are left to their own ``to_dict``)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    return out
