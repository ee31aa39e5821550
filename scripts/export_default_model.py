"""Store a trained checkpoint as the embedded default model (float16 weights, inside the package).

    python scripts/export_default_model.py runs/default/best.bilayer.pt

writes ``core/bilayer/model/weights/bilayer_default.bilayer.pt``: all weights (deep-supervision
heads too, so ``bilayer finetune`` can start from it) in float16, which halves the file
(inference casts them to its own precision), and the model info with ``source`` set to the
default model's name.

``--threshold T`` (from ``calibrate_threshold.py`` on validation data) subtracts T from the bias
of every output head, so the exported model's logit 0 is the trained model's T: ``bilayer
segment``'s default threshold 0 then gives the calibrated masks, and nothing else changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from bilayer.model import read_checkpoint, write_checkpoint
from bilayer.model.zoo import DEFAULT_MODEL_FILE

TARGET = Path(__file__).resolve().parents[1] / "core" / "bilayer" / "model" / DEFAULT_MODEL_FILE


def _to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float weights in float16, keeping tensors that several keys share shared (MONAI's DynUNet
    names each deep layer twice), so the file holds every weight once."""
    converted: dict[tuple[int, torch.Size, tuple[int, ...]], torch.Tensor] = {}
    half = {}
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            half[key] = tensor
            continue
        alias = (tensor.data_ptr(), tensor.shape, tensor.stride())
        if alias not in converted:
            converted[alias] = tensor.to(torch.float16)
        half[key] = converted[alias]
    return half


def shift_output_bias(state: dict[str, torch.Tensor], offset: float) -> dict[str, torch.Tensor]:
    """``state`` with ``offset`` subtracted from the bias of the output convolution and of every
    deep-supervision head (their logits move by -offset); shared tensors stay shared."""
    shifted: dict[int, torch.Tensor] = {}
    out = dict(state)
    for key, tensor in state.items():
        if not (key.endswith("conv.conv.bias") and ("output_block" in key or "head" in key)):
            continue
        if tensor.data_ptr() not in shifted:
            shifted[tensor.data_ptr()] = tensor - offset
        out[key] = shifted[tensor.data_ptr()]
    if not shifted:
        raise ValueError("no output bias found: is this a MemBrain-seg-style network?")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="the trained checkpoint (e.g. runs/default/best.bilayer.pt)")
    p.add_argument("--name", default="bilayer default model v2", help="the model's name in its info")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="calibrated score threshold to fold into the output bias (default 0: none)")
    p.add_argument("--out", type=Path, default=TARGET, help=f"where to write (default: {TARGET})")
    args = p.parse_args(argv)
    info, state = read_checkpoint(args.checkpoint)
    if args.threshold:
        state = shift_output_bias(state, args.threshold)
    half = _to_half(state)
    info = dataclasses.replace(info, source=args.name, training={**info.training, "exported_from": args.checkpoint.name,
                                                                 "threshold_folded_into_bias": args.threshold})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(args.out, info, half, overwrite=True)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
