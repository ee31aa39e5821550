"""Training and fine-tuning with MemBrain-seg's recipe: resumable, data-parallel under torchrun.

Names load on first use (PEP 562), so importing :mod:`bilayer.train.config` or
:mod:`bilayer.train.settings` (as the Scipion forms and the command line do) loads neither torch
nor MONAI; :func:`train` loads them.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES = {
    "FINETUNE_DEFAULTS": "config",
    "TrainConfig": "config",
    "TrainPrecision": "config",
    "read_settings": "settings",
    "training_config": "settings",
    "TrainResult": "trainer",
    "train": "trainer",
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
