"""Training and fine-tuning with MemBrain-seg's recipe: resumable, data-parallel under torchrun."""

from bilayer.train.config import FINETUNE_DEFAULTS, TrainConfig, TrainPrecision
from bilayer.train.trainer import TrainResult, train

__all__ = ["FINETUNE_DEFAULTS", "TrainConfig", "TrainPrecision", "TrainResult", "train"]
