"""Train MemBrain-seg's default U-Net briefly on synthetic data and save it as a MemBrain-seg checkpoint.

The side-by-side benchmark needs weights that segment something: with random weights both tools
print noise masks and Dice means nothing. This script

1. trains Bilayer's ``build_network(NetworkConfig())`` (MemBrain-seg's 91 M-parameter DynUNet,
   same state-dict keys) in plain PyTorch on synthetic patches from Bilayer's generator (10 Å,
   64³ and 96³, label 2 ignored), with masked BCE + soft Dice on the three deep-supervision
   outputs (weights 1, 0.5, 0.25), Adam (or MemBrain-seg's SGD) with a poly schedule over a
   wall-time budget, bfloat16 autocast on the CPU;
2. saves the weights with **MemBrain-seg's own code** (``SemanticSegmentationUnet`` + Lightning
   ``Trainer.save_checkpoint``, in its virtualenv) as ``bench/.cache/membrain_bench.ckpt``;
3. segments held-out synthetic 128³ tomograms through Bilayer's loader of that ``.ckpt`` and
   reports Dice against the ground truth (exit status 1 if the mean is not above 0.3).

Patches are fed in MemBrain-seg's axis order (x, y, z): MemBrain-seg transposes tomograms that
way before its network, and Bilayer does the same for imported MemBrain-seg checkpoints.

    python bench/make_checkpoint.py --minutes 25
    python bench/make_checkpoint.py --minutes 10 --resume    # train on from the last state
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _membrain_env import CACHE_DIR, BenchError, ensure_membrain_venv, membrain_python, run_measured

log = logging.getLogger("make_checkpoint")

VOXEL_SIZE = 10.0  # Å: MemBrain-seg's models work at 10 Å
DS_WEIGHTS = (1.0, 0.5, 0.25)  # MemBrain-seg's deep-supervision weights for the three outputs
PATCH_BATCH = {64: 2, 96: 1}  # voxels per step stay near 0.5–0.9 M
EVAL_FIRST_SEED, EVAL_COUNT = 910_001, 3  # held-out tomograms: the first 3 seeds with membranes
MIN_MEMBRANE = 0.01  # fraction of label-1 voxels for a held-out tomogram to count
EVAL_SHAPE = (128, 128, 128)
MIN_DICE = 0.3


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(), logging.FileHandler(CACHE_DIR / "make_checkpoint.log")],
    )
    try:
        versions = ensure_membrain_venv(CACHE_DIR)
        state_path = CACHE_DIR / "train_state.pt"
        facts = train(args, state_path)
        weights = CACHE_DIR / "membrain_bench_weights.pt"
        torch.save(torch.load(state_path, weights_only=True)["network"], weights)
        run_measured(
            [membrain_python(), Path(__file__).with_name("_membrain_save_ckpt.py"), weights, args.out],
            CACHE_DIR / "membrain_save_ckpt.log",
        ).check("saving the checkpoint with membrain-seg")
        weights.unlink()
        log.info("saved %s with membrain-seg %s", args.out, versions["membrain_seg"])
        dice = evaluate(args.out)
    except BenchError as e:
        log.error("%s", e)
        return 2
    facts.update(
        checkpoint=str(args.out),
        membrain=versions,
        eval_first_seed=EVAL_FIRST_SEED,
        eval_shape=list(EVAL_SHAPE),
        eval_dice=dice,
        eval_dice_mean=float(np.mean(dice)),
    )
    args.out.with_suffix(".json").write_text(json.dumps(facts, indent=2) + "\n")
    log.info(
        "held-out Dice %s, mean %.3f; facts in %s",
        ", ".join(f"{d:.3f}" for d in dice),
        np.mean(dice),
        args.out.with_suffix(".json"),
    )
    if not np.mean(dice) > MIN_DICE:
        log.error("mean Dice %.3f is not above %.1f: train longer (--resume --minutes N)", np.mean(dice), MIN_DICE)
        return 1
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=25.0, help="wall-time budget of the training (default 25)")
    p.add_argument(
        "--optimizer",
        choices=("adam", "sgd"),
        default="adam",
        help="adam (lr 1e-3 here; converges in few steps) or MemBrain-seg's SGD (lr 0.01, momentum 0.99, Nesterov)",
    )
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per optimizer)")
    p.add_argument(
        "--patch-sizes",
        type=int,
        nargs="+",
        default=[64, 96],
        choices=sorted(PATCH_BATCH),
        help="patch edges drawn from, 96 one step in four (default 64 96)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data stream and initial weights")
    p.add_argument("--resume", action="store_true", help="continue from bench/.cache/train_state.pt")
    p.add_argument("--out", type=Path, default=CACHE_DIR / "membrain_bench.ckpt", help="checkpoint to write")
    return p.parse_args(argv)


def train(args: argparse.Namespace, state_path: Path) -> dict:
    """Train for ``args.minutes`` and keep the state in ``state_path``; return training facts."""
    from bilayer.data.synthetic import SynthConfig, generate_patches
    from bilayer.model import NetworkConfig, build_network

    torch.manual_seed(args.seed)
    network = build_network(NetworkConfig()).to(memory_format=torch.channels_last_3d).train()
    lr = args.lr or (1e-3 if args.optimizer == "adam" else 1e-2)
    if args.optimizer == "adam":
        optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    else:
        optimizer = torch.optim.SGD(network.parameters(), lr=lr, momentum=0.99, nesterov=True, weight_decay=3e-5)
    step, history = 0, []
    if args.resume:
        saved = torch.load(state_path, weights_only=True)
        network.load_state_dict(saved["network"])
        optimizer.load_state_dict(saved["optimizer"])
        step, history = saved["step"], json.loads(saved["history"])
        log.info("resumed at step %d", step)
    streams = {
        s: generate_patches(
            SynthConfig(shape=(s,) * 3, voxel_size=VOXEL_SIZE), 100_000, seed=args.seed * 1000 + s + step
        )
        for s in args.patch_sizes
    }
    rng = np.random.default_rng(args.seed + step)
    budget = args.minutes * 60.0
    started = last_save = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < budget:
        for group in optimizer.param_groups:  # poly-0.9 schedule over the time budget, 5-step warm-up
            group["lr"] = lr * min(1.0, (step + 1) / 5) * (1 - elapsed / budget) ** 0.9
        size = 96 if 96 in streams and (len(streams) == 1 or rng.random() < 0.25) else min(streams)
        t0 = time.perf_counter()
        image, labels = _batch(streams[size], PATCH_BATCH[size], rng)
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = network(image)
        loss, bce, dice = _loss(outputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        history.append([step, round(elapsed, 1), size, float(loss), float(bce), float(dice)])
        log.info(
            "step %4d  %5.1f min  %d³×%d  loss %.4f (bce %.4f, 1-dice %.4f)  lr %.2e  data %.1f s  step %.1f s",
            step,
            elapsed / 60,
            size,
            PATCH_BATCH[size],
            loss,
            bce,
            dice,
            optimizer.param_groups[0]["lr"],
            t1 - t0,
            time.perf_counter() - t1,
        )
        if not math.isfinite(float(loss)):
            raise BenchError(f"the loss became {float(loss)} at step {step}; try a lower --lr")
        if time.perf_counter() - last_save > 300:
            _save_state(state_path, network, optimizer, step, history)
            last_save = time.perf_counter()
    _save_state(state_path, network, optimizer, step, history)
    first, last = [h[3] for h in history[:20]], [h[3] for h in history[-20:]]
    return {
        "steps": step,
        "minutes_this_run": args.minutes,
        "optimizer": args.optimizer,
        "lr": lr,
        "patch_sizes": args.patch_sizes,
        "voxel_size": VOXEL_SIZE,
        "seed": args.seed,
        "loss_first_20": float(np.mean(first)) if first else None,
        "loss_last_20": float(np.mean(last)) if last else None,
        "history": history,
    }


def _batch(stream, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` patches as (n, 1, x, y, z) tensors: image float32, labels uint8; random mirroring."""
    images, labels = [], []
    for _ in range(n):
        patch = next(stream)
        flip = tuple(a for a in range(3) if rng.random() < 0.5)
        images.append(np.flip(patch.image.transpose(2, 1, 0), flip))
        labels.append(np.flip(patch.labels.transpose(2, 1, 0), flip))
    image = torch.from_numpy(np.ascontiguousarray(np.stack(images)[:, None], dtype=np.float32))
    return image.contiguous(memory_format=torch.channels_last_3d), torch.from_numpy(np.stack(labels)[:, None].copy())


