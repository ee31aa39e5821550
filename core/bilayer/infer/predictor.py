"""The :class:`Predictor`: a loaded network turned into membrane scores for whole tomograms.

It is built ready to use (model loaded once, on its device, in eval mode) and reused for every
tomogram. Per tomogram it standardises intensities from one chunked pass over the file,
matches the voxel size to the model's window by window, and blends the network's windows
(with mirror test-time augmentation if asked) slab by slab, so memory does not grow with the
tomogram's depth.

Speed and memory without changing answers: windows run under ``inference_mode`` through
:class:`~bilayer.model.lean.LeanUNet` (channels-last maps, slab-wise exact instance norm, two
full-resolution feature maps per window), in bfloat16 where the processor has native support
(``Precision.AUTO``), with the window placement of MemBrain-seg (half overlap) by default.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bilayer.device import cpu_has_native_bfloat16, resolve_device
from bilayer.errors import ConfigError
from bilayer.infer.blend import EmitFn, ProgressFn, blend_windows
from bilayer.infer.config import UNCERTAINTY_NEEDS_TTA, InferenceConfig, Precision, TtaGrid
from bilayer.infer.grid import fit_window, mirror_symmetric
from bilayer.infer.passes import mirrored_passes
from bilayer.infer.tta import MIRROR_AXES, with_mirroring
from bilayer.io.volume import Volume
from bilayer.model.checkpoint import LoadedModel, read_checkpoint
from bilayer.model.info import ModelInfo
from bilayer.model.lean import LeanUNet
from bilayer.model.zoo import default_model_path
from bilayer.preprocess.normalise import standardisation
from bilayer.preprocess.pixel_size import rescaled_window_size, with_rescaling

__all__ = ["Predictor", "WindowPlan", "resolve_device"]

logger = logging.getLogger(__name__)

_RESCALE_TOLERANCE = 0.01  # relative voxel-size difference below which windows are not resampled
_SLAB_BYTES = {"cpu": 32 * 1024**2, "cuda": 1024**3}  # per-slab temporaries of the forward pass


@dataclass(frozen=True)
class WindowPlan:
    """How one tomogram is cut: windows of ``roi`` tomogram voxels, each predicted as ``window``
    model voxels (resampled when ``rescale``)."""

    roi: int
    window: int
    rescale: bool


class Predictor:
    """A network ready to score tomograms; see the module docstring.

    Build it with :meth:`from_checkpoint` (reads the file without MONAI and holds the weights
    once, in the compute dtype) or :meth:`from_model` (a network in memory, left unchanged).

    Attributes:
        info: the model's metadata (voxel size, axis order, architecture).
        config: window, overlap, TTA, precision and threshold.
        device: where the network runs.
        source: the checkpoint file, if any.
    """

    def __init__(self, info: ModelInfo, state_dict: Mapping[str, torch.Tensor],
                 config: InferenceConfig | None = None, device: str | torch.device | None = None,
                 source: Path | None = None) -> None:
        self.info, self.config, self.source = info, config or InferenceConfig(), source
        self.device = resolve_device(device)
        multiple = info.network.size_multiple
        smallest = 2 * multiple  # instance norm needs 2³ voxels at the bottom
        if self.config.window < smallest or self.config.window % multiple:
            raise ConfigError(f"window {self.config.window} does not suit this model: use a multiple of "
                              f"{multiple} of at least {smallest} voxels")
        self._dtype = _compute_dtype(self.config.precision, self.device)
        self.weight_bytes = sum(t.numel() * self._dtype.itemsize for t in state_dict.values())
        self._network = LeanUNet(info.network, state_dict, self._dtype, self.device,
                                 slab_bytes=_SLAB_BYTES.get(self.device.type, _SLAB_BYTES["cuda"]))

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, config: InferenceConfig | None = None,
                        device: str | torch.device | None = None) -> "Predictor":
        """Load a checkpoint (Bilayer's or MemBrain-seg's; ``None``: the embedded default model)
        once, for any number of tomograms."""
        path = default_model_path() if path is None else Path(path)
        info, state = read_checkpoint(path)
        return cls(info, state, config, device, path)

    @classmethod
    def from_model(cls, model: LoadedModel, config: InferenceConfig | None = None,
                   device: str | torch.device | None = None) -> "Predictor":
        """A predictor with the weights of a network in memory (copied; the network is not changed)."""
        return cls(model.info, model.network.state_dict(), config, device, model.path)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the forward pass actually used."""
        return self._dtype

    def predict(self, volume: Volume, *, emit: EmitFn, progress: ProgressFn | None = None,
                uncertainty: EmitFn | None = None) -> None:
        """Score ``volume`` and pass the scores (float32 logits) slab by slab to ``emit``.

        Args:
            volume: the tomogram.
            emit: receives ``(z_start, scores)`` slabs in z order.
            progress: ``(windows done, windows total)`` after each batch.
            uncertainty: receives the raw uncertainty (:mod:`bilayer.infer.uncertainty`) of each
                slab right after ``emit`` received its scores; the mirrored copies then run as
                one pass each (:func:`~bilayer.infer.passes.mirrored_passes`), whose mean equals
                the per-window average up to float32 rounding. Needs TTA.

        Raises:
            VoxelSizeError: the voxels are not cubic.
            InputFileError: the tomogram is constant.
            ConfigError: ``uncertainty`` without TTA.
        """
        config = self.config
        if uncertainty is not None and not config.tta:
            raise ConfigError(UNCERTAINTY_NEEDS_TTA)
        name = str(volume.path) if volume.path else "the tomogram"
        norm = standardisation(volume.data, name=name)
        roi, predict_fn = self._window_predictor(self.window_plan(volume.shape, volume.isotropic_voxel_size))
        blend = functools.partial(blend_windows, volume.data, roi=(roi,) * 3, overlap=config.overlap,
                                  normalise=(norm.offset, norm.scale), padding=config.padding)
        passes = self.tta_passes(volume.shape, roi, uncertainty=uncertainty is not None)
        if not config.tta:
            blend(predict_fn, emit=emit, batch_size=config.batch_size, progress=progress)
        elif not passes:
            blend(with_mirroring(predict_fn, max_batch=config.batch_size), emit=emit, batch_size=1, progress=progress)
        else:  # one pass per mirroring, averaged (MemBrain-seg's windows on each mirrored tomogram with its grid)
            mirrored_passes(blend, predict_fn, shape=volume.shape, emit=emit, spread=uncertainty,
                            mirror_grid=config.tta_grid is TtaGrid.MEMBRAIN, batch_size=config.batch_size,
                            progress=progress)

    def tta_passes(self, shape: tuple[int, ...], roi: int, *, uncertainty: bool = False) -> int:
        """How many blended passes through a temporary file predicting a tomogram of ``shape``
        with windows of ``roi`` voxels takes: 0 where the mirrored copies are averaged window by
        window (or there is no TTA), else one per mirroring."""
        config = self.config
        if not config.tta:
            return 0
        per_window = config.tta_grid is TtaGrid.WINDOW or mirror_symmetric(shape, (roi,) * 3, config.overlap)
        return len(MIRROR_AXES) if uncertainty or not per_window else 0

    def window_plan(self, shape: tuple[int, ...], voxel_size: float) -> WindowPlan:
        """The windows for a tomogram of ``shape`` at ``voxel_size`` Å (no work done)."""
        model_voxel_size = self.info.voxel_size
        rescale = self.config.rescale and abs(voxel_size / model_voxel_size - 1.0) > _RESCALE_TOLERANCE
        roi_of = functools.partial(rescaled_window_size, model_voxel_size=model_voxel_size,
                                   voxel_size=voxel_size) if rescale else None
        window = self.config.window
        if self.config.fit_window:
            window = fit_window(shape, window, self.info.network.size_multiple, self.config.overlap, roi_of)
        roi = roi_of(window) if roi_of is not None else window
        return WindowPlan(roi=roi, window=window, rescale=rescale)

    def _window_predictor(self, plan: WindowPlan) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
        """The window size in the tomogram's voxels and the function predicting such windows."""
        if plan.window != self.config.window:
            logger.info("windows of %d model voxels instead of %d: fewer voxels to predict", plan.window,
                        self.config.window)
        if not plan.rescale:
            return plan.roi, self._forward
        logger.info("voxel size vs model %.3g Å: windows of %d voxels resampled to %d", self.info.voxel_size,
                    plan.roi, plan.window)
        return plan.roi, with_rescaling(self._forward, plan.window, like_membrain=self.config.rescale_like_membrain)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Network scores for a CPU float32 batch (B, 1, z, y, x), in the model's axis order."""
        x = batch.to(self.device, non_blocking=True)
        if self.info.axis_order == "xyz":
            x = x.permute(0, 1, 4, 3, 2)
        out = self._network(x)
        if self.info.axis_order == "xyz":
            out = out.permute(0, 1, 4, 3, 2)
        return out.float().cpu().contiguous()


def _compute_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    if precision is Precision.FLOAT32:
        return torch.float32
    if precision is Precision.FLOAT16:
        if device.type != "cuda":
            raise ConfigError("precision float16 needs a GPU; use bfloat16 or float32 on the CPU")
        return torch.float16
    if precision is Precision.BFLOAT16:
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bfloat16() else torch.float32
