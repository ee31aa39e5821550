"""Geometry: rotation, zoom, 90° rotations, axis swaps and flips, in one resampling.

MemBrain-seg moves a patch and its label through six MONAI steps (``RandRotated``, ``RandZoomd``,
three ``RandRotate90d``, an axis shuffle and ``RandAxisFlipd``), each resampling or copying the
160³ volumes. Here the same draws, with MemBrain-seg's probabilities, are composed into one 3×3
matrix, and each volume is resampled once on one shared grid: trilinear for the image, nearest
for the label (so labels keep exactly the values 0, 1 and 2). When no rotation or zoom was
drawn the matrix is a signed permutation and the volumes are permuted and flipped exactly,
without interpolation.

Where the moved patch samples outside the original, MemBrain-seg's rotation repeats the edge
voxels of image and label (``RandRotated``'s ``padding_mode="border"``); that is the default
here too (:attr:`Outside.BORDER`). :attr:`Outside.IGNORE` labels those voxels 2 (ignore)
instead. MemBrain-seg's zoom pads zoomed-out patches with zeros; with one resampling the
outside is treated alike for rotation and zoom.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bilayer.augment._common import (
    GEOMETRY_KEYS,
    RandImageTransform,
    RandMapped,
    Shape3,
    check_image,
)
from bilayer.augment.config import Outside
from bilayer.checks import choice, number, number_pair, probability
from bilayer.errors import ConfigError

__all__ = ["Outside", "RandSpatial", "RandSpatiald", "affine_resample", "rotation_matrix"]

_IGNORE_LABEL = 2.0  # the label contract (DESIGN.md §3): 0 background, 1 membrane, 2 ignore
_PLANES = ((0, 1), (0, 2), (1, 2))  # MemBrain-seg's RandRotate90d planes and axis swaps


def rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    """The 3×3 rotation by ``angles_deg`` = (about z, about y, about x), in degrees, in (z, y, x) coordinates.

    The three rotations are composed as Rz·Ry·Rx; each turns the plane of the other two axes.

    Raises:
        ConfigError: not three finite angles.
    """
    if len(angles_deg) != 3:
        raise ConfigError(f"angles_deg={tuple(angles_deg)!r} must be three angles (about z, y, x) in degrees")
    out = np.eye(3)
    for axis, angle in enumerate(number(f"angles_deg[{i}]", a) for i, a in enumerate(angles_deg)):
        a, b = (p for p in range(3) if p != axis)
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        turn = np.eye(3)
        turn[a, a], turn[a, b], turn[b, a], turn[b, b] = c, -s, s, c
        out = out @ turn
    return out


def affine_resample(x: torch.Tensor, matrix: np.ndarray | Sequence[Sequence[float]], *,
                    nearest: bool = False, fill: float | None = None) -> torch.Tensor:
    """``x`` resampled so that output voxel o takes the input value at c + M·(o − c).

    ``c`` is the patch centre and M the matrix, both in voxels, (z, y, x) order; the output has
    the input's shape. A signed permutation matrix (rotations by 90°, swaps and flips only) is
    applied exactly by permuting and flipping axes of equal length.

    Args:
        x: (C, Z, Y, X) tensor on any device; integer labels are allowed with ``nearest``.
        matrix: 3×3 map from output to input offsets; ``I / s`` zooms by ``s``.
        nearest: nearest-neighbour sampling (labels) instead of trilinear (images).
        fill: value outside the input; ``None`` repeats the edge voxels.

    Returns:
        A new tensor of ``x``'s shape, dtype and device.

    Raises:
        ConfigError: ``x`` is not (C, Z, Y, X) or ``matrix`` is not a finite 3×3 matrix.
    """
    check_image(x, floating=False)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise ConfigError(f"matrix {m.tolist()} must be a finite 3×3 matrix over (z, y, x)")
    exact = _signed_permutation(m, tuple(x.shape[1:]))
    if exact is not None:
        return _permute(x, *exact)
    return _sample(x, _grid(tuple(x.shape[1:]), m, x.device), nearest=nearest, fill=fill)


def _signed_permutation(m: np.ndarray, shape: Shape3) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(input axis read by each output axis, input axes read backwards), or None if ``m`` needs interpolation."""
    if not np.all(np.isin(m, (-1.0, 0.0, 1.0))) or np.any(np.abs(m).sum(0) != 1) or np.any(np.abs(m).sum(1) != 1):
        return None
    order = tuple(int(np.flatnonzero(m[:, a])[0]) for a in range(3))
    if any(shape[a] != shape[order[a]] for a in range(3)):
        return None
    return order, tuple(b for b in range(3) if m[b].sum() < 0)


