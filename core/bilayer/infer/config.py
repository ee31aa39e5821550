"""The options of segmentation, owned here once: how a tomogram is predicted
(:class:`InferenceConfig`), what is kept (:class:`OutputOptions`), and the whole job's options
(:class:`SegmentOptions`) with their one merge point, :func:`segment_options`.

Every door (the ``bilayer segment`` command, ``bilayer.segment``, the Scipion protocol, the RELION
job) builds its options with :func:`segment_options`, so defaults, settings files and checks are
the same everywhere. Plain data: importing this module loads no torch.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bilayer import checks
from bilayer.errors import ConfigError
from bilayer.io.naming import output_name, output_paths, threshold_mask_name
from bilayer.settings import merged_config, plain_values

__all__ = ["UNCERTAINTY_NEEDS_TTA", "InferenceConfig", "OutputOptions", "Padding", "Precision", "SegmentOptions",
           "TtaGrid", "segment_options"]

#: Why uncertainty without test-time augmentation is refused, and the fix.
UNCERTAINTY_NEEDS_TTA = ("uncertainty is the spread of the test-time-augmentation copies, but tta is off; turn "
                         "test-time augmentation (tta) on, or uncertainty off")

_WINDOW_MULTIPLE = 32  # five 2× down-samplings in the U-Net
_SEPARATORS = re.compile(r"[\s,;]+")  # between thresholds given as text


class Precision(str, enum.Enum):
    """Arithmetic of the network's forward pass."""

    AUTO = "auto"
    """bfloat16 on GPUs and on CPUs with native bfloat16, else float32."""
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    """GPU only."""


class Padding(str, enum.Enum):
    """What fills a window where it reaches past a tomogram shorter than the window."""

    REFLECT = "reflect"
    """The tomogram mirrored at its faces (edge voxel not repeated): the window sees tomogram-like
    texture everywhere, so instance normalisation and the network's context are not upset."""
    ZEROS = "zeros"
    """Zeros after normalisation, as MONAI and MemBrain-seg pad: reproduces their scores exactly,
    but a network trained on patches cut from inside tomograms can mark the noise next to a
    large zero block as membrane."""


class TtaGrid(str, enum.Enum):
    """Where the windows of mirrored copies go in test-time augmentation."""

    MEMBRAIN = "membrain"
    """As MemBrain-seg: the tomogram is mirrored, then windows are placed on it, so its scores
    are reproduced exactly. Where the window grid is its own mirror image this is one pass with
    each window mirrored; elsewhere (or with uncertainty) eight passes averaged through a
    temporary file."""
    WINDOW = "window"
    """As nnU-Net: each window is mirrored in place; one pass (eight with uncertainty), slightly
    different scores where the grid is not symmetric."""


