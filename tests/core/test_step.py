"""bilayer.train.step: compiled steps follow the eager ones; a failing compile falls back to eager."""

from __future__ import annotations

import numpy as np
import torch

from bilayer.data.patches import SyntheticPatches
from bilayer.data.synthetic import SynthConfig
from bilayer.losses import LossConfig, MembraneLoss
from bilayer.model import build_network
from bilayer.train import TrainConfig
from bilayer.train.step import Stepper, make_optimizer
from tiny_training import FAST, TINY


def _stepper(compile: bool, seed: int = 0):
    torch.manual_seed(seed)
    network = build_network(TINY).train()
    config = TrainConfig(**FAST)
    return Stepper(network, MembraneLoss(LossConfig()), make_optimizer(network, config), compile=compile), network


def test_compiled_steps_follow_the_eager_ones():
    batch = SyntheticPatches(SynthConfig(voxel_size=10.0), 2, 32, seed=3, fixed=True)
    image = torch.stack([batch[i]["image"] for i in range(2)])
    label = torch.stack([batch[i]["label"] for i in range(2)])
    (eager, _), (compiled, _) = _stepper(False), _stepper(True)
    eager_losses = [float(eager(image, label)) for _ in range(3)]
    compiled_losses = [float(compiled(image, label)) for _ in range(3)]
    assert compiled._forward is not compiled.model  # it really ran compiled
    np.testing.assert_allclose(compiled_losses, eager_losses, rtol=2e-3)
    assert eager_losses[-1] < eager_losses[0]


def test_a_failing_compile_falls_back_to_eager_steps(monkeypatch, caplog):
    def broken(model):
        def fail(*args):
            raise RuntimeError("no C++ compiler here")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    stepper, network = _stepper(True)
    image, label = torch.randn(2, 1, 32, 32, 32), torch.randint(0, 2, (2, 1, 32, 32, 32)).float()
    loss = stepper(image, label)
    assert torch.isfinite(loss) and stepper._forward is network
    assert "torch.compile failed" in caplog.text and "no C++ compiler" in caplog.text
