"""A memory-lean, faster inference forward pass of the MemBrain-seg U-Net.

:class:`LeanUNet` computes what a :class:`~bilayer.model.network.MembraneUNet` computes in eval
mode (the full-resolution logits), from the same weights, but organised for inference:

* **Channels-last feature maps, weights cast once.** oneDNN (CPU) and cuDNN convolve
  channels-last bfloat16 maps without reordering them; PyTorch's own instance norm would copy
  such maps back to the standard layout, so normalisation is done here instead.
* **Exact instance normalisation from slabs.** Every level is computed in z-slabs. A slab's
  convolution reads its halo of input rows; per-(sample, channel) means and variances are
  merged over the slabs (Chan et al.) in float64, then applied with the activation as the
  rows are next read, so the statistics are those of the whole feature map, as MONAI's.
* **Two feature maps per level.** A block's second convolution writes over its input one slab
  behind, the decoder's up-sampling and concatenation are formed slab by slab, and the
  residual branch is recomputed rather than stored. At 160³ a full-resolution level holds the
  skip and the block's output (2 × 262 MB in bfloat16) instead of the six maps of the
  standard forward, which is what bounds the memory of a window.

Normalisation and activation are computed in float32 and rounded once to the compute dtype.

Length: over 300 lines because the blocks, the slab-wise instance norm and the order in which
feature maps are freed form one memory plan; split, they would hide it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bilayer.model.config import NetworkConfig, Norm
from bilayer.model.layout import block_names, check_state_dict

__all__ = ["LeanUNet"]

_CL = torch.channels_last_3d
_DEFAULT_SLAB_BYTES = 48 * 1024**2  # temporaries of one slab; larger slabs barely speed convolution up
_NORM_EPS = 1e-5  # MONAI's (and PyTorch's) instance and batch norm epsilon

#: Rows ``[a, b)`` of a (B, C, Z, Y, X) feature map along z, zero outside ``[0, Z)``.
Rows = Callable[[int, int], torch.Tensor]


@dataclass(frozen=True)
class _Conv:
    weight: torch.Tensor  # compute dtype, channels-last
    bias: torch.Tensor | None
    stride: int
    padding: int

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1])

    def out_depth(self, depth: int) -> int:
        return (depth + 2 * self.padding - self.kernel) // self.stride + 1

    def rows(self, src: Rows, o0: int, o1: int) -> torch.Tensor:
        """Output rows ``[o0, o1)``, reading only the input rows they depend on."""
        a = o0 * self.stride - self.padding
        x = src(a, (o1 - 1) * self.stride - self.padding + self.kernel)
        if self.weight.shape[1] == 1:
            return self._single_channel(x)
        return F.conv3d(x, self.weight, self.bias, self.stride, (0, self.padding, self.padding))

    def _single_channel(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of a one-channel map as a matrix product, channels-last out.

        oneDNN would convolve a one-channel input in the standard layout and copy the output
        over: for the network's first block that copying costs more than the arithmetic.
        """
        k, s, p = self.kernel, self.stride, self.padding
        if p:
            x = F.pad(x, (p, p, p, p))
        patches = x[:, 0].unfold(1, k, s).unfold(2, k, s).unfold(3, k, s)  # (B, z, y, x, k, k, k) view
        out = patches.reshape(*patches.shape[:4], k**3) @ self.weight.reshape(self.weight.shape[0], k**3).T
        if self.bias is not None:
            out += self.bias
        return out.permute(0, 4, 1, 2, 3)  # (B, C, z, y, x), channels-last in memory


