"""Many tomograms: run folders whose work is idempotent, per-tomogram claims shared between
processes and nodes, the run's summary, and its inputs expanded from files, globs, text lists and
RELION tomogram lists, worker processes per device and SLURM job arrays (issue 21).

Names load on first use (no torch): see each module.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES: dict[str, str] = {
    **dict.fromkeys(("Claim", "ClaimInfo", "ClaimState", "claim_key", "claim_state", "read_claim", "try_claim"),
                    "claims"),
    **dict.fromkeys(("BatchInput", "expand_inputs"), "inputs"),
    **dict.fromkeys(("Run", "TomogramRecord", "format_table", "is_done", "model_id", "open_run", "run_table",
                     "tomogram_key", "write_record", "write_summary"), "records"),
    **dict.fromkeys(("BatchReport", "Outcome", "run_batch", "run_status"), "runner"),
    **dict.fromkeys(("run_workers", "worker_devices"), "workers"),
    **dict.fromkeys(("parse_slurm", "submit_segment"), "slurm"),
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
