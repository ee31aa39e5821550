"""bilayer.model.checkpoint: our format, MemBrain-seg imports, and refusing files that run code."""

from __future__ import annotations

import builtins
import copy
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from bilayer._version import __version__
from bilayer.errors import ConfigError, InputFileError, OutputError
from bilayer.model import (
    CHECKPOINT_SUFFIX,
    AxisOrder,
    ModelInfo,
    NetworkConfig,
    Normalisation,
    build_network,
    import_membrain_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from torch import nn

MEMBRAIN = Path(__file__).parents[1] / "data" / "membrain"
MEMBRAIN_TINY_CKPT = MEMBRAIN / "membrain_seg_0.0.10_tiny.ckpt"
MEMBRAIN_TINY_IO = MEMBRAIN / "membrain_seg_0.0.10_tiny_io.npz"

SMALL = NetworkConfig(filters=(4, 8, 8, 16), strides=(1, 2, 2, 2))
#: MemBrain-seg variants: narrow six-level ones (what its training can make) and a shallower one.
MEMBRAIN_VARIANTS = {
    "six_levels": NetworkConfig(filters=(2, 4, 4, 8, 8, 16)),
    "six_levels_wider": NetworkConfig(filters=(4, 8, 16, 16, 32, 32)),
    "four_levels": NetworkConfig(filters=(4, 8, 16, 32), strides=(1, 2, 2, 2)),
}


def _network(config: NetworkConfig, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    network = build_network(config)
    with torch.no_grad():  # make the affine norm weights non-trivial too
        for p in network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return network.eval()


def _predict(network: nn.Module, config: NetworkConfig, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    size = max(config.size_multiple, 16)
    x = torch.randn(1, config.in_channels, size, size, 2 * size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return x, network.eval()(x)


def _write_lightning_checkpoint(path: Path, network: nn.Module) -> None:
    """Write a checkpoint structured like the ones MemBrain-seg's Lightning training writes."""
    model = nn.Module()
    model._model = network  # MemBrain-seg's SemanticSegmentationUnet keeps its network as `_model`
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-2, momentum=0.99, weight_decay=3e-5, nesterov=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: (1 - epoch / 1000) ** 0.9)
    state = copy.deepcopy(model.state_dict())  # the weights as they were (weight decay moves them)
    for p in network.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step(), scheduler.step()
    progress = {"total": {"ready": 1, "completed": 1}, "current": {"ready": 1, "completed": 1}}
    best = str(path.parent / "checkpoints" / "membrain-epoch=00-val_loss=0.50.ckpt")
    monitor_key = "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1}"
    torch.save(
        {
            "epoch": 0,
            "global_step": 1,
            "pytorch-lightning_version": "2.6.6",
            "state_dict": state,
            "loops": {
                "fit_loop": {
                    "state_dict": {},
                    "epoch_loop.state_dict": {"_batches_that_stepped": 1},
                    "epoch_loop.scheduler_progress": progress,
                }
            },
            "callbacks": {
                monitor_key: {
                    "monitor": "val_loss",
                    "best_model_score": torch.tensor(0.5),
                    "best_model_path": best,
                    "best_k_models": {best: torch.tensor(0.5)},
                    "kth_value": torch.tensor(float("inf")),
                    "last_model_path": "",
                }
            },
            "optimizer_states": [optimizer.state_dict()],
            "lr_schedulers": [scheduler.state_dict()],
        },
        path,
    )


def test_round_trip_gives_identical_weights_outputs_and_info(tmp_path):
    network = _network(SMALL)
    info = ModelInfo(network=SMALL, voxel_size=14.08, source="bilayer", training={"epochs": 3, "loss": [0.9, 0.5]})
    path = save_checkpoint(tmp_path / f"m{CHECKPOINT_SUFFIX}", network, info)
    assert path == tmp_path / "m.bilayer.pt"
    loaded = load_checkpoint(path)
    assert loaded.info == info and loaded.path == path and not loaded.network.training
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value), key
    x, expected = _predict(network, SMALL)
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(x), expected, rtol=0, atol=0)


def test_file_is_plain_data_that_torch_loads_without_extra_globals(tmp_path):
    network = _network(SMALL)
    path = save_checkpoint(tmp_path / "m.bilayer.pt", network, ModelInfo(network=SMALL))
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    payload = torch.load(path, weights_only=True)
    assert json.loads(payload["info"])["network"] == SMALL.to_dict()
    assert json.loads(payload["info"])["bilayer_version"] == __version__
    # names sharing a tensor (DynUNet registers each block twice) are stored once
    unique_bytes = sum(p.numel() * p.element_size() for p in network.parameters())
    assert path.stat().st_size < 1.3 * unique_bytes + 100_000


def test_saving_refuses_to_clobber_or_to_mislabel(tmp_path):
    network = _network(SMALL)
    path = save_checkpoint(tmp_path / "m.bilayer.pt", network, ModelInfo(network=SMALL))
    before = path.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        save_checkpoint(path, _network(SMALL, seed=5), ModelInfo(network=SMALL))
    assert path.read_bytes() == before
    save_checkpoint(path, _network(SMALL, seed=5), ModelInfo(network=SMALL), overwrite=True)
    assert path.read_bytes() != before
    with pytest.raises(ConfigError, match="does not match"):
        save_checkpoint(tmp_path / "other.bilayer.pt", network, ModelInfo(network=NetworkConfig()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bilayer.pt"]


def test_data_parallel_wrapper_is_saved_as_the_bare_network(tmp_path):
    network = _network(SMALL)
    path = save_checkpoint(tmp_path / "m.bilayer.pt", nn.DataParallel(network), ModelInfo(network=SMALL))
    assert set(torch.load(path, weights_only=True)["state_dict"]) == set(network.state_dict())


@pytest.mark.parametrize("name", list(MEMBRAIN_VARIANTS))
def test_membrain_checkpoint_imports_and_predicts_like_its_network(tmp_path, name):
    config = MEMBRAIN_VARIANTS[name]
    network = _network(config, seed=7)
    x, expected = _predict(network, config)
    ckpt = tmp_path / "membrain_v10-epoch=00-val_loss=0.50.ckpt"
    _write_lightning_checkpoint(ckpt, network)
    loaded = load_checkpoint(ckpt)
    assert loaded.info.network == config
    assert loaded.info.voxel_size == 10.0 and loaded.info.axis_order is AxisOrder.XYZ
    assert loaded.info.normalisation is Normalisation.TOMOGRAM_ZSCORE
    assert ckpt.name in loaded.info.source and loaded.info.training["pytorch-lightning_version"] == "2.6.6"
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(x), expected, rtol=0, atol=0)
    converted = import_membrain_checkpoint(ckpt, tmp_path / "imported.bilayer.pt")
    again = load_checkpoint(converted)
    assert again.info == loaded.info
    with torch.no_grad():
        torch.testing.assert_close(again.network(x), expected, rtol=0, atol=0)


def test_real_membrain_seg_checkpoint_gives_membrain_seg_scores():
    assert torch.serialization.get_unsafe_globals_in_checkpoint(MEMBRAIN_TINY_CKPT) == []
    loaded = load_checkpoint(MEMBRAIN_TINY_CKPT)
    assert loaded.info.network == NetworkConfig(filters=(2, 4, 4, 8, 8, 16))
    io = np.load(MEMBRAIN_TINY_IO)
    with torch.no_grad():
        scores = loaded.network(torch.from_numpy(io["input"].astype(np.float32)))
    np.testing.assert_allclose(scores.numpy(), io["scores"], rtol=0, atol=1e-4)
    assert np.abs(io["scores"]).max() > 1.0  # the reference is not trivially zero


class _Payload:
    """Unpickling this calls ``function(*args)``: what a malicious checkpoint does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _payloads(marker: Path) -> dict[str, _Payload]:
    return {
        "os.system": _Payload(os.system, f"touch '{marker}'"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
@pytest.mark.parametrize("where", ["membrain_callbacks", "bilayer_info", "top_level"])
def test_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path, kind, where):
    control_marker, marker = tmp_path / "control_ran", tmp_path / "payload_ran"
    network = _network(SMALL)
    good = tmp_path / "good.ckpt"
    _write_lightning_checkpoint(good, network)
    payload = torch.load(good, weights_only=True)
    if where == "membrain_callbacks":
        payload["callbacks"]["evil"] = "PAYLOAD"
    elif where == "bilayer_info":
        save_checkpoint(tmp_path / "good.bilayer.pt", network, ModelInfo(network=SMALL))
        payload = torch.load(tmp_path / "good.bilayer.pt", weights_only=True)
        payload["info"] = "PAYLOAD"
    else:
        payload = "PAYLOAD"

    def write(path: Path, marker_path: Path) -> Path:
        torch.save(_replace_placeholder(payload, _payloads(marker_path)[kind]), path)
        return path

    # control: the payload is real, an unrestricted unpickler runs it
    torch.load(write(tmp_path / "control.ckpt", control_marker), weights_only=False)
    assert control_marker.exists()

    evil_path = write(tmp_path / "evil.ckpt", marker)
    with pytest.raises(InputFileError) as caught:
        load_checkpoint(evil_path)
    message = str(caught.value)
    assert str(evil_path) in message and "would run code" in message and "\n" not in message
    assert f"calls {'posix.system' if kind == 'os.system' else 'exec'}" in message
    with pytest.raises(InputFileError, match="would run code"):
        import_membrain_checkpoint(evil_path, tmp_path / "out.bilayer.pt")
    assert not marker.exists()
    assert not (tmp_path / "out.bilayer.pt").exists()


def _replace_placeholder(payload, evil):
    """``payload`` with each "PAYLOAD" string replaced by ``evil``."""
    if isinstance(payload, dict):
        return {k: _replace_placeholder(v, evil) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_replace_placeholder(v, evil) for v in payload]
    return evil if isinstance(payload, str) and payload == "PAYLOAD" else payload


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "dir.ckpt").mkdir()
    return tmp_path / "dir.ckpt"


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty.ckpt").write_bytes(b"")
    return tmp_path / "empty.ckpt"


def _text(tmp_path: Path) -> Path:
    (tmp_path / "notes.ckpt").write_text("weights: see the lab wiki\n")
    return tmp_path / "notes.ckpt"


def _zip_of_text(tmp_path: Path) -> Path:
    with zipfile.ZipFile(tmp_path / "archive.ckpt", "w") as z:
        z.writestr("notes.txt", "not a checkpoint")
    return tmp_path / "archive.ckpt"


def _plain_tensor(tmp_path: Path) -> Path:
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    return tmp_path / "tensor.pt"


def _truncated(tmp_path: Path) -> Path:
    path = save_checkpoint(tmp_path / "full.bilayer.pt", _network(SMALL), ModelInfo(network=SMALL))
    target = tmp_path / "truncated.bilayer.pt"
    target.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return target


def _edited_bilayer(tmp_path: Path, **changes) -> Path:
    path = save_checkpoint(tmp_path / "base.bilayer.pt", _network(SMALL), ModelInfo(network=SMALL))
    torch.save(torch.load(path, weights_only=True) | changes, tmp_path / "edited.bilayer.pt")
    return tmp_path / "edited.bilayer.pt"


def _lightning_with_foreign_weights(tmp_path: Path) -> Path:
    path = tmp_path / "foreign.ckpt"
    _write_lightning_checkpoint(path, nn.Sequential(nn.Conv3d(1, 2, 3), nn.Conv3d(2, 1, 1)))
    return path


def _lightning_missing_a_tensor(tmp_path: Path) -> Path:
    path = tmp_path / "partial.ckpt"
    _write_lightning_checkpoint(path, _network(SMALL))
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["_model.upsamples.0.conv_block.norm1.weight"]
    torch.save(payload, path)
    return path


BAD_FILES = {
    "missing": (lambda d: d / "absent.ckpt", "does not exist"),
    "folder": (_folder, "not a file"),
    "empty": (_empty, "empty"),
    "text": (_text, "not a PyTorch checkpoint of plain weights"),
    "truncated": (_truncated, "corrupt or truncated"),
    "zip_of_text": (_zip_of_text, "not a PyTorch checkpoint"),
    "plain_tensor": (_plain_tensor, "neither a Bilayer"),
    "foreign_lightning": (_lightning_with_foreign_weights, "not a MemBrain-seg network"),
    "lightning_missing_tensor": (_lightning_missing_a_tensor, "1 missing"),
    "newer_format": (lambda d: _edited_bilayer(d, format_version=99), "upgrade Bilayer"),
    "info_not_json": (lambda d: _edited_bilayer(d, info="{"), "unreadable model info"),
    "info_mismatch": (
        lambda d: _edited_bilayer(d, info=json.dumps(ModelInfo(network=NetworkConfig()).to_dict())),
        "do not fit",
    ),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, name):
    make, expected = BAD_FILES[name]
    path = make(tmp_path)
    with pytest.raises(InputFileError, match=expected) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_invalid_device_is_a_config_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.bilayer.pt", _network(SMALL), ModelInfo(network=SMALL))
    with pytest.raises(ConfigError, match="gpu9"):
        load_checkpoint(path, device="gpu9")
