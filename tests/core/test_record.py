"""bilayer.train.record: metrics.csv has one row per epoch in fixed columns; the curves are a PNG."""

from __future__ import annotations

import csv
import struct

from bilayer.train.record import COLUMNS, write_curves, write_metrics

HISTORY = [
    {"epoch": 1, "step": 10, "learning_rate": 0.01, "train_loss": 0.912345678, "seconds": 3.5},
    {"epoch": 2, "step": 20, "learning_rate": 0.0053, "train_loss": 0.5, "val_loss": 0.61, "val_dice": 0.7,
     "val_surface_dice": None, "seconds": 7.25, "not_a_column": "dropped"},
]


def test_metrics_are_one_row_per_epoch_in_fixed_columns(tmp_path):
    path = tmp_path / "metrics.csv"
    write_metrics(path, HISTORY[:1])
    write_metrics(path, HISTORY)  # rewritten whole each epoch
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[0] == "epoch,step,learning_rate,train_loss,val_loss,val_dice,val_surface_dice,seconds"
    assert lines[1:] == ["1,10,0.01,0.912346,,,,3.5", "2,20,0.0053,0.5,0.61,0.7,,7.25"]
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r["val_loss"] for r in rows] == ["", "0.61"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]  # no temporary files left


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_curves_are_a_png_of_ten_by_four_inches_even_without_validation(tmp_path):
    write_curves(tmp_path / "curves.png", HISTORY, title="run")
    assert _png_size((tmp_path / "curves.png").read_bytes()) == (1000, 400)
    no_validation = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": float("nan")} for e in (1, 2, 3)]
    write_curves(tmp_path / "curves.png", no_validation)  # replaced; NaN and missing values are left out
    assert _png_size((tmp_path / "curves.png").read_bytes()) == (1000, 400)
    write_curves(tmp_path / "empty.png", [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "empty.png"]
