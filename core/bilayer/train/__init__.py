"""Training and fine-tuning with MemBrain-seg's recipe: resumable, data-parallel under torchrun."""

from bilayer.train.config import FINETUNE_DEFAULTS, TrainConfig, TrainPrecision
from bilayer.train.settings import read_settings, training_config
from bilayer.train.trainer import TrainResult, train

__all__ = ["FINETUNE_DEFAULTS", "TrainConfig", "TrainPrecision", "TrainResult", "read_settings", "train",
           "training_config"]
