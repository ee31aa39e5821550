"""Bilayer's training pieces, timed the same way as ``_membrain_train.py`` (same arguments)."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch


def augment(patch: str, n: int, seed: int) -> dict:
    from bilayer.augment import AugmentConfig, build_augmentation

    data = np.load(patch)
    pipeline = build_augmentation(AugmentConfig(), seed=seed)
    times = []
    for _ in range(n):
        sample = {"image": torch.from_numpy(data["image"][None].copy()),
                  "label": torch.from_numpy(data["label"][None].astype(np.float32))}
        started = time.perf_counter()
        pipeline(sample)
        times.append(time.perf_counter() - started)
    return {"seconds": times}


def step(size: int, batch: int, steps: int) -> dict:
    """Steps of ``bilayer train``'s own :class:`Stepper` (channels-last, autocast, SGD)."""
    from bilayer.losses import MembraneLoss
    from bilayer.model import NetworkConfig, build_network
    from bilayer.train import TrainConfig
    from bilayer.train.step import CHANNELS_LAST, Stepper, autocast_dtype, make_optimizer

    torch.manual_seed(0)
    config = TrainConfig(patch_size=size, batch_size=batch)
    network = build_network(NetworkConfig()).to(memory_format=CHANNELS_LAST).train()
    stepper = Stepper(network, MembraneLoss(config.loss), make_optimizer(network, config),
                      autocast_dtype(config.precision, torch.device("cpu")), compile=config.compile)
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(batch, 1, size, size, size, generator=gen)
    label = torch.randint(0, 3, (batch, 1, size, size, size), generator=gen).float()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        loss = stepper(image, label)
        times.append(time.perf_counter() - started)
    return {"seconds": times, "loss": float(loss), "dtype": str(stepper.dtype), "compile": config.compile}


def metrics(path: str) -> dict:
    from bilayer.metrics import dice, surface_dice

    data = np.load(path)
    return {"dice": float(dice(data["pred"], data["gt"])), "surface_dice": float(surface_dice(data["pred"], data["gt"]))}


if __name__ == "__main__":
    what, *rest = sys.argv[1:]
    if what == "augment":
        result = augment(rest[0], int(rest[1]), int(rest[2]))
    elif what == "step":
        result = step(*(int(v) for v in rest))
    else:
        result = metrics(rest[0])
    print(json.dumps(result))
