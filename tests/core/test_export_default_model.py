"""scripts/export_default_model.py: float16 weights, and a calibrated threshold folded into the output bias."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from bilayer.model import ModelInfo, NetworkConfig, build_network, load_checkpoint, save_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "export_default_model.py"
SMALL = NetworkConfig(filters=(4, 8, 8, 16), strides=(1, 2, 2, 2))


def _script():
    spec = importlib.util.spec_from_file_location("export_default_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scores(path: Path, x: torch.Tensor) -> torch.Tensor:
    network = load_checkpoint(path).network.float().eval()
    with torch.no_grad():
        return network(x)


def test_the_folded_threshold_moves_every_score_by_it_and_keeps_the_file_size(tmp_path):
    torch.manual_seed(0)
    network = build_network(SMALL)
    for p in network.parameters():  # not the initial zero biases: a real spread of scores
        p.data += 0.05 * torch.randn_like(p)
    trained = save_checkpoint(tmp_path / "trained.bilayer.pt", network, ModelInfo(network=SMALL))
    export = _script().main
    assert export([str(trained), "--out", str(tmp_path / "plain.bilayer.pt")]) == 0
    assert export([str(trained), "--threshold", "1.5", "--out", str(tmp_path / "shifted.bilayer.pt")]) == 0
    x = torch.randn(1, 1, 32, 32, 32)
    plain, shifted = _scores(tmp_path / "plain.bilayer.pt", x), _scores(tmp_path / "shifted.bilayer.pt", x)
    assert plain.std() > 0.05
    torch.testing.assert_close(shifted, plain - 1.5, rtol=0, atol=2e-3)  # float16 bias: 1.5 is exact, b-1.5 near
    assert abs((tmp_path / "shifted.bilayer.pt").stat().st_size - (tmp_path / "plain.bilayer.pt").stat().st_size) < 512
    info = load_checkpoint(tmp_path / "shifted.bilayer.pt").info
    assert info.training["threshold_folded_into_bias"] == 1.5