@dataclass(frozen=True)
class InferenceConfig:
    """How a tomogram is cut into windows and predicted.

    Attributes:
        window: window edge in the model's voxels, a multiple of 32 (MemBrain-seg: 160).
        fit_window: let the window grow by up to 32 voxels where that predicts the tomogram
            with fewer voxels, e.g. one window instead of eight 160³ ones for a 162³
            tomogram; off, windows are placed exactly as MemBrain-seg places them.
        overlap: fraction of a window shared with its neighbours (MemBrain-seg: 0.5).
        tta: average 8 mirrored copies (MemBrain-seg's default).
        tta_grid: where the mirrored copies' windows go (:class:`TtaGrid`).
        batch_size: windows (or mirrored copies) per forward pass.
        precision: arithmetic of the forward pass.
        threshold: a voxel is membrane where its score (the network's logit) exceeds this.
        rescale: resample windows to the model's voxel size when the tomogram's differs.
        rescale_like_membrain: reproduce MemBrain-seg's resampling exactly, including its
            (old/new)³ intensity scaling; off, intensities are kept.
        padding: what fills a window along an axis shorter than it (:class:`Padding`);
            ``zeros`` reproduces MemBrain-seg's scores on such tomograms.
    """

    window: int = 160
    fit_window: bool = True
    overlap: float = 0.5
    tta: bool = True
    tta_grid: TtaGrid = TtaGrid.MEMBRAIN
    batch_size: int = 1
    precision: Precision = Precision.AUTO
    threshold: float = 0.0
    rescale: bool = True
    rescale_like_membrain: bool = False
    padding: Padding = Padding.REFLECT

    def __post_init__(self) -> None:
        window = checks.number("window", self.window, _WINDOW_MULTIPLE, integer=True)
        if window % _WINDOW_MULTIPLE:
            raise ConfigError(f"window={self.window!r} must be a multiple of {_WINDOW_MULTIPLE} voxels, "
                              f"e.g. {max(_WINDOW_MULTIPLE, round(window / _WINDOW_MULTIPLE) * _WINDOW_MULTIPLE)}")
        values = {
            "window": window,
            "fit_window": checks.flag("fit_window", self.fit_window),
            "overlap": checks.number("overlap", self.overlap, 0.0, 1.0, open_high=True),
            "tta": checks.flag("tta", self.tta),
            "tta_grid": checks.choice("tta_grid", self.tta_grid, TtaGrid),
            "batch_size": checks.number("batch_size", self.batch_size, 1, integer=True),
            "precision": checks.choice("precision", self.precision, Precision),
            "threshold": checks.number("threshold", self.threshold),
            "rescale": checks.flag("rescale", self.rescale),
            "rescale_like_membrain": checks.flag("rescale_like_membrain", self.rescale_like_membrain),
            "padding": checks.choice("padding", self.padding, Padding),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (choices by their names)."""
        return plain_values(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InferenceConfig:
        """The config from :meth:`to_dict`'s output or a user's mapping; missing keys take defaults."""
        return cls(**checks.known_keys(cls, data, "inference setting"))


@dataclass(frozen=True)
class OutputOptions:
    """What to produce besides the binary mask.

    Attributes:
        scores: keep the network's scores (float32 logits; membrane where > threshold).
        components: label connected membranes (26-connectivity), 1 = the largest.
        min_size: drop membranes smaller than this many voxels from the components.
        skeleton: MemBrain-seg's one-voxel surface skeleton of the mask.
        uncertainty: the spread of the test-time-augmentation copies, ``<stem>_uncertainty.mrc``
            (float32): the sample variance of the membrane probability over the mirrored copies,
            as MemBrain-seg's ``--store-uncertainty-map`` (:mod:`bilayer.infer.uncertainty`).
            Needs TTA.
        smooth_uncertainty: MemBrain-seg's processing of that map: mask voxels take the value of
            the nearest voxel of the mask's core, then a 5×5 median in each z section; off: the raw
            variance.
        extra_thresholds: more masks from the same scores, ``<stem>_seg_t<t>.mrc`` per threshold
            (logits), as ``bilayer threshold`` writes them; numbers, or text such as ``"0.5, 1.5"``.
        preview: a PNG of central slices with the mask (files only).
    """

    scores: bool = False
    components: bool = False
    min_size: int = 0
    skeleton: bool = False
    uncertainty: bool = False
    smooth_uncertainty: bool = True
    extra_thresholds: tuple[float, ...] = ()
    preview: bool = True

    def __post_init__(self) -> None:
        for name in ("scores", "components", "skeleton", "uncertainty", "smooth_uncertainty", "preview"):
            object.__setattr__(self, name, checks.flag(name, getattr(self, name)))
        object.__setattr__(self, "min_size", checks.number("min_size", self.min_size, 0, integer=True))
        object.__setattr__(self, "extra_thresholds", _thresholds("extra_thresholds", self.extra_thresholds))

    @property
    def kinds(self) -> tuple[str, ...]:
        """The output kinds written per tomogram (see :mod:`bilayer.io.naming`), mask first; the
        masks at :attr:`extra_thresholds` are :attr:`extra_mask_kinds`."""
        wanted = {"mask": True, "scores": self.scores, "components": self.components,
                  "skeleton": self.skeleton, "uncertainty": self.uncertainty, "preview": self.preview}
        return tuple(kind for kind, on in wanted.items() if on)

    @property
    def extra_mask_kinds(self) -> dict[float, str]:
        """``{threshold: key}`` of the masks at :attr:`extra_thresholds` in :meth:`paths` (``mask_t1.5``)."""
        return {t: f"mask_t{t:g}" for t in self.extra_thresholds}

    def paths(self, source: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Every file a segmentation of ``source`` writes into ``out_dir``, by kind (:attr:`kinds`,
        then :attr:`extra_mask_kinds`); names from :mod:`bilayer.io.naming`, the extra masks named
        as ``bilayer threshold`` names them from the scores file."""
        paths = output_paths(source, out_dir, self.kinds)
        scores = output_name(source, "scores")
        for t, kind in self.extra_mask_kinds.items():
            paths[kind] = Path(out_dir) / threshold_mask_name(scores, t)
        return paths

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return plain_values(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputOptions:
        """The options from :meth:`to_dict`'s output or a user's mapping; missing keys take defaults."""
        return cls(**checks.known_keys(cls, data, "output option"))


def _thresholds(name: str, value: Any) -> tuple[float, ...]:
    """``value`` (numbers, or text of numbers separated by commas or spaces, or a sequence of
    either) as a tuple of finite thresholds, repeats dropped, order kept.

    Raises:
        ConfigError: a value that is no number, or two thresholds whose masks get one file name.
    """
    items = [value] if isinstance(value, (str, int, float, np.number)) else value
    if not isinstance(items, (Sequence, np.ndarray)):
        raise ConfigError(f"{name}={value!r} must be a list of numbers, or text such as '0.5, 1.5'")
    found: list[float] = []
    for item in items:
        for part in _SEPARATORS.split(item.strip()) if isinstance(item, str) else [item]:
            if part == "":
                continue
            try:
                number = float(part) if isinstance(part, str) else part
            except ValueError:
                raise ConfigError(f"{name}: {part!r} is not a number; give thresholds (logits) such as "
                                  "'0.5, 1.5'") from None
            found.append(checks.number(name, number))
    kept = tuple(dict.fromkeys(found))
    names: dict[str, float] = {}
    for t in kept:
        named = threshold_mask_name("t", t)
        if named in names:
            raise ConfigError(f"{name}: thresholds {names[named]!r} and {t!r} would write one mask file; give "
                              "thresholds that differ in their first 6 digits")
        names[named] = t
    return kept


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class SegmentOptions:
    """Every option of a segmentation job: the model, the device, the voxel size, how tomograms are
    predicted and what is kept. Written and read flat (``{"window": 192, "scores": true, ...}``), as
    in settings files; :meth:`names` lists the keys.

    Attributes:
        model: a checkpoint path (Bilayer's or MemBrain-seg's ``.ckpt``); ``None``: the embedded model.
        device: ``auto`` (the first GPU if there is one), ``cpu``, ``cuda`` or ``cuda:N``.
        voxel_size: Å for every tomogram, replacing the headers'; ``None``: the headers'.
        inference: windows, TTA, precision, threshold (:class:`InferenceConfig`).
        outputs: scores, components, skeleton, uncertainty, extra thresholds, preview
            (:class:`OutputOptions`).
    """

    model: str | None = None
    device: str = "auto"
    voxel_size: float | None = None
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    outputs: OutputOptions = field(default_factory=OutputOptions)

    def __post_init__(self) -> None:
        if self.model is not None:
            if not isinstance(self.model, (str, os.PathLike)) or not str(self.model):
                raise ConfigError(f"model={self.model!r} must be a checkpoint path, or null for the embedded model")
            object.__setattr__(self, "model", None if str(self.model) == "default" else str(self.model))
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"device={self.device!r} is not a device; use auto, cpu, cuda or cuda:N")
        if self.voxel_size is not None:
            object.__setattr__(self, "voxel_size",
                               checks.number("voxel_size", self.voxel_size, 0.0, open_low=True))
        if not isinstance(self.inference, InferenceConfig) or not isinstance(self.outputs, OutputOptions):
            raise ConfigError("inference and outputs must be an InferenceConfig and an OutputOptions; "
                              "use SegmentOptions.from_dict for plain settings")
        if self.outputs.uncertainty and not self.inference.tta:
            raise ConfigError(UNCERTAINTY_NEEDS_TTA)

    @staticmethod
    def names() -> tuple[str, ...]:
        """Every option's flat name: the keys of settings files and of :meth:`to_dict`."""
        own = tuple(f.name for f in dataclasses.fields(SegmentOptions) if f.name not in ("inference", "outputs"))
        return (*own, *(f.name for f in dataclasses.fields(InferenceConfig)),
                *(f.name for f in dataclasses.fields(OutputOptions)))

    def to_dict(self) -> dict[str, Any]:
        """All options, flat and JSON-ready."""
        return {"model": self.model, "device": self.device, "voxel_size": self.voxel_size,
                **self.inference.to_dict(), **self.outputs.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentOptions:
        """Options from a flat mapping (a settings file, :meth:`to_dict`); missing keys take defaults.

        Raises:
            ConfigError: an unknown key (the message lists the known ones) or a bad value.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"segmentation settings must be a mapping, not {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in cls.names())
        if unknown:
            raise ConfigError(f"unknown segmentation setting(s) {', '.join(map(repr, unknown))}; "
                              f"known ones: {', '.join(cls.names())}")
        inference = {f.name for f in dataclasses.fields(InferenceConfig)}
        outputs = {f.name for f in dataclasses.fields(OutputOptions)}
        return cls(model=data.get("model"), device=data.get("device", "auto"), voxel_size=data.get("voxel_size"),
                   inference=InferenceConfig.from_dict({k: v for k, v in data.items() if k in inference}),
                   outputs=OutputOptions.from_dict({k: v for k, v in data.items() if k in outputs}))


def segment_options(settings_file: str | os.PathLike | None = None, **values: Any) -> SegmentOptions:
    """The one merge point of segmentation options: defaults ← ``settings_file`` (JSON or YAML,
    flat keys as :meth:`SegmentOptions.names`) ← ``values`` (``None`` values are not given).

    Raises:
        ConfigError: an unreadable settings file, an unknown option or a bad value.
    """
    return merged_config(SegmentOptions, settings_file, what="segmentation settings", **values)

