"""The training augmentation as data: a frozen :class:`AugmentConfig` (and :class:`Outside`).

The defaults are MemBrain-seg's (``segmentation/dataloading/memseg_augmentation.py``,
``get_training_transforms``, unchanged from v0.0.5 to its main branch after v0.0.9). The Fourier
parts come from its ``FourierAugmentations`` branch (``fourier_augmentations.py``: p 0.5 each,
wedge of ±45°, local blending p 0.5), where ``--use-fourier-aug`` / ``--use-mw-aug`` are off by
default; here they are on, as in MemBrain v2, with the walk step σ of 0.2 that MemBrain v2
describes (the branch draws it from 0.1-4). That branch also widens rotation to ±40° and lowers
the median's p to 0.2; the main branch's ±30° and 0.25 are kept.

Plain data, saved as JSON next to the weights: importing this module loads neither torch nor
MONAI, so a training configuration can be read and checked without them.
:func:`bilayer.augment.pipeline.build_augmentation` turns it into transforms.

Every field declares its check where it is defined (:func:`_option`, :func:`_prob`, in the
field's metadata); a field without one is refused when an instance is built, naming it, and the
tests assert that every field has one.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bilayer.checks import choice, flag, known_keys, number, number_pair, probability
from bilayer.errors import ConfigError
from bilayer.settings import plain_values

__all__ = ["AugmentConfig", "Outside"]

#: The key of a field's check in its ``dataclasses.field`` metadata: a callable
#: ``check(name, value) -> canonical value`` that raises :class:`ConfigError`.
CHECK = "check"


class Outside(str, enum.Enum):
    """What a geometric transform puts where it samples outside the original patch."""

    BORDER = "border"
    """Image and label repeat their edge voxels (MemBrain-seg, via MONAI ``RandRotated``)."""
    IGNORE = "ignore"
    """The image repeats its edge voxels; the label is 2, so no loss is computed there."""


def _option(default: Any, check: Callable[[str, Any], Any]) -> Any:
    """A dataclass field with ``default`` whose value ``check(name, value)`` validates and canonicalises."""
    return dataclasses.field(default=default, metadata={CHECK: check})


def _prob(default: float) -> Any:
    """A probability field (in [0, 1])."""
    return _option(default, probability)


def _pair(low: float = 0.0, high: float = math.inf, **kwargs: Any) -> Callable[[str, Any], Any]:
    """The check of a (low, high) range whose ends lie in [low, high] (see :func:`bilayer.checks.number_pair`)."""
    return functools.partial(number_pair, low=low, high=high, **kwargs)


def _scalar(low: float = 0.0, high: float = math.inf, **kwargs: Any) -> Callable[[str, Any], Any]:
    """The check of a number in [low, high] (see :func:`bilayer.checks.number`)."""
    return functools.partial(number, low=low, high=high, **kwargs)


_POSITIVE_PAIR = _pair(open_low=True)
_NON_NEGATIVE_PAIR = _pair()
_FRACTION_PAIR = _pair(0.0, 1.0, open_low=True)


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

    rotation_prob: float = _prob(0.75)
    max_rotation_deg: float = _option(30.0, _scalar(0.0, 180.0))
    zoom_prob: float = _prob(0.3)
    zoom_range: tuple[float, float] = _option((0.7, 1.43), _POSITIVE_PAIR)
    rot90_prob: float = _prob(0.7)
    axis_swap_prob: float = _prob(0.5)
    flip_prob: float = _prob(0.5)
    outside: Outside = _option(Outside.BORDER, functools.partial(choice, enum_cls=Outside))
    amplitude_prob: float = _prob(0.5)
    amplitude_step_sigma: tuple[float, float] = _option((0.2, 0.2), _NON_NEGATIVE_PAIR)
    amplitude_smooth_sigma: tuple[float, float] = _option((2.0, 4.0), _NON_NEGATIVE_PAIR)
    amplitude_offset: tuple[float, float] = _option((2.0, 10.0), _NON_NEGATIVE_PAIR)
    missing_wedge_prob: float = _prob(0.5)
    missing_wedge_tilt_deg: tuple[float, float] = _option((45.0, 45.0), _pair(0.0, 90.0, open_low=True,
                                                                               open_high=True))
    fourier_local_prob: float = _prob(0.5)
    median_prob: float = _prob(0.25)
    median_size: tuple[int, int] = _option((2, 7), _pair(1, integer=True))
    median_separable: bool = _option(False, flag)
    blur_prob: float = _prob(0.3)
    blur_sigma: tuple[float, float] = _option((0.3, 1.5), _NON_NEGATIVE_PAIR)
    noise_prob: float = _prob(0.4)
    noise_max_std: float = _option(0.7, _scalar())
    brightness_prob: float = _prob(0.3)
    brightness_sigma: float = _option(0.5, _scalar())
    contrast_prob: float = _prob(0.3)
    contrast_range: tuple[float, float] = _option((0.5, 2.0), _POSITIVE_PAIR)
    low_res_prob: float = _prob(0.35)
    low_res_scale: tuple[float, float] = _option((0.25, 1.0), _FRACTION_PAIR)
    gamma_prob: float = _prob(0.25)
    gamma_range: tuple[float, float] = _option((0.5, 4.5), _POSITIVE_PAIR)
    erase_prob: float = _prob(0.4)
    erase_size: tuple[float, float] = _option((0.1, 1 / 3), _FRACTION_PAIR)
    erase_max_cuboids: int = _option(5, _scalar(1, integer=True))
    gradient_prob: float = _prob(0.3)
    gradient_strength: tuple[float, float] = _option((1.0, 5.0), _NON_NEGATIVE_PAIR)
    local_gamma_prob: float = _prob(0.3)
    local_gamma_low: tuple[float, float] = _option((0.01, 0.8), _POSITIVE_PAIR)
    local_gamma_high: tuple[float, float] = _option((1.5, 4.0), _POSITIVE_PAIR)
    sharpen_prob: float = _prob(0.2)
    sharpen_strength: tuple[float, float] = _option((0.1, 1.0), _NON_NEGATIVE_PAIR)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check = field.metadata.get(CHECK)
            if check is None:
                raise ConfigError(f"{type(self).__name__}.{field.name} declares no check; define it with "
                                  "_option(default, check) or _prob(default) in bilayer/augment/config.py")
            object.__setattr__(self, field.name, check(f"augment {field.name}", getattr(self, field.name)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: ranges as lists, ``outside`` as its name."""
        return plain_values(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        """The config from :meth:`to_dict`'s output; missing entries take their defaults.

        Raises:
            ConfigError: not a mapping, an unknown entry (listing the known ones) or a bad value
                (naming it).
        """
        return cls(**known_keys(cls, data, "augmentation setting"))
