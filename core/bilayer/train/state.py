"""The resumable state of a training run: everything needed to continue exactly after a kill.

``state.pt`` in the run folder holds the network's weights, the optimiser's state (momentum
buffers), the loss scaler's, the epoch reached, the best validation loss, the metrics history
and torch's random state. It is replaced atomically at the end of every epoch, so a run killed
at any moment resumes from its last finished epoch; data draws are seeded per (epoch, sample),
so the resumed run repeats the uninterrupted one. It is read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bilayer.errors import InputFileError
from bilayer.io.atomic import atomic_open

__all__ = ["STATE_FILE", "TrainState", "load_state", "save_state"]

STATE_FILE = "state.pt"
_FORMAT = "bilayer-train-state"


@dataclass
class TrainState:
    """Where a run stands after ``epoch`` finished epochs.

    Attributes:
        epoch: finished epochs.
        step: optimiser steps taken.
        best_val_loss: lowest validation loss so far (``inf`` before the first validation).
        history: one dict of metrics per finished epoch.
        config: the run's :class:`~bilayer.train.config.TrainConfig` as a dict.
        network, optimizer, scaler: state dicts.
        rng: torch's CPU random state.
        seconds: wall-clock time the run has taken so far (what a time limit counts).
    """

    epoch: int
    step: int
    best_val_loss: float
    history: list[dict[str, Any]]
    config: dict[str, Any]
    network: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scaler: dict[str, Any] = field(default_factory=dict)
    rng: torch.Tensor = field(default_factory=torch.get_rng_state)
    seconds: float = 0.0


def save_state(folder: str | os.PathLike, state: TrainState) -> Path:
    """Write ``state`` to ``folder/state.pt``, replacing the previous one atomically."""
    path = Path(folder) / STATE_FILE
    payload = {
        "format": _FORMAT,
        "epoch": state.epoch,
        "step": state.step,
        "best_val_loss": state.best_val_loss,
        "history": json.dumps(state.history),
        "config": json.dumps(state.config),
        "network": state.network,
        "optimizer": state.optimizer,
        "scaler": state.scaler,
        "rng": state.rng,
        "seconds": state.seconds,
    }
    with atomic_open(path, overwrite=True) as f:
        torch.save(payload, f)
    return path


def load_state(folder: str | os.PathLike) -> TrainState | None:
    """The state saved in ``folder``, or ``None`` if there is none.

    Raises:
        InputFileError: the file exists but is not a readable training state.
    """
    path = Path(folder) / STATE_FILE
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != _FORMAT:
            raise ValueError("not a training state")
        return TrainState(
            epoch=int(payload["epoch"]), step=int(payload["step"]), best_val_loss=float(payload["best_val_loss"]),
            history=json.loads(payload["history"]), config=json.loads(payload["config"]),
            network=payload["network"], optimizer=payload["optimizer"], scaler=payload["scaler"], rng=payload["rng"],
            seconds=float(payload.get("seconds", 0.0)),  # states written before time limits lack it
        )
    except Exception as e:  # torch.load and the checks fail in many ways on a damaged file
        raise InputFileError(f"{path} is not a readable training state ({e}); remove it to start the run afresh") from e
