"""Models: the MemBrain-seg U-Net (:mod:`bilayer.model.network`) and its checkpoints
(:mod:`bilayer.model.checkpoint`), loaded without running code from the file."""

from bilayer.model.checkpoint import (
    CHECKPOINT_SUFFIX,
    LoadedModel,
    import_membrain_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from bilayer.model.info import AxisOrder, ModelInfo, Normalisation
from bilayer.model.network import (
    MembraneUNet,
    NetworkConfig,
    Norm,
    build_network,
    check_state_dict,
    config_from_state_dict,
    count_parameters,
)

__all__ = [
    "CHECKPOINT_SUFFIX",
    "AxisOrder",
    "LoadedModel",
    "MembraneUNet",
    "ModelInfo",
    "NetworkConfig",
    "Norm",
    "Normalisation",
    "build_network",
    "check_state_dict",
    "config_from_state_dict",
    "count_parameters",
    "import_membrain_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]
