"""The training augmentation: a frozen :class:`AugmentConfig` and the seeded pipeline built from it.

The defaults are MemBrain-seg's (``segmentation/dataloading/memseg_augmentation.py``,
``get_training_transforms``, unchanged from v0.0.5 to its main branch after v0.0.9). The Fourier
parts come from its ``FourierAugmentations`` branch (``fourier_augmentations.py``: p 0.5 each,
wedge of ±45°, local blending p 0.5), where ``--use-fourier-aug`` / ``--use-mw-aug`` are off by
default; here they are on, as in MemBrain v2, with the walk step σ of 0.2 that MemBrain v2
describes (the branch draws it from 0.1-4). That branch also widens rotation to ±40° and lowers
the median's p to 0.2; the main branch's ±30° and 0.25 are kept. The config is plain data, saved
as JSON next to the weights; :func:`build_augmentation` is the only place that turns it into
transforms, and every pipeline is seeded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from monai.transforms import Compose, OneOf, Randomizable

from bilayer.augment._common import GEOMETRY_KEYS, IMAGE_KEYS, check_prob, check_range, check_scalar
from bilayer.augment.filters import RandGaussianBlurd, RandLowResolutiond, RandMedianFilterd, RandSharpend
from bilayer.augment.fourier import RandFourierd
from bilayer.augment.intensity import RandBrightnessd, RandContrastd, RandGammaContrastd, RandGaussianNoised
from bilayer.augment.local import RandBrightnessGradientd, RandEraseCuboidsd, RandLocalGammad
from bilayer.augment.spatial import Outside, RandSpatiald
from bilayer.errors import ConfigError

__all__ = ["AugmentConfig", "build_augmentation", "reseed", "worker_seed"]

_SEED_LIMIT = 2**32  # MONAI's set_random_state takes seeds below this
_INF = math.inf


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the training augmentation; lengths in voxels, angles in degrees.

    A ``*_prob`` is the chance that a step runs for a sample; a pair is a (low, high) range drawn
    uniformly. Median filter and Gaussian blur exclude each other (one of the two is picked with
    odds ½, then applied with its own probability), as in MemBrain-seg.

    Attributes:
        rotation_prob, max_rotation_deg: rotation about each axis by up to ± this angle.
        zoom_prob, zoom_range: isotropic zoom factor (> 1 magnifies).
        rot90_prob: chance of a 90°/180°/270° turn in each of the three axis planes.
        axis_swap_prob: chance of each of three random axis swaps.
        flip_prob: chance of flipping one random axis.
        outside: what labels hold where the moved patch samples outside itself.
        amplitude_prob, amplitude_step_sigma, amplitude_smooth_sigma, amplitude_offset: Fourier
            amplitude augmentation (random walk step σ, smoothing σ in walk points, offset).
        missing_wedge_prob, missing_wedge_tilt_deg: missing wedge of a tilt series over ± this angle.
        fourier_local_prob: chance of applying the Fourier change through a random blob only.
        median_prob, median_size, median_separable: median filter window edge; separable takes
            1-D medians along z, y, x (much faster, not the cubic median).
        blur_prob, blur_sigma: Gaussian blur σ per axis.
        noise_prob, noise_max_std: Gaussian noise with σ drawn from U(0, max).
        brightness_prob, brightness_sigma: additive offset drawn from N(0, σ²).
        contrast_prob, contrast_range: stretch about the mean (half the time clipped to the old range).
        low_res_prob, low_res_scale: shrink (nearest) and regrow (trilinear) by this factor.
        gamma_prob, gamma_range: gamma curve, then a gamma curve on the inverted image.
        erase_prob, erase_size, erase_max_cuboids: cuboids with edges this fraction of the axis,
            filled with the mean.
        gradient_prob, gradient_strength: additive Gaussian blob peaking at ± this value.
        local_gamma_prob, local_gamma_low, local_gamma_high: blob-weighted gamma, γ from either range.
        sharpen_prob, sharpen_strength: Laplacian sharpening strength.
    """

    rotation_prob: float = 0.75
    max_rotation_deg: float = 30.0
    zoom_prob: float = 0.3
    zoom_range: tuple[float, float] = (0.7, 1.43)
    rot90_prob: float = 0.7
    axis_swap_prob: float = 0.5
    flip_prob: float = 0.5
    outside: Outside = Outside.BORDER
    amplitude_prob: float = 0.5
    amplitude_step_sigma: tuple[float, float] = (0.2, 0.2)
    amplitude_smooth_sigma: tuple[float, float] = (2.0, 4.0)
    amplitude_offset: tuple[float, float] = (2.0, 10.0)
    missing_wedge_prob: float = 0.5
    missing_wedge_tilt_deg: tuple[float, float] = (45.0, 45.0)
    fourier_local_prob: float = 0.5
    median_prob: float = 0.25
    median_size: tuple[int, int] = (2, 7)
    median_separable: bool = False
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_prob: float = 0.4
    noise_max_std: float = 0.7
    brightness_prob: float = 0.3
    brightness_sigma: float = 0.5
    contrast_prob: float = 0.3
    contrast_range: tuple[float, float] = (0.5, 2.0)
    low_res_prob: float = 0.35
    low_res_scale: tuple[float, float] = (0.25, 1.0)
    gamma_prob: float = 0.25
    gamma_range: tuple[float, float] = (0.5, 4.5)
    erase_prob: float = 0.4
    erase_size: tuple[float, float] = (0.1, 1 / 3)
    erase_max_cuboids: int = 5
    gradient_prob: float = 0.3
    gradient_strength: tuple[float, float] = (1.0, 5.0)
    local_gamma_prob: float = 0.3
    local_gamma_low: tuple[float, float] = (0.01, 0.8)
    local_gamma_high: tuple[float, float] = (1.5, 4.0)
    sharpen_prob: float = 0.2
    sharpen_strength: tuple[float, float] = (0.1, 1.0)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            check = check_prob if field.name.endswith("_prob") else _CHECKS[field.name]
            object.__setattr__(self, field.name, check(field.name, value))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: ranges as lists, ``outside`` as its name."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Outside):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        """The config from :meth:`to_dict`'s output; missing entries take their defaults.

        Raises:
            ConfigError: an unknown entry (listing the known ones) or a bad value (naming it).
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown augmentation settings {unknown}; known ones are {sorted(known)}")
        return cls(**dict(data))


