"""Model checkpoints: Bilayer's own format, MemBrain-seg imports, and loading that never runs
code from the file.

**Bilayer format** (suggested suffix :data:`CHECKPOINT_SUFFIX`): ``torch.save`` of plain data,
``{"format": "bilayer-checkpoint", "format_version": 1, "info": "<ModelInfo as JSON>",
"state_dict": {name: tensor}}``. **MemBrain-seg format**: the PyTorch Lightning ``.ckpt`` its
training writes (``pytorch-lightning_version``, ``state_dict`` with ``_model.``-prefixed weights,
``loops``, ``callbacks``, ``optimizer_states``, ``lr_schedulers``); the architecture is read from
the weights' shapes and the metadata is MemBrain-seg's (10 Å, whole-tomogram z-score, x-y-z axes).

Both are read with ``torch.load(weights_only=True)`` only: its unpickler builds tensors, numbers,
strings, lists, tuples and dicts and refuses any other class or function before calling it.
Checkpoints of MemBrain-seg 0.0.10 with Lightning 2.x hold nothing else, so no global is
allow-listed.

Length: just over 300 lines; the safe reader and the writer of one format stay together.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bilayer.errors import ConfigError, InputFileError
from bilayer.io.atomic import atomic_open
from bilayer.model.info import MEMBRAIN_VOXEL_SIZE, AxisOrder, ModelInfo, Normalisation
from bilayer.model.layout import check_state_dict, config_from_state_dict

if TYPE_CHECKING:
    from bilayer.model.network import MembraneUNet

__all__ = [
    "CHECKPOINT_SUFFIX",
    "LoadedModel",
    "import_membrain_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "write_checkpoint",
]

log = logging.getLogger(__name__)

#: Suggested file-name ending of Bilayer checkpoints (loading detects the format by content).
CHECKPOINT_SUFFIX = ".bilayer.pt"

_FORMAT = "bilayer-checkpoint"
_FORMAT_VERSION = 1
_MEMBRAIN_PREFIX = "_model."


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference (eval mode, on the requested device) and its metadata.

    Attributes:
        network: the network; in eval mode its forward returns the full-resolution logits.
        info: its metadata.
        path: the file it was loaded from.
    """

    network: "MembraneUNet"
    info: ModelInfo
    path: Path


def save_checkpoint(path: str | os.PathLike, network: nn.Module, info: ModelInfo, *, overwrite: bool = False) -> Path:
    """Write ``network``'s weights and ``info`` atomically as a Bilayer checkpoint.

    The file appears only when complete. Weights are stored on the CPU, tensors shared
    between names stored once.

    Args:
        path: output file; :data:`CHECKPOINT_SUFFIX` is the suggested ending.
        network: a network built from ``info.network`` (DataParallel/DDP wrappers are unwrapped).
        info: the metadata to store with it.
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        ConfigError: ``network`` does not have the architecture ``info.network`` describes.
        OutputError: ``path`` exists (and ``overwrite`` is false) or cannot be written.
    """
    if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        network = network.module
    return write_checkpoint(path, info, _cpu_state_dict(network), overwrite=overwrite)


