"""The seeded training augmentation built from an :class:`~bilayer.augment.config.AugmentConfig`.

:func:`build_augmentation` is the only place that turns the configuration (plain data, in
:mod:`bilayer.augment.config`) into transforms, and every pipeline is seeded.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import Compose, OneOf, Randomizable

from bilayer.augment._common import GEOMETRY_KEYS, IMAGE_KEYS
from bilayer.augment.config import AugmentConfig
from bilayer.augment.filters import RandGaussianBlurd, RandLowResolutiond, RandMedianFilterd, RandSharpend
from bilayer.augment.fourier import RandFourierd
from bilayer.augment.intensity import RandBrightnessd, RandContrastd, RandGammaContrastd, RandGaussianNoised
from bilayer.augment.local import RandBrightnessGradientd, RandEraseCuboidsd, RandLocalGammad
from bilayer.augment.spatial import RandSpatiald
from bilayer.checks import number

__all__ = ["build_augmentation", "reseed", "worker_seed"]

_SEED_LIMIT = 2**32  # MONAI's set_random_state takes seeds below this


def build_augmentation(config: AugmentConfig | None = None, seed: int = 0) -> Compose:
    """The seeded training augmentation for samples ``{"image": (C, Z, Y, X), "label": (C, Z, Y, X)}``.

    Steps, in MemBrain-seg's order: geometry (image and label, one resampling, flips included),
    Fourier amplitude and missing wedge, median filter or Gaussian blur, noise, brightness,
    contrast, low resolution, gamma, erasing, brightness gradient, local gamma, sharpening; all
    but the geometry touch the image only. MemBrain-seg flips after the gamma step; as the later
    steps are flip-symmetric in distribution, flipping with the geometry changes nothing but cost.

    Args:
        config: probabilities and ranges; ``None`` takes the defaults (MemBrain-seg's).
        seed: seeds every step (0 to 2³² − 1); see :func:`reseed` for data-loader workers.

    Returns:
        A MONAI ``Compose`` mapping a sample dict to a new dict; the input is never modified.

    Raises:
        ConfigError: a bad seed.
    """
    c = AugmentConfig() if config is None else config
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
    parts = [number(name, value, 0, integer=True)
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
    value = number("seed", seed, 0, _SEED_LIMIT - 1, integer=True)
    if worker_id is not None or epoch:
        value = worker_seed(value, 0 if worker_id is None else worker_id, epoch)
    augmentation.set_random_state(seed=value)
    return augmentation
