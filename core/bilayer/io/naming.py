"""The names of a tomogram's outputs: ``<stem><suffix>`` in the output folder (DESIGN.md §3).

The one owner of these names: the command line, the Python API, the Scipion protocols and the
RELION jobs all ask here, so a rename happens in one place.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

from bilayer.errors import ConfigError

__all__ = ["OUTPUT_SUFFIXES", "output_name", "output_paths", "threshold_mask_name"]

#: Output kinds and the ending each adds to the input's stem.
OUTPUT_SUFFIXES: dict[str, str] = {
    "mask": "_seg.mrc",
    "scores": "_scores.mrc",
    "components": "_components.mrc",
    "skeleton": "_skeleton.mrc",
    "uncertainty": "_uncertainty.mrc",
    "preview": "_preview.png",
    "spectrum": "_spectrum.tsv",
    "matched": "_matched.mrc",
    "deconvolved": "_deconv.mrc",
    "rescaled": "_rescaled.mrc",
}


def output_name(source: str | os.PathLike, kind: str) -> str:
    """The file name of ``source``'s output of ``kind`` (e.g. ``tomo.mrc``, mask → ``tomo_seg.mrc``)."""
    try:
        suffix = OUTPUT_SUFFIXES[kind]
    except KeyError as e:
        raise ConfigError(f"unknown output kind {kind!r}; use one of {', '.join(OUTPUT_SUFFIXES)}") from e
    return f"{Path(source).stem}{suffix}"


def output_paths(source: str | os.PathLike, out_dir: str | os.PathLike, kinds: Iterable[str]) -> dict[str, Path]:
    """``{kind: out_dir / output_name(source, kind)}`` for each of ``kinds``, in their order."""
    return {kind: Path(out_dir) / output_name(source, kind) for kind in kinds}


def threshold_mask_name(scores: str | os.PathLike, threshold: float) -> str:
    """The mask of ``scores`` (a ``<stem>_scores.mrc``) at ``threshold``: ``<stem>_seg_t<threshold>.mrc``
    (``tomo_scores.mrc``, 1.5 → ``tomo_seg_t1.5.mrc``; the threshold as Python's shortest ``g`` form)."""
    if not math.isfinite(threshold):
        raise ConfigError(f"threshold {threshold!r} must be a finite number")
    stem = Path(scores).stem.removesuffix(Path(OUTPUT_SUFFIXES["scores"]).stem)
    mask = Path(OUTPUT_SUFFIXES["mask"])
    return f"{stem}{mask.stem}_t{threshold:g}{mask.suffix}"