def write_checkpoint(path: str | os.PathLike, info: ModelInfo, state: dict[str, torch.Tensor], *,
                     overwrite: bool = False) -> Path:
    """Write weights (CPU tensors, any float dtype, e.g. float16 to halve the file) and ``info``
    atomically as a Bilayer checkpoint.

    Raises:
        ConfigError: the weights do not fit ``info.network``.
        OutputError: ``path`` exists (and ``overwrite`` is false) or cannot be written.
    """
    try:
        check_state_dict(info.network, state)
    except ConfigError as e:
        raise ConfigError(f"cannot save checkpoint {path}: the network does not match its model info ({e})") from e
    payload = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "info": json.dumps(info.to_dict(), sort_keys=True),
        "state_dict": state,
    }
    with atomic_open(path, overwrite=overwrite) as f:
        torch.save(payload, f)
    log.info("saved checkpoint %s (%s)", path, info.source)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> tuple[ModelInfo, dict[str, torch.Tensor]]:
    """The metadata and weights of a Bilayer checkpoint or a MemBrain-seg Lightning ``.ckpt``.

    Nothing in the file is executed (``torch.load(weights_only=True)``), no network is built
    and MONAI is not imported: this is all inference needs. The weights are memory-mapped
    from the file where its format allows, so tensors nobody uses are never read.

    Raises:
        InputFileError: the file is missing, not a checkpoint, corrupt or truncated, would
            run code when unpickled, or its weights do not fit its architecture.
    """
    path = Path(path)
    payload = _read(path)
    if isinstance(payload, dict) and payload.get("format") == _FORMAT:
        return _parse_bilayer(path, payload)
    if _is_lightning(payload):
        return _parse_membrain(path, payload)
    raise InputFileError(
        f"{path} is a PyTorch file but neither a Bilayer checkpoint nor a MemBrain-seg Lightning checkpoint; "
        "give a checkpoint written by Bilayer or by MemBrain-seg training"
    )


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a Bilayer checkpoint or a MemBrain-seg Lightning ``.ckpt`` as a network (detected by content).

    Nothing in the file is executed: it is read with ``torch.load(weights_only=True)``.

    Args:
        path: the checkpoint file.
        device: where to put the network ("cpu", "cuda", "cuda:1", …).

    Returns:
        The network in eval mode on ``device``, with its metadata.

    Raises:
        InputFileError: the file is missing, not a checkpoint, corrupt or truncated, would
            run code when unpickled, or its weights do not fit its architecture.
        ConfigError: ``device`` is not a valid torch device.
    """
    from bilayer.model.network import build_network

    path = Path(path)
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device {device!r} is not a torch device; use e.g. 'cpu' or 'cuda:0'") from e
    info, state = read_checkpoint(path)
    with torch.device("meta"):  # no random initial weights: the checkpoint's own tensors become the parameters
        network = build_network(info.network)
    network.load_state_dict(state, strict=True, assign=True)  # names and shapes were checked while parsing
    try:
        network.to(target).eval()
    except (RuntimeError, AssertionError) as e:  # e.g. "Torch not compiled with CUDA enabled"
        raise ConfigError(f"cannot put the network on device {device!r} ({e}); use 'cpu' or an available GPU") from e
    log.info("loaded %s (%s, %.4g Å)", path, info.source, info.voxel_size)
    return LoadedModel(network=network, info=info, path=path)


def import_membrain_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Convert a MemBrain-seg Lightning ``.ckpt`` into a Bilayer checkpoint (see :func:`save_checkpoint`).

    Returns:
        The path written.

    Raises:
        InputFileError: ``src`` is not a readable MemBrain-seg checkpoint.
        OutputError: ``dst`` exists (and ``overwrite`` is false) or cannot be written.
    """
    src = Path(src)
    payload = _read(src)
    if not _is_lightning(payload):
        raise InputFileError(f"{src} is not a MemBrain-seg Lightning checkpoint; give the .ckpt its training wrote")
    return write_checkpoint(dst, *_parse_membrain(src, payload), overwrite=overwrite)


