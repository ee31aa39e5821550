"""``bilayer.segment``: segment a tomogram from Python in one call, without writing files."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

import numpy as np

from bilayer.errors import ConfigError
from bilayer.io import Volume, read_volume

if TYPE_CHECKING:
    from bilayer.infer import InferenceConfig, OutputOptions, Predictor, Segmentation
    from bilayer.model import LoadedModel

__all__ = ["segment"]


def segment(
    tomogram: Volume | np.ndarray | str | os.PathLike,
    model: "Predictor | LoadedModel | str | os.PathLike | None" = None,
    *,
    voxel_size: float | Sequence[float] | None = None,
    config: "InferenceConfig | None" = None,
    outputs: "OutputOptions | None" = None,
    device: str | None = None,
) -> "Segmentation":
    """Segment membranes; returns the mask (and scores, components, skeleton if asked) as Volumes.

    Args:
        tomogram: a :class:`Volume`, a (z, y, x) array (then ``voxel_size`` is required), or
            an MRC path (read memory-mapped; ``voxel_size`` replaces the header's).
        model: a ready :class:`Predictor` (reuse it for many tomograms), a loaded model, a
            checkpoint path (Bilayer's or MemBrain-seg's ``.ckpt``), or ``None`` for the
            embedded default model.
        config: windows, TTA, precision and threshold (ignored when ``model`` is a Predictor).
        outputs: which extra results to keep (scores, components, skeleton).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... (ignored when ``model`` is a Predictor).

    Raises:
        BilayerError: a bad tomogram, model or option, as one-line messages.
    """
    from bilayer.infer import InferenceConfig, OutputOptions, Predictor
    from bilayer.infer import segment as run_segment
    from bilayer.model import LoadedModel

    if isinstance(tomogram, Volume):
        volume = tomogram if voxel_size is None else Volume(tomogram.data, voxel_size, tomogram.origin, tomogram.path)
    elif isinstance(tomogram, np.ndarray):
        if voxel_size is None:
            raise ConfigError("give voxel_size (Å) with a plain array, or pass a Volume or a file path")
        volume = Volume(tomogram, voxel_size)
    else:
        volume = read_volume(tomogram, voxel_size=voxel_size)
    if isinstance(model, Predictor):
        predictor = model
    elif isinstance(model, LoadedModel):
        predictor = Predictor.from_model(model, config or InferenceConfig(), device)
    else:
        predictor = Predictor.from_checkpoint(model, config, device)
    return run_segment(volume, predictor, outputs=outputs or OutputOptions(preview=False))