def _permute(x: torch.Tensor, order: tuple[int, ...], flips: tuple[int, ...]) -> torch.Tensor:
    moved = x.flip([1 + b for b in flips]) if flips else x
    return moved.permute(0, *(1 + b for b in order)).clone(memory_format=torch.contiguous_format)


def _grid(shape: Shape3, m: np.ndarray, device: torch.device) -> torch.Tensor:
    """The (1, Z, Y, X, 3) ``grid_sample`` grid for matrix ``m`` (normalised coordinates, x first)."""
    half = np.asarray(shape, dtype=np.float64) / 2.0
    normalised = np.diag(1.0 / half) @ m @ np.diag(half)  # align_corners=False: u = (i - c) / (n / 2)
    theta = np.zeros((1, 3, 4))
    theta[0, :, :3] = normalised[::-1, ::-1]  # grid coordinates are ordered (x, y, z)
    theta_t = torch.as_tensor(theta, dtype=torch.float32, device=device)
    return F.affine_grid(theta_t, [1, 1, *shape], align_corners=False)


def _sample(x: torch.Tensor, grid: torch.Tensor, *, nearest: bool, fill: float | None) -> torch.Tensor:
    values = x if x.is_floating_point() else x.to(torch.float32)
    grid = grid.to(device=values.device, dtype=values.dtype)
    mode = "nearest" if nearest else "bilinear"  # "bilinear" is trilinear on 5-D input
    if fill is None:
        out = F.grid_sample(values[None], grid, mode=mode, padding_mode="border", align_corners=False)[0]
    else:
        out = F.grid_sample(values[None] - fill, grid, mode=mode, padding_mode="zeros", align_corners=False)[0]
        out += fill
    return out if out.dtype == x.dtype else out.round().to(x.dtype)


def _rot90(a: int, b: int, k: int) -> np.ndarray:
    c, s = ((1, 0), (0, 1), (-1, 0), (0, -1))[k % 4]
    turn = np.eye(3)
    turn[a, a], turn[a, b], turn[b, a], turn[b, b] = c, -s, s, c
    return turn


def _swap(a: int, b: int) -> np.ndarray:
    return np.eye(3)[[b if i == a else a if i == b else i for i in range(3)]]


class RandSpatial(RandImageTransform):
    """Random rotation, zoom, 90° rotations, axis swaps and a flip, drawn as MemBrain-seg draws them.

    In order: a rotation about each axis by U(−max, max) degrees (``rotation_prob``); one isotropic
    zoom factor from ``zoom_range`` (``zoom_prob``; > 1 magnifies); for each plane (z, y), (z, x),
    (y, x) a rotation by 90°, 180° or 270° (``rot90_prob`` each); three times a swap of two axes
    chosen uniformly (``axis_swap_prob`` each); a flip of one axis chosen uniformly
    (``flip_prob``). Turns and swaps between axes of unequal length are skipped, so the shape
    never changes. :attr:`matrix` holds the last draw for :func:`affine_resample`.

    Args:
        prob: probability of drawing any geometry at all.
        rotation_prob, zoom_prob, rot90_prob, axis_swap_prob, flip_prob: per-step probabilities.
        max_rotation_deg: largest rotation about each axis, degrees (MemBrain-seg: 30).
        zoom_range: (smallest, largest) zoom factor (MemBrain-seg: 0.7, 1.43).
        nearest: nearest-neighbour sampling, for labels.
        fill: value outside the input; ``None`` repeats the edge voxels.

    Raises:
        ConfigError: a probability outside [0, 1], a negative angle or a zoom factor ≤ 0.
    """

    _needs_float = False

    def __init__(self, prob: float = 1.0, *, rotation_prob: float = 0.75, max_rotation_deg: float = 30.0,
                 zoom_prob: float = 0.3, zoom_range: tuple[float, float] = (0.7, 1.43), rot90_prob: float = 0.7,
                 axis_swap_prob: float = 0.5, flip_prob: float = 0.5, nearest: bool = False,
                 fill: float | None = None) -> None:
        super().__init__(prob)
        self.rotation_prob = probability("rotation_prob", rotation_prob)
        self.max_rotation_deg = number("max_rotation_deg", max_rotation_deg, 0.0, 180.0)
        self.zoom_prob = probability("zoom_prob", zoom_prob)
        self.zoom_range = number_pair("zoom_range", zoom_range, 0.0, math.inf, open_low=True)
        self.rot90_prob = probability("rot90_prob", rot90_prob)
        self.axis_swap_prob = probability("axis_swap_prob", axis_swap_prob)
        self.flip_prob = probability("flip_prob", flip_prob)
        self.nearest = bool(nearest)
        self.fill = None if fill is None else number("fill", fill)
        self.matrix = np.eye(3)

    def _draw(self, shape: Shape3) -> None:
        m = np.eye(3)
        if self.R.rand() < self.rotation_prob:
            m = m @ rotation_matrix(self.R.uniform(-self.max_rotation_deg, self.max_rotation_deg, size=3))
        if self.R.rand() < self.zoom_prob:
            m = m / self.R.uniform(*self.zoom_range)
        for a, b in _PLANES:
            if self.R.rand() < self.rot90_prob:
                k = self.R.randint(1, 4)
                if shape[a] == shape[b]:
                    m = m @ _rot90(a, b, k)
        for _ in range(3):
            if self.R.rand() < self.axis_swap_prob:
                a, b = _PLANES[self.R.randint(len(_PLANES))]
                if shape[a] == shape[b]:
                    m = m @ _swap(a, b)
        if self.R.rand() < self.flip_prob:
            signs = np.ones(3)
            signs[self.R.randint(3)] = -1.0
            m = m @ np.diag(signs)
        self.matrix = m

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return affine_resample(img, self.matrix, nearest=self.nearest, fill=self.fill)


