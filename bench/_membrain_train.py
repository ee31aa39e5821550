"""MemBrain-seg 0.0.10's training pieces, timed; runs inside MemBrain-seg's virtualenv.

    python _membrain_train.py augment PATCH.npz N SEED      # its get_training_transforms, N samples
    python _membrain_train.py step SIZE BATCH STEPS          # its network, loss and optimizer
    python _membrain_train.py metrics MASKS.npz              # its benchmark Dice and Surface-Dice

Prints one JSON object as the last line. ``step`` runs as its Lightning ``Trainer`` does on a
CPU: ``precision="16-mixed"`` becomes bfloat16 autocast there ("bf16-mixed"); deep supervision on.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch


def augment(patch: str, n: int, seed: int) -> dict:
    from membrain_seg.segmentation.dataloading.memseg_augmentation import get_training_transforms

    data = np.load(patch)
    transforms = get_training_transforms(prob_to_one=False)
    transforms.set_random_state(seed)
    times = []
    for _ in range(n):
        sample = {"image": data["image"][None].copy(), "label": data["label"][None].astype(np.float32)}
        started = time.perf_counter()
        transforms(sample)
        times.append(time.perf_counter() - started)
    return {"seconds": times}


def step(size: int, batch: int, steps: int) -> dict:
    from membrain_seg.segmentation.networks.unet import SemanticSegmentationUnet

    torch.manual_seed(0)
    model = SemanticSegmentationUnet(use_deep_supervision=True).train()
    optimizer = model.configure_optimizers()[0][0]
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(batch, 1, size, size, size, generator=gen)
    label = torch.randint(0, 3, (batch, 1, size, size, size), generator=gen).float()
    labels = [label] + [torch.nn.functional.interpolate(label, scale_factor=1 / 2**k, mode="nearest")
                        for k in range(1, 5)]
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = model._model(image)
        loss = model.loss_function(outputs, labels, ["synthetic"] * batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return {"seconds": times, "loss": float(loss)}


def metrics(path: str) -> dict:
    from membrain_seg.benchmark.metrics import masked_dice, masked_surface_dice
    from membrain_seg.segmentation.skeletonize import skeletonization

    data = np.load(path)
    pred, gt = data["pred"], data["gt"]
    mask = gt != 2
    gt_skel = skeletonization(gt == 1, batch_size=100000)
    pred_skel = skeletonization(pred, batch_size=100000)
    surface, _ = masked_surface_dice(pred_skel, gt_skel, pred.copy(), gt.copy(), mask)
    dice, _ = masked_dice(pred.copy(), gt.copy(), mask)
    return {"dice": float(dice), "surface_dice": float(surface)}


if __name__ == "__main__":
    what, *rest = sys.argv[1:]
    if what == "augment":
        result = augment(rest[0], int(rest[1]), int(rest[2]))
    elif what == "step":
        result = step(*(int(v) for v in rest))
    else:
        result = metrics(rest[0])
    print(json.dumps(result))
