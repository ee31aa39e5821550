"""What a training run reports as it goes: a metrics CSV and a PNG of the learning curves."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Sequence

from bilayer.io.atomic import atomic_open

__all__ = ["COLUMNS", "write_curves", "write_metrics"]

#: Columns of ``metrics.csv``, one row per epoch.
COLUMNS = ("epoch", "step", "learning_rate", "train_loss", "val_loss", "val_dice", "val_surface_dice", "seconds")


def write_metrics(path: str | os.PathLike, history: Sequence[dict[str, Any]]) -> None:
    """Write the whole history as CSV (rewritten atomically each epoch, so it is never torn)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    with atomic_open(path, overwrite=True) as f:
        f.write(buffer.getvalue().encode())


def write_curves(path: str | os.PathLike, history: Sequence[dict[str, Any]], title: str = "") -> None:
    """A PNG with the training and validation loss (left) and validation Dice and Surface-Dice (right)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    loss_ax, score_ax = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for key, label in (("train_loss", "training loss"), ("val_loss", "validation loss")):
        xs, ys = _series(epochs, history, key)
        if xs:
            loss_ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
    for key, label in (("val_dice", "validation Dice"), ("val_surface_dice", "validation Surface-Dice")):
        xs, ys = _series(epochs, history, key)
        if xs:
            score_ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    score_ax.set(xlabel="epoch", ylabel="score", ylim=(0, 1), title="validation")
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    with atomic_open(Path(path), overwrite=True) as f:
        f.write(buffer.getvalue())


def _series(epochs: list[int], history: Sequence[dict[str, Any]], key: str) -> tuple[list, list]:
    pairs = [(e, row[key]) for e, row in zip(epochs, history) if _is_number(row.get(key))]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