def _read(path: Path) -> Any:
    """``torch.load`` with the restricted unpickler, every failure turned into one line."""
    if not path.exists():
        raise InputFileError(f"checkpoint {path} does not exist; check the path")
    if not path.is_file():
        raise InputFileError(f"checkpoint {path} is not a file; give the checkpoint file itself")
    if path.stat().st_size == 0:
        raise InputFileError(f"checkpoint {path} is empty; copy or download it again")
    try:
        return _torch_load(path)
    except pickle.UnpicklingError as e:
        called = re.search(r"GLOBAL ([\w.]+)", str(e))  # the restricted unpickler refused a class or function
        if called:
            raise InputFileError(
                f"{path} was not loaded because it would run code when unpickled (it calls {called.group(1)}); "
                "Bilayer loads only weights and plain data, so use a checkpoint from a trusted source"
            ) from None
        raise InputFileError(
            f"{path} was not loaded: it is not a PyTorch checkpoint of plain weights and data, or it is corrupt; "
            "give a checkpoint written by Bilayer or by MemBrain-seg training"
        ) from None
    except OSError as e:
        raise InputFileError(f"cannot read checkpoint {path}: {e.strerror or e}; check its permissions") from e
    except Exception as e:  # the zip and pickle readers fail in many ways on damaged files
        raise InputFileError(
            f"{path} is not a PyTorch checkpoint, or it is corrupt or truncated; copy or download it again"
        ) from e


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, memory-mapped where the file allows it.

    Mapping reads only the tensors used: a Lightning checkpoint's optimizer state (as large as
    the weights) is never brought into memory.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):  # files of torch.save's legacy (non-zip) format cannot be mapped
            raise
    return torch.load(path, map_location="cpu", weights_only=True)


def _parse_bilayer(path: Path, payload: dict) -> tuple[ModelInfo, dict[str, torch.Tensor]]:
    version = payload.get("format_version")
    if not isinstance(version, int) or version > _FORMAT_VERSION:
        raise InputFileError(f"{path} has checkpoint format version {version!r}; upgrade Bilayer to read it")
    state = payload.get("state_dict")
    try:
        info = ModelInfo.from_dict(json.loads(payload["info"]))
    except (KeyError, TypeError, ValueError) as e:  # ConfigError is a ValueError
        raise InputFileError(f"{path} has unreadable model info ({e}); the file is damaged or was edited") from e
    if not _is_tensor_dict(state):
        raise InputFileError(f"{path} has no weights; the file is damaged or was edited")
    try:
        check_state_dict(info.network, state)
    except ConfigError as e:
        raise InputFileError(f"{path}: {e}; the file is damaged or was edited") from e
    return info, state


def _parse_membrain(path: Path, payload: dict) -> tuple[ModelInfo, dict[str, torch.Tensor]]:
    raw = payload["state_dict"]
    if not _is_tensor_dict(raw):
        raise InputFileError(f"{path} is a Lightning checkpoint without weights; give the .ckpt written by training")
    state = {k[len(_MEMBRAIN_PREFIX) :]: v for k, v in raw.items() if k.startswith(_MEMBRAIN_PREFIX)}
    skipped = len(raw) - len(state)
    if skipped:
        log.debug("%s: ignoring %d tensors outside %r", path, skipped, _MEMBRAIN_PREFIX)
    try:
        config = config_from_state_dict(state)
    except ConfigError as e:
        raise InputFileError(f"{path} is a Lightning checkpoint but not a MemBrain-seg network: {e}") from e
    facts = {
        k: payload[k]
        for k in ("pytorch-lightning_version", "epoch", "global_step")
        if isinstance(payload.get(k), (str, int)) and not isinstance(payload.get(k), bool)
    }
    info = ModelInfo(
        network=config,
        voxel_size=MEMBRAIN_VOXEL_SIZE,
        normalisation=Normalisation.TOMOGRAM_ZSCORE,
        axis_order=AxisOrder.XYZ,
        source=f"membrain-seg import of {path.name}",
        training=facts,
    )
    return info, state


def _is_lightning(payload: Any) -> bool:
    return isinstance(payload, dict) and "pytorch-lightning_version" in payload and "state_dict" in payload


def _is_tensor_dict(value: Any) -> bool:
    items = value.items() if isinstance(value, dict) else ()
    return bool(items) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in items)


def _cpu_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict on the CPU as a plain dict; names that share a tensor keep sharing it."""
    moved: dict[tuple, torch.Tensor] = {}
    state = {}
    for name, t in network.state_dict().items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
        if key not in moved:
            moved[key] = t.detach().cpu()
        state[name] = moved[key]
    return state