def _loss(outputs: list[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Deep-supervised masked BCE + soft Dice; labels 2 count for nothing."""
    total, bce_full, dice_full = 0.0, 0.0, 0.0
    for i, (logits, weight) in enumerate(zip(outputs, DS_WEIGHTS)):
        logits = logits.float()
        lab = labels if i == 0 else F.interpolate(labels.float(), size=logits.shape[2:], mode="nearest")
        valid = (lab != 2).float()
        target = (lab == 1).float()
        bce = F.binary_cross_entropy_with_logits(logits, target, weight=valid, reduction="sum") / valid.sum().clamp_min(
            1
        )
        prob = torch.sigmoid(logits) * valid
        dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + (target * valid).sum() + 1)
        total = total + weight * (bce + dice)
        if i == 0:
            bce_full, dice_full = bce.item(), dice.item()
    return total / sum(DS_WEIGHTS[: len(outputs)]), bce_full, dice_full


def _save_state(path: Path, network, optimizer, step: int, history: list) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(
        {
            "network": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "history": json.dumps(history),
        },
        partial,
    )
    partial.replace(path)


def evaluate(ckpt: Path) -> list[float]:
    """Dice (label 1 vs mask, label 2 excluded) of Bilayer's segmentation with ``ckpt`` per held-out tomogram.

    The held-out tomograms are the first ``EVAL_COUNT`` seeds from ``EVAL_FIRST_SEED`` on whose
    labels hold at least ``MIN_MEMBRANE`` membrane (a few scenes are drawn empty on purpose).
    """
    from bilayer.data.synthetic import SynthConfig, generate_tomogram
    from bilayer.infer import InferenceConfig, Precision, Predictor, segment_volume
    from bilayer.io import Volume

    predictor = Predictor.from_checkpoint(
        ckpt, InferenceConfig(window=128, overlap=0.25, tta=False, precision=Precision.AUTO), device="cpu"
    )
    dice, seed = [], EVAL_FIRST_SEED - 1
    while len(dice) < EVAL_COUNT:
        seed += 1
        tomo = generate_tomogram(SynthConfig(shape=EVAL_SHAPE, voxel_size=VOXEL_SIZE), seed=seed)
        if np.mean(tomo.labels == 1) < MIN_MEMBRANE:
            continue
        mask = segment_volume(Volume(tomo.image, voxel_size=tomo.voxel_size), predictor).mask.data > 0
        dice.append(_dice(mask, tomo.labels))
        log.info(
            "held-out tomogram seed %d: membrane %.1f%%, predicted %.1f%%, Dice %.3f",
            seed,
            100 * np.mean(tomo.labels == 1),
            100 * mask.mean(),
            dice[-1],
        )
    return dice


def _dice(mask: np.ndarray, labels: np.ndarray) -> float:
    valid = labels != 2
    truth = (labels == 1) & valid
    pred = mask & valid
    denom = truth.sum() + pred.sum()
    return float(2 * (truth & pred).sum() / denom) if denom else 1.0


if __name__ == "__main__":
    sys.exit(main())
