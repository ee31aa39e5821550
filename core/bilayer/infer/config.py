"""How a tomogram is predicted: windows, overlap, mirroring, precision, threshold.

Kept free of torch so that the command line can show these defaults without loading it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from bilayer.errors import ConfigError

__all__ = ["InferenceConfig", "Padding", "Precision", "TtaGrid"]

_WINDOW_MULTIPLE = 32  # five 2× down-samplings in the U-Net


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
    each window mirrored; elsewhere eight passes averaged through a temporary file."""
    WINDOW = "window"
    """As nnU-Net: each window is mirrored in place; one pass always, slightly different scores
    where the grid is not symmetric."""


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
        if self.window < _WINDOW_MULTIPLE or self.window % _WINDOW_MULTIPLE:
            raise ConfigError(f"window {self.window} must be a positive multiple of {_WINDOW_MULTIPLE} voxels")
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"overlap {self.overlap} must be in [0, 1)")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size} must be at least 1")
        if not math.isfinite(self.threshold):
            raise ConfigError(f"threshold {self.threshold} must be a finite number")
        for name, choice in (("precision", Precision), ("tta_grid", TtaGrid), ("padding", Padding)):
            try:
                object.__setattr__(self, name, choice(getattr(self, name)))
            except ValueError as e:
                valid = ", ".join(p.value for p in choice)
                raise ConfigError(f"{name} {getattr(self, name)!r} is not one of {valid}") from e
