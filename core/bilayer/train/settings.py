"""Training settings from their sources, later winning: the engine's defaults (MemBrain-seg's
recipe), fine-tuning's, a settings file (JSON or YAML) and explicit values (command line, job
parameters). Every adapter builds its :class:`TrainConfig` here, so they all agree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from bilayer.errors import ConfigError
from bilayer.train.config import FINETUNE_DEFAULTS, TrainConfig

__all__ = ["read_settings", "training_config"]


def read_settings(path: str | os.PathLike | None) -> dict[str, Any]:
    """A JSON or YAML mapping of settings (YAML reads JSON too), or {} without a file.

    Raises:
        ConfigError: the file cannot be read or holds no mapping.
    """
    if not path:
        return {}
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read settings from {path}: {e}; give a JSON or YAML mapping") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of settings (key: value)")
    return values


def training_config(settings_file: str | os.PathLike | None = None, *, finetune: bool = False,
                    augment: bool = True, surface_dice: bool | None = None,
                    **values: Any) -> TrainConfig:
    """The :class:`TrainConfig` from defaults, ``settings_file`` and ``values`` (``None`` values are
    not given).

    Args:
        settings_file: JSON or YAML mapping of TrainConfig fields.
        finetune: start from MemBrain-seg's fine-tuning defaults; a file may then not set a network.
        augment: False trains without augmentation.
        surface_dice: add (or drop) the Surface-Dice loss.
        values: TrainConfig fields.

    Raises:
        ConfigError: an unknown field, a bad value, or a network set for fine-tuning.
    """
    merged: dict[str, Any] = {**(FINETUNE_DEFAULTS if finetune else {}), **read_settings(settings_file)}
    merged.update({k: v for k, v in values.items() if v is not None})
    if not augment:
        merged["augment"] = None
    if surface_dice is not None:
        merged["loss"] = {**_mapping(merged.get("loss")), "surface_dice": surface_dice}
    if finetune and "network" in merged:
        raise ConfigError(f"{settings_file or 'the settings'} set a network, but fine-tuning keeps the checkpoint's; "
                          "remove 'network'")
    return TrainConfig.from_dict(merged)


def _mapping(value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"training loss settings {value!r} must be a mapping of LossConfig fields")
    return value
