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
from bilayer.infer.config import InferenceConfig, OutputOptions, Padding, Precision, SegmentOptions, TtaGrid
from bilayer.io import OUTPUT_SUFFIXES
from bilayer.preprocess.deconvolve import Frequencies
from bilayer.preprocess.steps import PreprocessOptions, Step, output_kind, preprocess_options
from bilayer.train.config import FINETUNE_DEFAULTS, TrainConfig, TrainPrecision

__all__ = ["extra_masks", "finetune_overrides", "frequency_grids", "inference", "inference_error", "output_suffix",
           "outputs", "outputs_error", "paddings", "precisions", "preprocess_error", "preprocess_steps",
           "preprocess_suffix", "preprocessing", "training", "training_error", "training_precisions", "tta_grids"]


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


def preprocess_steps() -> list[str]:
    """The preprocessing steps (rescale, match-spectrum, deconvolve), in the engine's order."""
    return [step.value for step in Step]


def preprocess_suffix(step: str) -> str:
    """The ending the engine gives the output of preprocessing ``step``."""
    return OUTPUT_SUFFIXES[output_kind(step)]


@lru_cache(maxsize=1)
def preprocessing() -> PreprocessOptions:
    """The engine's preprocessing defaults (``PreprocessOptions``; the step shown first is a rescale):
    target voxel size, smooth edge, spectrum matching and deconvolution options."""
    return PreprocessOptions(step=Step.RESCALE)


def frequency_grids() -> list[str]:
    """The deconvolution's frequency grids, default first."""
    return _default_first(Frequencies, preprocessing().deconvolution.frequencies)


def preprocess_error(values: dict[str, Any]) -> str | None:
    """The engine's message if these preprocessing options are invalid, else None."""
    try:
        preprocess_options(**values)
    except BilayerError as e:
        return str(e)
    return None


def outputs_error(tta: bool, **values: Any) -> str | None:
    """The engine's message if these OutputOptions values are invalid, or do not go with ``tta``
    (uncertainty needs it), else None; extra thresholds may be the form's text."""
    try:
        SegmentOptions(inference=InferenceConfig(tta=tta), outputs=OutputOptions(**values))
    except BilayerError as e:
        return str(e)
    return None


def extra_masks(source: str, thresholds: Any) -> dict[float, str]:
    """``{threshold: file name}`` of the masks at extra thresholds (read by the engine from the form's
    text, e.g. ``"0.5, 1.5"``) that a segmentation of ``source`` writes; empty if the text is invalid
    (:func:`outputs_error` says why)."""
    try:
        options = OutputOptions(extra_thresholds=thresholds or ())
    except BilayerError:
        return {}
    paths = options.paths(source, ".")
    return {t: paths[kind].name for t, kind in options.extra_mask_kinds.items()}