def _outside(name: str, value: Any) -> Outside:
    try:
        return Outside(value)
    except ValueError as e:
        raise ConfigError(f"{name}={value!r} is not one of {[o.value for o in Outside]}") from e


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name}={value!r} must be true or false")
    return bool(value)


def _positive_range(name: str, value: Any) -> tuple[float, float]:
    return check_range(name, value, 0.0, open_low=True)


def _non_negative_range(name: str, value: Any) -> tuple[float, float]:
    return check_range(name, value, 0.0)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "max_rotation_deg": lambda n, v: check_scalar(n, v, 0.0, 180.0),
    "zoom_range": _positive_range,
    "outside": _outside,
    "amplitude_step_sigma": _non_negative_range,
    "amplitude_smooth_sigma": _non_negative_range,
    "amplitude_offset": _non_negative_range,
    "missing_wedge_tilt_deg": lambda n, v: check_range(n, v, 0.0, 90.0, open_low=True, open_high=True),
    "median_size": lambda n, v: check_range(n, v, 1, integer=True),
    "median_separable": _flag,
    "blur_sigma": _non_negative_range,
    "noise_max_std": lambda n, v: check_scalar(n, v, 0.0),
    "brightness_sigma": lambda n, v: check_scalar(n, v, 0.0),
    "contrast_range": _positive_range,
    "low_res_scale": lambda n, v: check_range(n, v, 0.0, 1.0, open_low=True),
    "gamma_range": _positive_range,
    "erase_size": lambda n, v: check_range(n, v, 0.0, 1.0, open_low=True),
    "erase_max_cuboids": lambda n, v: check_scalar(n, v, 1, _INF, integer=True),
    "gradient_strength": _non_negative_range,
    "local_gamma_low": _positive_range,
    "local_gamma_high": _positive_range,
    "sharpen_strength": _non_negative_range,
}


