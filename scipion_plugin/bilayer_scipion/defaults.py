"""The engine's defaults and validation, looked up where the forms need them.

The plugin holds no numbers of its own: every default shown in a form comes from the
engine's configuration classes, and option values are checked by building those classes
(their error messages name the value and the fix). Training settings import the
augmentation stack (torch, MONAI), so they are imported only when a training form is built.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["finetune_overrides", "inference", "inference_error", "output_suffix", "paddings", "precisions", "training",
           "training_error", "training_precisions"]

#: Files ``bilayer segment`` writes per tomogram, by kind (DESIGN.md §3: ``<stem><suffix>``).
_SUFFIXES = {"mask": "_seg.mrc", "scores": "_scores.mrc", "components": "_components.mrc",
             "skeleton": "_skeleton.mrc"}


@lru_cache(maxsize=1)
def inference() -> Any:
    """``bilayer.infer.config.InferenceConfig()``: window, overlap, TTA, threshold, ..."""
    from bilayer.infer.config import InferenceConfig

    return InferenceConfig()


def _default_first(choices: Any, default: Any) -> list[str]:
    """The values of an engine enum with its default first: the order of a Scipion EnumParam."""
    return [default.value] + [c.value for c in choices if c is not default]


def precisions() -> list[str]:
    """The inference precisions the engine accepts, default first."""
    from bilayer.infer.config import Precision

    return _default_first(Precision, inference().precision)


def paddings() -> list[str]:
    """The window paddings the engine accepts, default first."""
    from bilayer.infer.config import Padding

    return _default_first(Padding, inference().padding)


def inference_error(**values: Any) -> str | None:
    """The engine's message if these InferenceConfig values are invalid, else None."""
    from bilayer.errors import BilayerError
    from bilayer.infer.config import InferenceConfig

    try:
        InferenceConfig(**values)
    except BilayerError as e:
        return str(e)
    return None


@lru_cache(maxsize=1)
def training() -> Any:
    """``bilayer.train.config.TrainConfig()``: MemBrain-seg's recipe (epochs, patch size, ...)."""
    from bilayer.train.config import TrainConfig

    return TrainConfig()


def finetune_overrides() -> dict[str, Any]:
    """What fine-tuning changes in the training defaults (learning rate, epochs)."""
    from bilayer.train.config import FINETUNE_DEFAULTS

    return dict(FINETUNE_DEFAULTS)


def training_precisions() -> list[str]:
    """The training precisions the engine accepts, default first."""
    from bilayer.train.config import TrainPrecision

    return _default_first(TrainPrecision, training().precision)


def training_error(values: dict[str, Any]) -> str | None:
    """The engine's message if these TrainConfig values are invalid, else None."""
    from bilayer.errors import BilayerError
    from bilayer.train.config import TrainConfig

    try:
        TrainConfig.from_dict(values)
    except BilayerError as e:
        return str(e)
    return None


def output_suffix(kind: str) -> str:
    """The ending the engine gives an output of ``kind`` (mask, scores, components, skeleton)."""
    return _SUFFIXES[kind]
