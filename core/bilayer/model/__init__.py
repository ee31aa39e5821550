"""Models: the MemBrain-seg U-Net's architecture (:mod:`~bilayer.model.config`,
:mod:`~bilayer.model.layout`), the trainable network (:mod:`~bilayer.model.network`, MONAI), the
inference forward pass (:mod:`~bilayer.model.lean`) and checkpoints loaded without running code
from the file (:mod:`~bilayer.model.checkpoint`).

Names load on first use (PEP 562), so reading a checkpoint for inference never imports MONAI.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES = {
    "NetworkConfig": "config",
    "Norm": "config",
    "check_state_dict": "layout",
    "config_from_state_dict": "layout",
    "state_dict_shapes": "layout",
    "AxisOrder": "info",
    "ModelInfo": "info",
    "Normalisation": "info",
    "CHECKPOINT_SUFFIX": "checkpoint",
    "LoadedModel": "checkpoint",
    "import_membrain_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "write_checkpoint": "checkpoint",
    "LeanUNet": "lean",
    "DEFAULT_MODEL_FILE": "zoo",
    "default_model_path": "zoo",
    "MembraneUNet": "network",
    "build_network": "network",
    "count_parameters": "network",
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
