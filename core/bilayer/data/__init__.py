"""Training data: dataset folders in MemBrain-seg's layout, patch datasets, and the synthetic
membrane tomogram generator (:mod:`bilayer.data.synthetic`).

Names load on first use, so ``import bilayer.data.synthetic`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "LABEL_VALUES": "folder",
    "PatchPair": "folder",
    "Split": "folder",
    "find_pairs": "folder",
    "read_array": "folder",
    "FolderPatches": "patches",
    "SyntheticPatches": "patches",
    "sample_seed": "patches",
    "augmentation": "sources",
    "training_data": "sources",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'bilayer.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"bilayer.data.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