@dataclass(frozen=True)
class _Norm:
    weight: torch.Tensor | None  # float32 (C,)
    bias: torch.Tensor | None
    eps: float
    running: tuple[torch.Tensor, torch.Tensor] | None  # batch norm in eval: (mean, var)

    def apply(self, rows: torch.Tensor, moments: _Moments) -> torch.Tensor:
        """``rows`` normalised with the whole map's statistics, in the compute dtype.

        PyTorch's fused batch-norm kernel in eval mode does it per sample: float32 arithmetic,
        one rounding, channels-last kept, as instance norm itself rounds under autocast.
        """
        if self.running is not None:
            return F.batch_norm(rows, *self.running, self.weight, self.bias, False, 0.0, self.eps)
        if rows.shape[0] == 1:
            return F.batch_norm(rows, moments.mean[0], moments.variance[0], self.weight, self.bias, False, 0.0,
                                self.eps)
        out = torch.empty_like(rows)
        for b in range(rows.shape[0]):
            out[b:b + 1] = F.batch_norm(rows[b:b + 1], moments.mean[b], moments.variance[b], self.weight, self.bias,
                                        False, 0.0, self.eps)
        return out


@dataclass(frozen=True)
class _Block:
    conv1: _Conv
    norm1: _Norm
    conv2: _Conv
    norm2: _Norm
    residual: bool
    conv3: _Conv | None = None  # residual projection, where channels or stride change
    norm3: _Norm | None = None


class _Moments:
    """Per-(sample, channel) mean and variance of a feature map, merged over its z-slabs.

    Each slab's moments come from PyTorch's fused batch-norm statistics kernel (float32
    accumulation, channels-last aware); slabs are merged in float64 (Chan et al.).
    """

    def __init__(self) -> None:
        self.count, self._mean, self._m2 = 0, torch.zeros(()), torch.zeros(())

    def add(self, y: torch.Tensor) -> None:
        n = y[0, 0].numel()
        ones = torch.ones(y.shape[1], dtype=torch.float32, device=y.device)  # float32 weights: float32 statistics
        stats = [torch.native_batch_norm(y[b:b + 1], ones, torch.zeros_like(ones), None, None, True, 0.0, 0.0)[1:]
                 for b in range(y.shape[0])]
        mean = torch.stack([m for m, _ in stats]).double()
        invstd = torch.stack([s for _, s in stats]).double()
        m2 = torch.where(invstd > 0, invstd.clamp(min=1e-30) ** -2, 0.0) * n  # a constant channel: invstd 0 or inf
        if self.count == 0:
            self.count, self._mean, self._m2 = n, mean, m2
            return
        total, delta = self.count + n, mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def mean(self) -> torch.Tensor:
        """(B, C) float32 means."""
        return self._mean.float()

    @property
    def variance(self) -> torch.Tensor:
        """(B, C) float32 biased variances."""
        return (self._m2 / self.count).float()


