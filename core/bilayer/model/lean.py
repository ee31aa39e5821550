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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bilayer.errors import ConfigError

__all__ = ["LeanUNet"]

_CL = torch.channels_last_3d
_DEFAULT_SLAB_BYTES = 48 * 1024**2  # temporaries of one slab; larger slabs barely speed convolution up

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
        return F.conv3d(x, self.weight, self.bias, self.stride, (0, self.padding, self.padding))


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
    """The eval-mode forward of a MembraneUNet (see the module docstring).

    Args:
        network: the network whose weights to use; it is not changed, unless ``share`` is set.
        dtype: the compute dtype of convolutions (float32, bfloat16 or float16).
        device: where the weights go and the forward runs.
        slab_bytes: rough bound on the temporaries of one z-slab; whole small levels are one slab.
        share: store the cast weights back into ``network`` (it then holds them in ``dtype``),
            so the weights are held once; for a network used only through this forward.

    Raises:
        ConfigError: the network is not a DynUNet of the form MemBrain-seg uses.
    """

    def __init__(self, network: nn.Module, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                 *, slab_bytes: int = _DEFAULT_SLAB_BYTES, share: bool = False) -> None:
        self.dtype, self.device, self.slab_bytes = dtype, torch.device(device), int(slab_bytes)
        self._share = share
        self.slope = _slope(network)
        self.encoder = [self._block(network.input_block)] + [self._block(m) for m in network.downsamples]
        self.bottleneck = self._block(network.bottleneck)
        self.decoder = [(self._conv(up.transp_conv.conv, transposed=True), self._block(up.conv_block))
                        for up in network.upsamples]
        self.output = self._conv(network.output_block.conv.conv)
        blocks = [*self.encoder, self.bottleneck, *(block for _, block in self.decoder)]
        self._min_rows = max(block.conv2.kernel for block in blocks)  # a slab must be deeper than a halo

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

    # ------------------------------------------------------------------ weights from the modules

    def _block(self, module: nn.Module) -> _Block:
        if not hasattr(module, "conv2") or not hasattr(module, "norm2"):
            raise ConfigError(f"LeanUNet cannot run a {type(module).__name__}; expected MONAI's UnetResBlock or "
                              "UnetBasicBlock")
        residual = type(module).__name__ == "UnetResBlock"
        has_projection = hasattr(module, "conv3")
        return _Block(self._conv(module.conv1.conv), self._norm(module.norm1), self._conv(module.conv2.conv),
                      self._norm(module.norm2), residual,
                      self._conv(module.conv3.conv) if has_projection else None,
                      self._norm(module.norm3) if has_projection else None)

    def _conv(self, conv: nn.Module, *, transposed: bool = False) -> _Conv:
        kernel, stride, padding = (set(getattr(conv, name)) for name in ("kernel_size", "stride", "padding"))
        if len(kernel) != 1 or len(stride) != 1 or len(padding) != 1 or getattr(conv, "groups", 1) != 1 \
                or set(getattr(conv, "dilation", (1,))) != {1} or (transposed and (kernel != stride or padding != {0})):
            raise ConfigError(f"LeanUNet needs isotropic, ungrouped convolutions; got {conv}")
        weight = self._cast(conv.weight, self.dtype)
        bias = None if conv.bias is None else self._cast(conv.bias, self.dtype)
        return _Conv(weight, bias, stride.pop(), padding.pop())

    def _norm(self, norm: nn.Module) -> _Norm:
        weight = None if norm.weight is None else self._cast(norm.weight, torch.float32)
        bias = None if norm.bias is None else self._cast(norm.bias, torch.float32)
        running = None
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            running = (norm.running_mean.to(self.device, torch.float32), norm.running_var.to(self.device, torch.float32))
        elif not isinstance(norm, nn.modules.instancenorm._InstanceNorm) or norm.track_running_stats:
            raise ConfigError(f"LeanUNet supports instance norm (without running stats) and batch norm; got {norm}")
        return _Norm(weight, bias, float(norm.eps), running)

    def _cast(self, param: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        fmt = _CL if param.dim() == 5 else torch.contiguous_format
        value = param.detach().to(self.device, dtype).contiguous(memory_format=fmt)
        if self._share and isinstance(param, nn.Parameter):
            param.data = value
        return value


def _slope(network: nn.Module) -> float:
    """The leaky-ReLU slope of the network's blocks (one value for all)."""
    slopes = {float(m.negative_slope) for m in network.modules() if isinstance(m, nn.LeakyReLU)}
    if len(slopes) != 1:
        raise ConfigError(f"LeanUNet needs one leaky-ReLU slope throughout the network, found {sorted(slopes)}")
    return slopes.pop()


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
