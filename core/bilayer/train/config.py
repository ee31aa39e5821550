"""How a network is trained: MemBrain-seg's recipe as data, saved as JSON beside the results.

The defaults are MemBrain-seg 0.0.10's (``networks/unet.py``, ``train.py``): 160³ patches in
batches of 2, SGD with Nesterov momentum 0.99, learning rate 1e-2 and weight decay 3e-5, a
poly-0.9 schedule over 1000 epochs stepped once per epoch, deep supervision. Fine-tuning
(:data:`FINETUNE_DEFAULTS`) follows its ``finetune.py``: learning rate 1e-5 over 100 epochs.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from bilayer.augment.config import AugmentConfig
from bilayer.checks import choice, flag, known_keys, number
from bilayer.errors import ConfigError
from bilayer.losses.config import LossConfig
from bilayer.model.config import NetworkConfig
from bilayer.model.info import MEMBRAIN_VOXEL_SIZE

__all__ = ["FINETUNE_DEFAULTS", "TrainConfig", "TrainPrecision"]

#: (field, low, high, low excluded, high excluded) of TrainConfig's real-valued fields.
_NUMBERS: tuple[tuple[str, float, float, bool, bool], ...] = (
    ("voxel_size", 0.0, math.inf, True, False),
    ("learning_rate", 0.0, math.inf, True, False),
    ("momentum", 0.0, 1.0, False, True),
    ("weight_decay", 0.0, 1.0, False, True),
    ("poly_power", 0.0, math.inf, False, False),
    ("clip_grad_norm", 0.0, math.inf, False, False),
    ("time_limit", 0.0, math.inf, False, False),
)


class TrainPrecision(str, enum.Enum):
    """Arithmetic of the forward pass during training (weights and optimizer stay float32)."""

    AUTO = "auto"
    """bfloat16 autocast on GPUs that have it (float16 with loss scaling otherwise) and on CPUs
    with native bfloat16; float32 elsewhere."""
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    """GPU only, with dynamic loss scaling (MemBrain-seg's "16-mixed")."""


@dataclass(frozen=True)
class TrainConfig:
    """A training run's settings.

    Attributes:
        network: architecture of a network trained from scratch (ignored when fine-tuning:
            the checkpoint's own architecture is kept).
        voxel_size: Å per voxel of the training data; stored in the checkpoint, so the
            predictor resamples tomograms of other voxel sizes to it.
        patch_size: edge of the cubic training patches in voxels (a multiple of the
            network's size multiple, 32 by default).
        batch_size: patches per optimiser step (per process under DDP).
        epochs: length of the run; the poly schedule reaches 0 at the end.
        steps_per_epoch: optimiser steps per epoch; 0 means one pass over the training set.
        learning_rate: initial learning rate.
        momentum: SGD momentum (Nesterov).
        weight_decay: L2 penalty of SGD.
        poly_power: exponent of the poly schedule ``(1 - epoch / epochs) ** poly_power``.
        validate_every: validation every this many epochs (and after the last).
        precision: arithmetic of the forward pass.
        num_workers: data-loading processes (0: in the training process).
        seed: seeds initial weights, shuffling, crops and augmentation.
        augment: augmentation probabilities and ranges; ``None`` trains on plain crops.
        loss: loss weights, Surface-Dice and deep-supervision settings.
        clip_grad_norm: largest gradient norm (0: no clipping, as MemBrain-seg).
        compile: run the network through ``torch.compile`` (about 1.8× faster steps after a
            compilation of a minute or two; falls back to eager mode if compiling fails).
        time_limit: minutes of wall-clock time the whole run may take (0: no limit), for a cluster
            job's wall time or a borrowed GPU: the poly schedule then decays over this time (or
            over ``epochs``, whichever ends sooner) and the run stops once it is spent, validating
            and saving what it has. A resumed run counts the time already spent. Where such a run
            stops depends on the machine's speed, so it does not repeat bit for bit.
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    voxel_size: float = MEMBRAIN_VOXEL_SIZE
    patch_size: int = 160
    batch_size: int = 2
    epochs: int = 1000
    steps_per_epoch: int = 0
    learning_rate: float = 1e-2
    momentum: float = 0.99
    weight_decay: float = 3e-5
    poly_power: float = 0.9
    validate_every: int = 1
    precision: TrainPrecision = TrainPrecision.AUTO
    num_workers: int = 2
    seed: int = 0
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    clip_grad_norm: float = 0.0
    compile: bool = True
    time_limit: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "compile", flag("training compile", self.compile))
        for name, low in (("patch_size", 1), ("batch_size", 1), ("epochs", 1), ("validate_every", 1),
                          ("steps_per_epoch", 0), ("num_workers", 0), ("seed", 0)):
            object.__setattr__(self, name, number(f"training {name}", getattr(self, name), low, integer=True))
        for name, low, high, open_low, open_high in _NUMBERS:
            object.__setattr__(self, name, number(f"training {name}", getattr(self, name), low, high,
                                                  open_low=open_low, open_high=open_high))
        object.__setattr__(self, "precision", choice("training precision", self.precision, TrainPrecision))
        multiple = self.network.size_multiple
        if self.patch_size % multiple:
            raise ConfigError(f"patch_size {self.patch_size} must be a multiple of {multiple} (the network's five "
                              f"2× down-samplings); e.g. {max(multiple, round(self.patch_size / multiple) * multiple)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        data = {k: v for k, v in asdict(self).items() if k not in ("network", "augment", "loss")}
        data.update(network=self.network.to_dict(), precision=self.precision.value, loss=self.loss.to_dict(),
                    augment=None if self.augment is None else self.augment.to_dict())
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Read a configuration written by :meth:`to_dict` (or a user's YAML/JSON); missing keys
        take the defaults.

        Raises:
            ConfigError: an unknown key or an invalid value.
        """
        values = known_keys(cls, data, "training configuration")
        if "network" in values:
            values["network"] = NetworkConfig.from_dict(values["network"])
        if "loss" in values:
            values["loss"] = LossConfig.from_dict(values["loss"])
        if values.get("augment") is not None:
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        return cls(**values)

    def but(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)


#: What fine-tuning changes in the defaults (MemBrain-seg's ``finetune.py``).
FINETUNE_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-5, "epochs": 100}