class LeanUNet:
    """The eval-mode forward of the MemBrain-seg U-Net (see the module docstring).

    Built from an architecture and its weights (a state dict with MONAI's names, see
    :mod:`bilayer.model.layout`), so inference needs neither MONAI nor the module; the weights
    are copied to ``device`` in the compute dtype (normalisation parameters stay float32), so
    nothing keeps a memory-mapped checkpoint alive.

    Args:
        config: the architecture.
        state_dict: its weights (checked against ``config``).
        dtype: the compute dtype of convolutions (float32, bfloat16 or float16).
        device: where the weights go and the forward runs.
        slab_bytes: rough bound on the temporaries of one z-slab; whole small levels are one slab.

    Raises:
        ConfigError: the weights do not fit ``config``.
    """

    def __init__(self, config: NetworkConfig, state_dict: Mapping[str, torch.Tensor],
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", *,
                 slab_bytes: int = _DEFAULT_SLAB_BYTES) -> None:
        check_state_dict(config, state_dict)
        self.config, self.dtype, self.device, self.slab_bytes = config, dtype, torch.device(device), int(slab_bytes)
        self._state, self.slope, self._eps = state_dict, config.negative_slope, _NORM_EPS
        k, f, strides = config.kernel_size, config.filters, config.strides
        paths = ["input_block", *(f"downsamples.{i}" for i in range(len(f) - 2))]
        inputs = [config.in_channels, *f[:-1]]
        self.encoder = [self._block(p, inputs[i], f[i], strides[i], config.residual) for i, p in enumerate(paths)]
        self.bottleneck = self._block("bottleneck", f[-2], f[-1], strides[-1], config.residual)
        ups = [f[len(f) - 2 - i] for i in range(len(f) - 1)]  # output channels of each up level, deepest first
        self.decoder = [(self._conv(f"upsamples.{i}.transp_conv.conv", 0, 0, transposed=True),
                         self._block(f"upsamples.{i}.conv_block", 2 * c, c, 1, False)) for i, c in enumerate(ups)]
        self.output = self._conv("output_block.conv.conv", 1, 0)
        self._min_rows = k  # a slab must be deeper than a convolution's halo
        del self._state

    @classmethod
    def from_network(cls, network: nn.Module, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                     **options: int) -> LeanUNet:
        """The forward pass of a :class:`~bilayer.model.network.MembraneUNet` (left unchanged)."""
        return cls(network.config, network.state_dict(), dtype, device, **options)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, out_channels, z, y, x) in float32 for an input batch (B, C, z, y, x)."""
        feature = x.to(self.device, self.dtype).contiguous(memory_format=_CL)
        skips = []
        for block in self.encoder:
            feature = self._run_block(_tensor_rows(feature), feature.shape, block)
            skips.append(feature)
        feature = self._run_block(_tensor_rows(skips[-1]), skips[-1].shape, self.bottleneck)
        for transposed, block in self.decoder:
            skip = skips.pop()
            src = _up_cat_rows(feature, transposed, skip)
            shape = (skip.shape[0], transposed.weight.shape[1] + skip.shape[1], *skip.shape[2:])
            del skip
            feature = self._run_block(src, shape, block)
            del src
        logits = torch.empty((x.shape[0], self.output.weight.shape[0], *feature.shape[2:]), dtype=torch.float32,
                             device=self.device)
        rows = _tensor_rows(feature)
        for o0, o1 in self._slabs(feature.shape, feature.shape[1]):
            logits[:, :, o0:o1] = self.output.rows(rows, o0, o1)
        return logits

    # ------------------------------------------------------------------ one block, slab by slab

    def _run_block(self, src: Rows, in_shape: tuple[int, ...], block: _Block) -> torch.Tensor:
        c1 = block.conv1
        batch, depth = in_shape[0], c1.out_depth(in_shape[2])
        shape = (batch, c1.weight.shape[0], depth, *(c1.out_depth(n) for n in in_shape[3:]))
        out = torch.empty(shape, dtype=self.dtype, device=self.device, memory_format=_CL)
        slabs = list(self._slabs(shape, in_shape[1] * c1.stride + 2 * shape[1]))
        m1, m3 = _Moments(), _Moments()
        for o0, o1 in slabs:
            y = c1.rows(src, o0, o1)
            m1.add(y)
            out[:, :, o0:o1] = y
            if block.conv3 is not None and block.norm3.running is None:  # type: ignore[union-attr]
                m3.add(block.conv3.rows(src, o0, o1))
        activated = _tensor_rows(out, lambda t: self._activate(block.norm1.apply(t, m1)))
        m2 = _Moments()
        pending: tuple[int, int, torch.Tensor] | None = None
        for o0, o1 in slabs:  # conv2 writes over its input one slab behind what it reads
            y = block.conv2.rows(activated, o0, o1)
            m2.add(y)
            if pending is not None:
                out[:, :, pending[0]:pending[1]] = pending[2]
            pending = (o0, o1, y)
        if pending is not None:
            out[:, :, pending[0]:pending[1]] = pending[2]
        for o0, o1 in slabs:
            rows = block.norm2.apply(out[:, :, o0:o1], m2)
            if block.residual and block.conv3 is not None:
                rows += block.norm3.apply(block.conv3.rows(src, o0, o1), m3)  # type: ignore[union-attr]
            elif block.residual:
                rows += src(o0, o1)
            out[:, :, o0:o1] = self._activate(rows)
        return out

    def _activate(self, rows: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu_(rows, self.slope)

    def _slabs(self, shape: tuple[int, ...], channels: int) -> Iterator[tuple[int, int]]:
        """z-ranges of the output rows, each slab's temporaries about ``slab_bytes``."""
        row_bytes = max(1, shape[0] * shape[3] * shape[4] * channels * 4)
        step = max(self._min_rows, self.slab_bytes // row_bytes)
        for o0 in range(0, shape[2], step):
            yield o0, min(o0 + step, shape[2])

    # ------------------------------------------------------------------ weights by name

    def _block(self, path: str, cin: int, cout: int, stride: int, residual: bool) -> _Block:
        names = block_names(path, residual, cin != cout or stride != 1)
        k = self.config.kernel_size
        conv3 = self._conv(names[4], stride, 0) if names[4] else None
        return _Block(self._conv(names[0], stride, _padding(k, stride)), self._norm(names[1]),
                      self._conv(names[2], 1, _padding(k, 1)), self._norm(names[3]), residual,
                      conv3, self._norm(names[5]) if names[5] else None)

    def _conv(self, name: str, stride: int, padding: int, *, transposed: bool = False) -> _Conv:
        weight = self._tensor(f"{name}.weight", self.dtype)
        bias = self._tensor(f"{name}.bias", self.dtype) if f"{name}.bias" in self._state else None
        if transposed:
            stride = int(weight.shape[-1])  # kernel = stride, no padding: each input voxel makes a cube
        return _Conv(weight, bias, stride, padding)

    def _norm(self, name: str) -> _Norm:
        running = None
        if self.config.norm is Norm.BATCH:
            running = (self._tensor(f"{name}.running_mean", torch.float32),
                       self._tensor(f"{name}.running_var", torch.float32))
        return _Norm(self._tensor(f"{name}.weight", torch.float32), self._tensor(f"{name}.bias", torch.float32),
                     self._eps, running)

    def _tensor(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        value = self._state[name].detach()
        fmt = _CL if value.dim() == 5 else torch.contiguous_format
        return value.to(self.device, dtype, copy=True).contiguous(memory_format=fmt)


def _padding(kernel: int, stride: int) -> int:
    """MONAI's convolution padding for a kernel and stride."""
    return max((kernel - stride + 1) // 2, 0)


def _tensor_rows(x: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Rows:
    """Rows of ``x`` (optionally transformed), zero outside its depth."""
    depth = x.shape[2]

    def rows(a: int, b: int) -> torch.Tensor:
        lo, hi = max(a, 0), min(b, depth)
        part = x[:, :, lo:hi]
        if transform is not None:
            part = transform(part)
        return _pad_rows(part, lo - a, b - hi)

    return rows


def _up_cat_rows(lower: torch.Tensor, transposed: _Conv, skip: torch.Tensor) -> Rows:
    """Rows of ``cat(transposed_conv(lower), skip)`` along channels, formed only where asked."""
    depth, s = skip.shape[2], transposed.stride

    def rows(a: int, b: int) -> torch.Tensor:
        lo, hi = max(a, 0), min(b, depth)
        i0 = lo // s
        up = F.conv_transpose3d(lower[:, :, i0:-(-hi // s)], transposed.weight, transposed.bias, stride=s)
        part = torch.cat((up[:, :, lo - i0 * s:hi - i0 * s], skip[:, :, lo:hi]), dim=1)
        return _pad_rows(part.contiguous(memory_format=_CL), lo - a, b - hi)

    return rows


def _pad_rows(part: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """``part`` with ``before`` and ``after`` zero rows along z (itself when both are 0)."""
    if before == 0 and after == 0:
        return part
    shape = (part.shape[0], part.shape[1], part.shape[2] + before + after, *part.shape[3:])
    out = torch.empty(shape, dtype=part.dtype, device=part.device, memory_format=_CL).zero_()
    out[:, :, before:before + part.shape[2]] = part
    return out