def build_augmentation(config: AugmentConfig = AugmentConfig(), seed: int = 0) -> Compose:
    """The seeded training augmentation for samples ``{"image": (C, Z, Y, X), "label": (C, Z, Y, X)}``.

    Steps, in MemBrain-seg's order: geometry (image and label, one resampling, flips included),
    Fourier amplitude and missing wedge, median filter or Gaussian blur, noise, brightness,
    contrast, low resolution, gamma, erasing, brightness gradient, local gamma, sharpening; all
    but the geometry touch the image only. MemBrain-seg flips after the gamma step; as the later
    steps are flip-symmetric in distribution, flipping with the geometry changes nothing but cost.

    Args:
        config: probabilities and ranges.
        seed: seeds every step (0 to 2³² − 1); see :func:`reseed` for data-loader workers.

    Returns:
        A MONAI ``Compose`` mapping a sample dict to a new dict; the input is never modified.

    Raises:
        ConfigError: a bad seed.
    """
    c = config
    steps = [
        RandSpatiald(GEOMETRY_KEYS, ("label",), rotation_prob=c.rotation_prob, max_rotation_deg=c.max_rotation_deg,
                     zoom_prob=c.zoom_prob, zoom_range=c.zoom_range, rot90_prob=c.rot90_prob,
                     axis_swap_prob=c.axis_swap_prob, flip_prob=c.flip_prob, outside=c.outside),
        RandFourierd(IMAGE_KEYS, amplitude_prob=c.amplitude_prob, step_sigma=c.amplitude_step_sigma,
                     smooth_sigma=c.amplitude_smooth_sigma, offset=c.amplitude_offset,
                     missing_wedge_prob=c.missing_wedge_prob, max_tilt_deg=c.missing_wedge_tilt_deg,
                     local_prob=c.fourier_local_prob),
        OneOf([RandMedianFilterd(IMAGE_KEYS, c.median_prob, c.median_size, separable=c.median_separable),
               RandGaussianBlurd(IMAGE_KEYS, c.blur_prob, c.blur_sigma)]),
        RandGaussianNoised(IMAGE_KEYS, c.noise_prob, c.noise_max_std),
        RandBrightnessd(IMAGE_KEYS, c.brightness_prob, c.brightness_sigma),
        RandContrastd(IMAGE_KEYS, c.contrast_prob, c.contrast_range),
        RandLowResolutiond(IMAGE_KEYS, c.low_res_prob, c.low_res_scale),
        RandGammaContrastd(IMAGE_KEYS, c.gamma_prob, c.gamma_range),
        RandEraseCuboidsd(IMAGE_KEYS, c.erase_prob, c.erase_size, c.erase_max_cuboids),
        RandBrightnessGradientd(IMAGE_KEYS, c.gradient_prob, c.gradient_strength),
        RandLocalGammad(IMAGE_KEYS, c.local_gamma_prob, c.local_gamma_low, c.local_gamma_high),
        RandSharpend(IMAGE_KEYS, c.sharpen_prob, c.sharpen_strength),
    ]
    return reseed(Compose(steps), seed)


def worker_seed(seed: int, worker_id: int = 0, epoch: int = 0) -> int:
    """A seed for one data-loader worker in one epoch, independent of every other (worker, epoch).

    Mixed with numpy's ``SeedSequence``, so neighbouring ids give unrelated streams.

    Raises:
        ConfigError: a negative or non-integer argument.
    """
    parts = [int(check_scalar(name, value, 0, _INF, integer=True))
             for name, value in (("seed", seed), ("worker_id", worker_id), ("epoch", epoch))]
    return int(np.random.SeedSequence(parts).generate_state(1, dtype=np.uint32)[0])


def reseed(augmentation: Randomizable, seed: int, *, worker_id: int | None = None, epoch: int = 0) -> Randomizable:
    """Seed ``augmentation`` (and every step in it) in place and return it.

    In a ``torch.utils.data.DataLoader``, call this from ``worker_init_fn`` with the worker's id
    (and the epoch, unless workers persist): otherwise every worker, and every epoch's new
    workers, would repeat the same augmentations.

    Args:
        augmentation: a pipeline from :func:`build_augmentation`, or any MONAI randomizable.
        seed: the run's seed, 0 to 2³² − 1.
        worker_id: data-loader worker id; ``None`` uses ``seed`` as it is.
        epoch: epoch number, for non-persistent workers.

    Raises:
        ConfigError: a bad seed, worker id or epoch.
    """
    value = int(check_scalar("seed", seed, 0, _SEED_LIMIT - 1, integer=True))
    if worker_id is not None or epoch:
        value = worker_seed(value, 0 if worker_id is None else worker_id, epoch)
    augmentation.set_random_state(seed=value)
    return augmentation
