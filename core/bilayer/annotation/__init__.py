"""The annotation loop of MemBrain v2 (MemBrain-seg's ``patch_corrections``): suggest where the
model is least sure, cut training patches there, apply an annotator's corrections, fine-tune.

Names load on first use; nothing here needs torch.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES = {
    "parse_position": "positions",
    "read_positions": "positions",
    "write_positions": "positions",
    "PatchFormat": "extract",
    "extract_patches": "extract",
    "patch_case": "extract",
    "patch_start": "extract",
    "Corrections": "merge",
    "merge_corrections": "merge",
    "merge_dataset": "merge",
    "read_corrections": "merge",
    "Suggestion": "suggest",
    "suggest_patches": "suggest",
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
