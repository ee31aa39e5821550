"""Data-parallel training across processes (PyTorch DDP), started by ``torchrun``.

``torchrun --nproc-per-node N -m bilayer train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; each process then trains on its own share of every epoch's patches, gradients
are averaged by DDP, and only rank 0 writes files. GPUs use NCCL, CPUs gloo (how it is tested).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bilayer.device import resolve_device
from bilayer.errors import ConfigError

__all__ = ["Cluster", "join_cluster"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cluster:
    """This process's place among the training processes.

    Attributes:
        rank: index of this process (0 writes files).
        world_size: number of processes (1 without torchrun).
        device: where this process trains.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over all processes (a float64 CPU tensor)."""
        values = values.to(torch.float64)
        if not self.distributed:
            return values
        on_device = values.to(self.device) if dist.get_backend() == "nccl" else values
        dist.all_reduce(on_device)
        return on_device.cpu()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def leave(self) -> None:
        """End the process group (no-op for a single process)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def join_cluster(device: str | torch.device | None = None) -> Cluster:
    """This process's :class:`Cluster`, joining the process group when started by torchrun.

    Args:
        device: ``None``/``"auto"``, ``"cpu"`` or ``"cuda"``; under torchrun each process takes
            the GPU of its ``LOCAL_RANK``.

    Raises:
        ConfigError: a bad device, or torchrun variables that make no sense.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Cluster(device=resolve_device(device))
    try:
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"WORLD_SIZE={world} but RANK is missing or not a number; start with torchrun") from e
    target = resolve_device(device)
    if target.type == "cuda":
        target = torch.device("cuda", local)
        torch.cuda.set_device(target)
    else:  # share the cores between the processes of this node
        per_node = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo", rank=rank, world_size=world)
    log.info("process %d of %d on %s", rank, world, target)
    return Cluster(rank, world, target)
