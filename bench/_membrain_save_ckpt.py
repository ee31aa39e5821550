"""Write trained weights as a MemBrain-seg checkpoint, with MemBrain-seg's own code.

Runs inside MemBrain-seg's virtualenv (it imports nothing from Bilayer):

    python _membrain_save_ckpt.py WEIGHTS.pt OUT.ckpt

``WEIGHTS.pt`` is a ``torch.save``'d state dict of the U-Net without a prefix (what
``bilayer.model.build_network(NetworkConfig()).state_dict()`` holds). They are loaded strictly
into ``SemanticSegmentationUnet()`` under its ``_model.`` attribute, and a Lightning ``Trainer``
writes the checkpoint exactly as MemBrain-seg's training does (``trainer.save_checkpoint``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from membrain_seg.segmentation.networks.unet import SemanticSegmentationUnet


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python _membrain_save_ckpt.py WEIGHTS.pt OUT.ckpt", file=sys.stderr)
        return 2
    weights, out = Path(argv[0]), Path(argv[1])
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = SemanticSegmentationUnet()  # MemBrain-seg's default: 32…1024 filters, deep supervision
    model.load_state_dict({f"_model.{k}": v for k, v in state.items()}, strict=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=1,
    )
    trainer.strategy.connect(model)
    partial = out.with_name(out.name + ".partial")
    trainer.save_checkpoint(partial)
    partial.replace(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({n} parameters, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
