"""``bilayer.segment``: segment a tomogram from Python in one call, without writing files."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

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
    settings: str | os.PathLike | None = None,
    **options: Any,
) -> "Segmentation":
    """Segment membranes; returns the mask (and scores, components, skeleton, uncertainty, masks at
    extra thresholds if asked) as Volumes.

    Options merge as everywhere in Bilayer (:func:`bilayer.infer.segment_options`): the defaults,
    then ``settings`` (a JSON or YAML file of options), then ``options`` given here by name
    (``window=192, tta=False, scores=True, uncertainty=True, extra_thresholds=(0.5, 1.5)``...),
    with ``config``/``outputs`` objects replacing their part whole. ``uncertainty=True`` gives
    ``result.uncertainty``, the spread of the test-time-augmentation copies
    (:mod:`bilayer.infer.uncertainty`; needs TTA); ``extra_thresholds`` gives
    ``result.extra_masks[t]``.

    Args:
        tomogram: a :class:`Volume`, a (z, y, x) array (then ``voxel_size`` is required), or
            an MRC path (read memory-mapped; ``voxel_size`` replaces the header's).
        model: a ready :class:`Predictor` (reuse it for many tomograms), a loaded model, a
            checkpoint path (Bilayer's or MemBrain-seg's ``.ckpt``), or ``None`` for the
            embedded default model (or the settings' ``model``).
        config: windows, TTA, precision and threshold (ignored when ``model`` is a Predictor).
        outputs: which extra results to keep (scores, components, skeleton, uncertainty, extra
            thresholds).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... (ignored when ``model`` is a Predictor).
        settings: a settings file; options: option values by name.

    Raises:
        BilayerError: a bad tomogram, model or option (uncertainty without TTA among them), an
            implausible voxel size or a tomogram that cannot fit the memory, as one-line messages,
            before any work.
    """
    from bilayer.infer import Predictor, segment_options, segment_volume
    from bilayer.infer.preflight import available_memory, check_memory, check_voxel_size
    from bilayer.model import LoadedModel

    chosen = segment_options(settings, device=device, **options)
    if config is not None:
        chosen = replace(chosen, inference=config)
    wanted = outputs or replace(chosen.outputs, preview=False)
    given = voxel_size if voxel_size is not None else chosen.voxel_size
    if isinstance(tomogram, Volume):
        volume = tomogram if given is None else Volume(tomogram.data, given, tomogram.origin, tomogram.path)
    elif isinstance(tomogram, np.ndarray):
        if given is None:
            raise ConfigError("give voxel_size (Å) with a plain array, or pass a Volume or a file path")
        volume = Volume(tomogram, given)
    else:
        volume = read_volume(tomogram, voxel_size=given)
    if isinstance(model, Predictor):
        predictor = model
    elif isinstance(model, LoadedModel):
        predictor = Predictor.from_model(model, chosen.inference, chosen.device)
    else:
        predictor = Predictor.from_checkpoint(model or chosen.model, chosen.inference, chosen.device)
    check_voxel_size(volume, predictor, given=given is not None or isinstance(tomogram, np.ndarray))
    windows = predictor.window_plan(volume.shape, volume.isotropic_voxel_size)
    check_memory(volume, windows, predictor, available_memory(), scores_in_memory=True, outputs=wanted)
    return segment_volume(volume, predictor, outputs=wanted)