class RandSpatiald(RandMapped):
    """Dict variant of :class:`RandSpatial`: one draw moves image and label together.

    Keys in ``label_keys`` are sampled nearest-neighbour, the others trilinearly; all share one
    sampling grid. ``outside`` decides what labels hold where the patch samples outside itself.

    Args:
        keys: keys to move, all of one spatial shape (default image and label).
        label_keys: the keys among ``keys`` that hold labels.
        prob: probability of drawing any geometry at all.
        rotation_prob, max_rotation_deg, zoom_prob, zoom_range, rot90_prob, axis_swap_prob, flip_prob:
            as for :class:`RandSpatial`.
        outside: :attr:`Outside.BORDER` (MemBrain-seg) or :attr:`Outside.IGNORE`.

    Raises:
        ConfigError: bad ranges (see :class:`RandSpatial`) or an unknown ``outside``.
    """

    def __init__(self, keys: Sequence[Hashable] = GEOMETRY_KEYS, label_keys: Sequence[Hashable] = ("label",),
                 prob: float = 1.0, *, rotation_prob: float = 0.75, max_rotation_deg: float = 30.0,
                 zoom_prob: float = 0.3, zoom_range: tuple[float, float] = (0.7, 1.43), rot90_prob: float = 0.7,
                 axis_swap_prob: float = 0.5, flip_prob: float = 0.5, outside: Outside | str = Outside.BORDER) -> None:
        super().__init__(keys, RandSpatial(prob, rotation_prob=rotation_prob, max_rotation_deg=max_rotation_deg,
                                           zoom_prob=zoom_prob, zoom_range=zoom_range, rot90_prob=rot90_prob,
                                           axis_swap_prob=axis_swap_prob, flip_prob=flip_prob))
        self.label_keys = frozenset(label_keys)
        self.outside = choice("outside", outside, Outside)

    def __call__(self, data: Mapping[Hashable, torch.Tensor], randomize: bool = True) -> dict:
        """A new dict with every key in ``keys`` moved by the same draw."""
        d = dict(data)
        keys = list(self.key_iterator(d))
        for key in keys:
            check_image(d[key], floating=False)
        shape = tuple(d[keys[0]].shape[1:])
        if any(tuple(d[key].shape[1:]) != shape for key in keys):
            shapes = {key: tuple(d[key].shape) for key in keys}
            raise ConfigError(f"geometric augmentation needs one spatial shape for all keys; got {shapes}")
        if randomize:
            self.randomize(d[keys[0]])
        matrix = self.transform.matrix
        if not self._do_transform or np.array_equal(matrix, np.eye(3)):
            return d
        exact = _signed_permutation(matrix, shape)
        grid = None if exact is not None else _grid(shape, matrix, d[keys[0]].device)
        for key in keys:
            if exact is not None:
                d[key] = _permute(d[key], *exact)
                continue
            label = key in self.label_keys
            fill = _IGNORE_LABEL if label and self.outside is Outside.IGNORE else None
            d[key] = _sample(d[key], grid, nearest=label, fill=fill)
        return d
