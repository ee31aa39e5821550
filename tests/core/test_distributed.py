"""bilayer.train.distributed: without torchrun a cluster of one; nonsense torchrun variables refused."""

from __future__ import annotations

import pytest
import torch

from bilayer.errors import ConfigError
from bilayer.train.distributed import Cluster, join_cluster


def test_a_single_process_is_rank_zero_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cluster = join_cluster("cpu")
    assert cluster == Cluster(rank=0, world_size=1, device=torch.device("cpu"))
    assert cluster.is_main and not cluster.distributed
    values = torch.tensor([1.5, 2.0], dtype=torch.float32)
    total = cluster.sum(values)
    assert total.dtype == torch.float64 and total.tolist() == [1.5, 2.0]
    cluster.barrier()
    cluster.leave()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert join_cluster("cpu").world_size == 1


@pytest.mark.parametrize("rank", [None, "first"])
def test_a_world_without_a_usable_rank_says_to_use_torchrun(monkeypatch, rank):
    monkeypatch.setenv("WORLD_SIZE", "2")
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    with pytest.raises(ConfigError, match="^WORLD_SIZE=2 but RANK is missing or not a number; start with torchrun$"):
        join_cluster("cpu")


def test_a_bad_device_is_refused_before_joining(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="'gpu0' is not a torch device"):
        join_cluster("gpu0")
