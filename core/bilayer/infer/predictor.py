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

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from bilayer.device import resolve_device
from bilayer.errors import ConfigError
from bilayer.infer.config import InferenceConfig, Precision
from bilayer.infer.sliding import EmitFn, ProgressFn, blend_windows
from bilayer.infer.tta import with_mirroring
from bilayer.io.volume import Volume
from bilayer.model.checkpoint import LoadedModel, load_checkpoint
from bilayer.model.lean import LeanUNet
from bilayer.preprocess.normalise import standardisation
from bilayer.preprocess.pixel_size import rescaled_window_size, with_rescaling

__all__ = ["Predictor", "resolve_device"]

logger = logging.getLogger(__name__)

_RESCALE_TOLERANCE = 0.01  # relative voxel-size difference below which windows are not resampled
_SLAB_BYTES = {"cpu": 32 * 1024**2, "cuda": 1024**3}  # per-slab temporaries of the forward pass


@dataclass(frozen=True)
class Predictor:
    """A network ready to score tomograms; see the module docstring.

    The predictor owns ``model.network``: its weights are moved to ``device`` and stored in the
    compute dtype (held once, for the lean forward pass), so use a model loaded for it.

    Attributes:
        model: the loaded network and its metadata.
        config: window, overlap, TTA, precision and threshold.
        device: where the network runs.
    """

    model: LoadedModel
    config: InferenceConfig = field(default_factory=InferenceConfig)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        smallest = 2 * self.model.info.network.size_multiple  # instance norm needs 2³ voxels at the bottom
        if self.config.window < smallest or self.config.window % self.model.info.network.size_multiple:
            raise ConfigError(f"window {self.config.window} does not suit this model: use a multiple of "
                              f"{self.model.info.network.size_multiple} of at least {smallest} voxels")
        dtype = _compute_dtype(self.config.precision, self.device)
        lean = LeanUNet(self.model.network.eval(), dtype, self.device,
                        slab_bytes=_SLAB_BYTES.get(self.device.type, _SLAB_BYTES["cuda"]), share=True)
        object.__setattr__(self, "_lean", lean)
        object.__setattr__(self, "_dtype", dtype)

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: InferenceConfig | None = None,
                        device: str | torch.device | None = None) -> "Predictor":
        """Load a checkpoint (Bilayer's or MemBrain-seg's) once, for any number of tomograms."""
        resolved = resolve_device(device)
        return cls(load_checkpoint(path, device="cpu"), config or InferenceConfig(), resolved)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the forward pass actually used."""
        return self._dtype  # type: ignore[attr-defined]

    def predict(self, volume: Volume, *, emit: EmitFn, progress: ProgressFn | None = None) -> None:
        """Score ``volume`` and pass the scores (float32 logits) slab by slab to ``emit``.

        Raises:
            VoxelSizeError: the voxels are not cubic.
            InputFileError: the tomogram is constant.
        """
        name = str(volume.path) if volume.path else "the tomogram"
        norm = standardisation(volume.data, name=name)
        roi, predict_fn = self._window_plan(volume.isotropic_voxel_size)
        if self.config.tta:
            predict_fn = with_mirroring(predict_fn, max_batch=self.config.batch_size)
        batch = 1 if self.config.tta else self.config.batch_size
        blend_windows(volume.data, predict_fn, emit=emit, roi=(roi,) * 3, overlap=self.config.overlap,
                      batch_size=batch, normalise=(norm.offset, norm.scale), progress=progress)

    def _window_plan(self, voxel_size: float) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
        """The window size in the tomogram's voxels and the function predicting such windows."""
        model_voxel_size = self.model.info.voxel_size
        window = self.config.window
        if not self.config.rescale or abs(voxel_size / model_voxel_size - 1.0) <= _RESCALE_TOLERANCE:
            return window, self._forward
        roi = rescaled_window_size(window, model_voxel_size, voxel_size)
        logger.info("voxel size %.3g Å vs model %.3g Å: windows of %d voxels resampled to %d",
                    voxel_size, model_voxel_size, roi, window)
        return roi, with_rescaling(self._forward, window, like_membrain=self.config.rescale_like_membrain)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Network scores for a CPU float32 batch (B, 1, z, y, x), in the model's axis order."""
        x = batch.to(self.device, non_blocking=True)
        if self.model.info.axis_order == "xyz":
            x = x.permute(0, 1, 4, 3, 2)
        out = self._lean(x)  # type: ignore[attr-defined]
        if self.model.info.axis_order == "xyz":
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
    return torch.bfloat16 if _cpu_has_native_bfloat16() else torch.float32


def _cpu_has_native_bfloat16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX, where oneDNN runs bfloat16 convolutions fast."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
