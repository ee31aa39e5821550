"""Training data: dataset folders in MemBrain-seg's layout, patch datasets, and the synthetic
membrane tomogram generator (:mod:`bilayer.data.synthetic`).

Names load on first use, so ``import bilayer.data.synthetic`` does not load torch.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES = {
    "LABEL_VALUES": "layout",
    "Split": "layout",
    "VAL_SEED_OFFSET": "layout",
    "dataset_paths": "layout",
    "link_pairs": "layout",
    "write_pair": "layout",
    "PatchPair": "folder",
    "find_pairs": "folder",
    "read_array": "folder",
    "FolderPatches": "patches",
    "SyntheticPatches": "patches",
    "sample_seed": "patches",
    "augmentation": "sources",
    "training_data": "sources",
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
