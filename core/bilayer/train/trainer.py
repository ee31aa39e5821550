"""The training loop: MemBrain-seg's recipe, resumable after a kill, data-parallel under torchrun.

:func:`train` turns a :class:`~bilayer.train.config.TrainConfig` and training (and validation)
patches into Bilayer checkpoints in a run folder::

    config.json        the settings (a resumed run must have the same)
    state.pt           resumable state, replaced atomically after every epoch
    metrics.csv        one row per epoch: learning rate, losses, validation Dice and Surface-Dice
    curves.png         the learning curves, redrawn after every epoch
    last.bilayer.pt    the network after the last finished epoch
    best.bilayer.pt    the network with the lowest validation loss (MemBrain-seg's criterion)

Fine-tuning starts from a loaded model (Bilayer's or an imported MemBrain-seg ``.ckpt``) and
keeps its architecture and axis order.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bilayer.errors import ConfigError
from bilayer.io.atomic import atomic_open, ensure_output_dir
from bilayer.losses import MembraneLoss
from bilayer.metrics import dice, surface_dice
from bilayer.model.checkpoint import CHECKPOINT_SUFFIX, LoadedModel, save_checkpoint
from bilayer.model.info import AxisOrder, ModelInfo, Normalisation
from bilayer.model.network import build_network
from bilayer.train.config import TrainConfig
from bilayer.train.distributed import Cluster, join_cluster
from bilayer.train.record import write_curves, write_metrics
from bilayer.train.state import TrainState, load_state, save_state
from bilayer.train.step import CHANNELS_LAST, Stepper, autocast_dtype, make_optimizer

__all__ = ["TrainResult", "train"]

log = logging.getLogger(__name__)

#: Receives (epoch, metrics of that epoch) after each epoch on the main process.
EpochFn = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class TrainResult:
    """A finished (or already complete) run.

    Attributes:
        folder: the run folder.
        last: the checkpoint after the last epoch.
        best: the checkpoint with the lowest validation loss (``last`` without validation).
        history: metrics per epoch.
    """

    folder: Path
    last: Path
    best: Path
    history: list[dict[str, Any]]


def train(config: TrainConfig, train_data: Dataset, out_dir: str | os.PathLike, *, val_data: Dataset | None = None,
          init: LoadedModel | None = None, device: str | torch.device | None = None, resume: bool = True,
          on_epoch: EpochFn | None = None) -> TrainResult:
    """Train (or fine-tune ``init``) on ``train_data`` and write the run folder ``out_dir``.

    Args:
        config: the recipe.
        train_data: patches (:class:`~bilayer.data.patches.FolderPatches` or
            :class:`~bilayer.data.patches.SyntheticPatches`).
        out_dir: the run folder; a run already there is continued if ``resume``.
        val_data: validation patches, or None (then ``best`` is the last network).
        init: start from this model's weights (fine-tuning); its architecture is used.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``; under torchrun each process takes its GPU.
        resume: continue the run in ``out_dir`` from its saved state.
        on_epoch: called on the main process after each epoch (progress reporting).

    Raises:
        ConfigError: bad settings, or ``out_dir`` holds a run with other settings.
        OutputError: the run folder cannot be written.
    """
    cluster = join_cluster(device)
    try:
        return _Run(config, train_data, val_data, Path(out_dir), init, cluster, resume, on_epoch).run()
    finally:
        cluster.leave()


class _Run:
    """One training run's objects and loop (kept together so the steps stay short)."""

    def __init__(self, config: TrainConfig, train_data: Dataset, val_data: Dataset | None, folder: Path,
                 init: LoadedModel | None, cluster: Cluster, resume: bool, on_epoch: EpochFn | None) -> None:
        self.config, self.train_data, self.val_data, self.cluster = config, train_data, val_data, cluster
        self.folder, self.on_epoch = ensure_output_dir(folder), on_epoch
        self.info = _model_info(config, init)
        if config.patch_size % self.info.network.size_multiple:
            raise ConfigError(f"patch_size {config.patch_size} must be a multiple of "
                              f"{self.info.network.size_multiple} for this network")
        torch.manual_seed(config.seed)
        network = build_network(self.info.network) if init is None else init.network
        # channels-last: oneDNN/cuDNN convolve without reordering, and the norms keep it (model.norm)
        self.network = network.float().to(cluster.device, memory_format=CHANNELS_LAST).train()
        self.dtype = autocast_dtype(config.precision, cluster.device)
        self.optimizer = make_optimizer(self.network, config)
        self.model = self.network
        if cluster.distributed:
            ids = [cluster.device.index] if cluster.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.network, device_ids=ids)
        self.loss_fn = MembraneLoss(config.loss)
        self.stepper = Stepper(self.model, self.loss_fn, self.optimizer, self.dtype, config.clip_grad_norm,
                               config.compile)
        self.state = self._start(resume)
        self._since, self._limit = time.perf_counter(), 60.0 * config.time_limit  # the clock of the time limit

    # ------------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        config, epoch = self.config, self.state.epoch
        done = epoch >= config.epochs or self._out_of_time()  # a finished run, resumed
        while not done:
            epoch += 1
            started = time.perf_counter()
            self._set_lr(epoch)
            train_loss = self._train_epoch(epoch)
            row = {"epoch": epoch, "step": self.state.step, "learning_rate": self.optimizer.param_groups[0]["lr"],
                   "train_loss": train_loss}
            done = epoch == config.epochs or self._out_of_time()
            if self.val_data is not None and (epoch % config.validate_every == 0 or done):
                row.update(self._validate())
            row["seconds"] = time.perf_counter() - started
            self._finish_epoch(epoch, row)
        return self._result()

    def _train_epoch(self, epoch: int) -> float:
        self.model.train()
        total = torch.zeros(2, dtype=torch.float64)
        batches = self._loader(self.train_data, epoch, shuffle=True)
        show = self.cluster.is_main and sys.stderr.isatty()
        every, started = max(1, len(batches) // 10), time.perf_counter()
        for index, batch in enumerate(tqdm(batches, desc=f"epoch {epoch}/{self.config.epochs}", disable=not show,
                                           leave=False), start=1):
            if self.config.time_limit and index > 1:  # every epoch takes at least one step
                elapsed = self._elapsed()  # once per step: under torchrun it is a collective
                if elapsed >= self._limit:
                    break
                self._set_lr(epoch, elapsed)
            image, label = self._to_model(batch)
            loss = self.stepper(image, label).item()
            self.state.step += 1
            total += torch.tensor([loss * image.shape[0], image.shape[0]], dtype=torch.float64)
            if index % every == 0 and self.cluster.is_main:  # a trace for logs (RELION run.out, Scipion)
                log.info("epoch %d: step %d/%d, loss %.4f, %.2f s per step", epoch, index, len(batches),
                         total[0] / total[1], (time.perf_counter() - started) / index)
        total = self.cluster.sum(total)
        return float(total[0] / total[1]) if total[1] else math.nan

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        self.model.eval()
        sums = torch.zeros(4, dtype=torch.float64)  # loss, Dice, Surface-Dice, samples
        for batch in self._loader(self.val_data, 0, shuffle=False):
            image, label = self._to_model(batch)
            with torch.autocast(self.cluster.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                outputs = self.network.forward_with_heads(image)  # eval mode, the training loss's outputs
            loss, full = self.loss_fn(outputs, label).item(), outputs[0]
            masks, labels = (full[:, 0] > 0).cpu().numpy(), label[:, 0].cpu().numpy()
            for mask, truth in zip(masks, labels):
                sums += torch.tensor([loss, dice(mask, truth), surface_dice(mask, truth), 1.0], dtype=torch.float64)
        sums = self.cluster.sum(sums)
        n = max(float(sums[3]), 1.0)
        return {"val_loss": float(sums[0]) / n, "val_dice": float(sums[1]) / n, "val_surface_dice": float(sums[2]) / n}

    def _finish_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        state, now = self.state, time.perf_counter()
        state.epoch, state.seconds, self._since = epoch, state.seconds + now - self._since, now
        state.history.append(row)
        improved = "val_loss" in row and row["val_loss"] < state.best_val_loss
        if improved:
            state.best_val_loss = row["val_loss"]
        if self.cluster.is_main:
            info = replace(self.info, training={**self.info.training, "epoch": epoch, "step": state.step,
                                                **{k: v for k, v in row.items() if k.startswith("val_")}})
            save_checkpoint(self.folder / f"last{CHECKPOINT_SUFFIX}", self.network, info, overwrite=True)
            if improved or self.val_data is None:
                save_checkpoint(self.folder / f"best{CHECKPOINT_SUFFIX}", self.network, info, overwrite=True)
            state.network = self.network.state_dict()
            state.optimizer, state.scaler = self.optimizer.state_dict(), self.stepper.scaler.state_dict()
            state.rng = torch.get_rng_state()
            save_state(self.folder, state)
            write_metrics(self.folder / "metrics.csv", state.history)
            write_curves(self.folder / "curves.png", state.history, title=self.info.source)
            log.info("epoch %d/%d: %s", epoch, self.config.epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
            if self.on_epoch is not None:
                self.on_epoch(epoch, row)
        self.cluster.barrier()

    # ------------------------------------------------------------------ helpers

    def _start(self, resume: bool) -> TrainState:
        """A fresh state, or the saved one of this folder (same settings required)."""
        settings = self.config.to_dict()
        saved = load_state(self.folder) if resume else None
        if saved is None:
            if self.cluster.is_main:
                with atomic_open(self.folder / "config.json", overwrite=True) as f:
                    f.write(json.dumps(settings, indent=2, sort_keys=True).encode())
            return TrainState(0, 0, math.inf, [], settings, {}, {})
        if saved.config != settings:
            changed = sorted(k for k in set(settings) | set(saved.config) if settings.get(k) != saved.config.get(k))
            raise ConfigError(f"{self.folder} holds a run with other settings ({', '.join(changed)}); "
                              "use another --out folder, or the same settings to continue it")
        self.network.load_state_dict(saved.network)
        self.optimizer.load_state_dict(saved.optimizer)
        if saved.scaler:
            self.stepper.scaler.load_state_dict(saved.scaler)
        torch.set_rng_state(saved.rng)
        log.info("resuming %s after epoch %d", self.folder, saved.epoch)
        return saved

    def _set_lr(self, epoch: int, elapsed: float | None = None) -> None:
        """MemBrain-seg's poly schedule, one value per epoch (epoch 1 uses the initial rate); under a
        time limit, set before every step, over the epochs or the time (``elapsed`` seconds, read
        here if not given), whichever is further on."""
        progress = (epoch - 1) / self.config.epochs
        if self.config.time_limit:
            progress = max(progress, (self._elapsed() if elapsed is None else elapsed) / self._limit)
        factor = max(0.0, 1 - progress) ** self.config.poly_power
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate * factor

    def _elapsed(self) -> float:
        """Seconds this run has taken, resumed parts included; under torchrun the processes' mean,
        so that all of them stop at the same step."""
        seconds = self.state.seconds + time.perf_counter() - self._since
        if self.cluster.distributed:
            seconds = float(self.cluster.sum(torch.tensor([seconds]))[0]) / self.cluster.world_size
        return seconds

    def _out_of_time(self) -> bool:
        return bool(self.config.time_limit) and self._elapsed() >= self._limit

    def _loader(self, data: Dataset, epoch: int, *, shuffle: bool) -> DataLoader:
        """This process's batches of ``epoch``: a seeded permutation, dealt out by rank."""
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)
        n, per_step = len(data), self.config.batch_size * self.cluster.world_size
        order = np.random.default_rng([self.config.seed, epoch]).permutation(n) if shuffle else np.arange(n)
        steps = self.config.steps_per_epoch if shuffle and self.config.steps_per_epoch else math.ceil(n / per_step)
        order = np.resize(order, steps * per_step)  # repeats the permutation to fill every step
        mine = order[self.cluster.rank::self.cluster.world_size].tolist()
        workers = self.config.num_workers
        return DataLoader(data, batch_size=self.config.batch_size, sampler=mine, num_workers=workers,
                          worker_init_fn=_quiet_worker if workers else None, drop_last=False,
                          pin_memory=self.cluster.device.type == "cuda")

    def _to_model(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = batch["image"], batch["label"]
        if self.info.axis_order == AxisOrder.XYZ:  # MemBrain-seg's networks see (x, y, z)
            image, label = image.permute(0, 1, 4, 3, 2), label.permute(0, 1, 4, 3, 2)
        device = self.cluster.device
        return (image.to(device, non_blocking=True).contiguous(memory_format=CHANNELS_LAST),
                label.to(device, non_blocking=True).contiguous())

    def _result(self) -> TrainResult:
        best = self.folder / f"best{CHECKPOINT_SUFFIX}"
        last = self.folder / f"last{CHECKPOINT_SUFFIX}"
        return TrainResult(self.folder, last, best if best.exists() else last, list(self.state.history))


def _model_info(config: TrainConfig, init: LoadedModel | None) -> ModelInfo:
    if init is None:
        return ModelInfo(network=config.network, voxel_size=config.voxel_size,
                         normalisation=Normalisation.TOMOGRAM_ZSCORE, axis_order=AxisOrder.ZYX,
                         source="bilayer train", training={"recipe": config.to_dict()})
    if not math.isclose(init.info.voxel_size, config.voxel_size, rel_tol=1e-3):
        log.warning("fine-tuning a %.3g Å model on data declared %.3g Å; the new model is stored at %.3g Å",
                    init.info.voxel_size, config.voxel_size, config.voxel_size)
    recipe = replace(config, network=init.info.network).to_dict()  # the network actually trained
    return replace(init.info, voxel_size=config.voxel_size, source=f"bilayer finetune of {init.path.name}",
                   training={"recipe": recipe, "initial": init.info.source})


def _quiet_worker(_: int) -> None:
    """Data-loading workers use one thread each, so they do not fight the training process."""
    torch.set_num_threads(1)
    if not sys.stderr.isatty():
        logging.getLogger("bilayer").setLevel(logging.WARNING)
