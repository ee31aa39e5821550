"""Many tomograms: run folders whose work is idempotent, per-tomogram claims shared between
processes and nodes, and the run's summary (issue 21).

Names load on first use (no torch): see each module.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES: dict[str, str] = {
    **dict.fromkeys(("Claim", "ClaimInfo", "ClaimState", "claim_key", "claim_state", "read_claim", "try_claim"),
                    "claims"),
    **dict.fromkeys(("Run", "TomogramRecord", "format_table", "is_done", "model_id", "open_run", "run_table",
                     "tomogram_key", "write_record", "write_summary"), "records"),
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
