"""The tiny network and fast settings the training tests share (test_trainer.py, test_step.py,
test_sources.py): runs that take seconds on a CPU."""

from __future__ import annotations

from bilayer.model import NetworkConfig

TINY = NetworkConfig(filters=(8, 16, 32, 64), strides=(1, 2, 2, 2))
FAST = dict(network=TINY, patch_size=32, batch_size=2, num_workers=0, precision="float32", compile=False)
