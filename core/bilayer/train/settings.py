"""Training settings from their sources, later winning: the engine's defaults (MemBrain-seg's
recipe), fine-tuning's, a settings file (JSON or YAML) and explicit values (command line, job
parameters). Every adapter builds its :class:`TrainConfig` here, so they all agree.

Settings files are read by :func:`bilayer.settings.read_settings` (re-exported here), the one
reader every job uses. Nothing here loads torch or MONAI."""

from __future__ import annotations

import os
from typing import Any, Mapping

from bilayer.errors import ConfigError
from bilayer.settings import read_settings
from bilayer.train.config import FINETUNE_DEFAULTS, TrainConfig

__all__ = ["read_settings", "training_config"]


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
    merged: dict[str, Any] = {**(FINETUNE_DEFAULTS if finetune else {}),
                              **read_settings(settings_file, "training settings")}
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
