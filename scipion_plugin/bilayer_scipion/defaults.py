"""The engine's defaults and validation, looked up where the forms need them.

The plugin holds no numbers of its own: every default shown in a form comes from the
engine's configuration classes, and option values are checked by building those classes
(their error messages name the value and the fix). The configuration modules are plain data
(no torch, no MONAI), so they are imported once, here; the engine proper loads only when a
protocol runs it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from bilayer.errors import BilayerError
from bilayer.infer.config import InferenceConfig, OutputOptions, Padding, Precision, TtaGrid
from bilayer.io import OUTPUT_SUFFIXES
from bilayer.train.config import FINETUNE_DEFAULTS, TrainConfig, TrainPrecision

__all__ = ["finetune_overrides", "inference", "inference_error", "output_suffix", "outputs", "paddings", "precisions",
           "training", "training_error", "training_precisions", "tta_grids"]


@lru_cache(maxsize=1)
def inference() -> InferenceConfig:
    """``bilayer.infer.config.InferenceConfig()``: window, overlap, TTA, threshold, ..."""
    return InferenceConfig()


@lru_cache(maxsize=1)
def outputs() -> OutputOptions:
    """``bilayer.infer.config.OutputOptions()``: which outputs a segmentation keeps by default."""
    return OutputOptions()


def _default_first(choices: Any, default: Any) -> list[str]:
    """The values of an engine enum with its default first: the order of a Scipion EnumParam."""
    return [default.value] + [c.value for c in choices if c is not default]


def precisions() -> list[str]:
    """The inference precisions the engine accepts, default first."""
    return _default_first(Precision, inference().precision)


def paddings() -> list[str]:
    """The window paddings the engine accepts, default first."""
    return _default_first(Padding, inference().padding)


def tta_grids() -> list[str]:
    """Where mirrored copies' windows may go, default first."""
    return _default_first(TtaGrid, inference().tta_grid)


def inference_error(**values: Any) -> str | None:
    """The engine's message if these InferenceConfig values are invalid, else None."""
    try:
        InferenceConfig(**values)
    except BilayerError as e:
        return str(e)
    return None


@lru_cache(maxsize=1)
def training() -> TrainConfig:
    """``bilayer.train.config.TrainConfig()``: MemBrain-seg's recipe (epochs, patch size, ...)."""
    return TrainConfig()


def finetune_overrides() -> dict[str, Any]:
    """What fine-tuning changes in the training defaults (learning rate, epochs)."""
    return dict(FINETUNE_DEFAULTS)


def training_precisions() -> list[str]:
    """The training precisions the engine accepts, default first."""
    return _default_first(TrainPrecision, training().precision)


def training_error(values: dict[str, Any]) -> str | None:
    """The engine's message if these TrainConfig values are invalid, else None."""
    try:
        TrainConfig.from_dict(values)
    except BilayerError as e:
        return str(e)
    return None


def output_suffix(kind: str) -> str:
    """The ending the engine gives an output of ``kind`` (mask, scores, components, skeleton)."""
    return OUTPUT_SUFFIXES[kind]
