"""bilayer.device: cpu, cuda and auto resolve; bad names and absent GPUs are ConfigErrors; bfloat16 found."""

from __future__ import annotations

import pytest
import torch

from bilayer.device import cpu_has_native_bfloat16, resolve_device
from bilayer.errors import ConfigError


def test_cpu_and_explicit_devices_are_kept():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("has_gpu", [False, True])
def test_auto_takes_the_gpu_if_there_is_one(monkeypatch, has_gpu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_gpu)
    expected = torch.device("cuda" if has_gpu else "cpu")
    assert resolve_device(None) == resolve_device("auto") == expected
    if has_gpu:
        assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize("name", ["gpu9", "cuda:x", "", "tpu"])
def test_unknown_names_are_config_errors(name):
    with pytest.raises(ConfigError) as caught:
        resolve_device(name)
    assert str(caught.value) == f"device {name!r} is not a torch device; use cpu, cuda, cuda:N or auto"


def test_a_gpu_asked_for_on_a_machine_without_one_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match=f"^device '{name}' asked for, but this machine has no usable CUDA GPU"):
            resolve_device(name)


@pytest.mark.parametrize(("avx512_bf16", "amx", "native"), [(False, False, False), (True, False, True),
                                                             (False, True, True)])
def test_native_bfloat16_needs_avx512_bf16_or_amx(monkeypatch, avx512_bf16, amx, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert cpu_has_native_bfloat16() is native


def test_a_torch_without_the_feature_checks_has_no_native_bfloat16(monkeypatch):
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert cpu_has_native_bfloat16() is False
