"""Training patches as torch datasets: cropped from a dataset folder, or generated on the fly.

Every draw (crop position, augmentation, synthetic scene) is seeded from ``(seed, epoch,
index)``, so a patch does not depend on which worker process makes it or on what came before:
a run resumed after a kill sees exactly the patches the uninterrupted run would have seen.

A sample is ``{"image": (1, z, y, x) float32, "label": (1, z, y, x) float32}`` with labels 0
(background), 1 (membrane) and 2 (ignore).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from bilayer.data.folder import PatchPair, read_array
from bilayer.data.synthetic import SynthConfig, generate_tomogram
from bilayer.errors import ConfigError, InputFileError

__all__ = ["FolderPatches", "SyntheticPatches", "Transform", "sample_seed"]

IGNORE = 2
#: Maps a sample dict to a new augmented sample; ``seed`` makes its draws reproducible.
Transform = Callable[[Mapping[str, torch.Tensor], int], dict[str, torch.Tensor]]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for sample ``index`` of ``epoch``; independent streams for different triples."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class _Patches(Dataset):
    """Shared epoch bookkeeping and augmentation of the two sources."""

    def __init__(self, patch_size: int | Sequence[int], transform: Transform | None, seed: int) -> None:
        size = (patch_size,) * 3 if isinstance(patch_size, (int, np.integer)) else tuple(patch_size)
        if len(size) != 3 or any(int(n) < 1 for n in size):
            raise ConfigError(f"patch_size {patch_size!r} must be a positive size (one number or z, y, x)")
        self.patch_size: tuple[int, int, int] = tuple(int(n) for n in size)  # type: ignore[assignment]
        self.transform, self.seed, self.epoch = transform, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the patches of ``epoch`` (call before each epoch, in every worker's copy too)."""
        self.epoch = int(epoch)

    def _finish(self, image: np.ndarray, label: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
        sample = {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
                  "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32))[None]}
        if self.transform is not None:
            sample = self.transform(sample, seed)
        return sample


class FolderPatches(_Patches):
    """One random crop of ``patch_size`` per pair and epoch, as MemBrain-seg draws them.

    Images are standardised per file (mean 0, standard deviation 1), as the predictor
    standardises a whole tomogram. A pair smaller than the patch is padded centrally, the
    image with 0 and the label with 2 (ignore), so padding never counts as background.

    Args:
        pairs: the checked pairs (:func:`bilayer.data.folder.find_pairs`).
        patch_size: patch edge, or (z, y, x), in voxels.
        transform: augmentation applied to each crop, or None.
        seed: base seed of crops and augmentation.
        random_crop: draw crop positions (training); False takes the central crop (validation).
        in_memory: read every pair once up front (fast epochs); False reads on each access.
    """

    def __init__(self, pairs: Sequence[PatchPair], patch_size: int | Sequence[int] = 160, *,
                 transform: Transform | None = None, seed: int = 0, random_crop: bool = True,
                 in_memory: bool = True) -> None:
        super().__init__(patch_size, transform, seed)
        if not pairs:
            raise ConfigError("no training pairs given; check the dataset folder")
        self.pairs, self.random_crop = list(pairs), random_crop
        self._cache = [self._load(pair) for pair in self.pairs] if in_memory else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, label = self._cache[index] if self._cache is not None else self._load(self.pairs[index])
        seed = sample_seed(self.seed, self.epoch, index)
        rng = np.random.default_rng(seed)
        image, label = _pad_to(image, self.patch_size, 0.0), _pad_to(label, self.patch_size, IGNORE)
        starts = [int(rng.integers(0, n - p + 1)) if self.random_crop else (n - p) // 2
                  for n, p in zip(image.shape, self.patch_size)]
        window = tuple(slice(s, s + p) for s, p in zip(starts, self.patch_size))
        return self._finish(image[window], label[window], seed)

    @staticmethod
    def _load(pair: PatchPair) -> tuple[np.ndarray, np.ndarray]:
        image = read_array(pair.image).astype(np.float32)
        std = float(image.std(dtype=np.float64))
        if not std > 0:
            raise InputFileError(f"{pair.image} has the same value everywhere; give a tomogram patch")
        image -= np.float32(image.mean(dtype=np.float64))
        image /= np.float32(std)
        return image, read_array(pair.label).astype(np.uint8)


class SyntheticPatches(_Patches):
    """``length`` synthetic scenes per epoch from Bilayer's generator, new ones every epoch.

    Args:
        config: generator settings; its ``shape`` is replaced by ``patch_size``.
        length: patches per epoch.
        patch_size: patch edge, or (z, y, x), in voxels.
        transform: augmentation applied to each scene, or None.
        seed: base seed.
        fixed: draw the same scenes every epoch (a validation set); they are kept in memory.
    """

    def __init__(self, config: SynthConfig, length: int, patch_size: int | Sequence[int] = 160, *,
                 transform: Transform | None = None, seed: int = 0, fixed: bool = False) -> None:
        super().__init__(patch_size, transform, seed)
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ConfigError(f"length {length!r} must be a positive number of patches per epoch")
        self.config, self.length, self.fixed = replace(config, shape=self.patch_size), int(length), fixed
        self._scenes: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # fixed scenes, generated once

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        seed = sample_seed(self.seed, 0 if self.fixed else self.epoch, index)
        scene = self._scenes.get(index) if self.fixed else None
        if scene is None:
            generated = generate_tomogram(self.config, seed=seed)
            scene = generated.image, generated.labels
            if self.fixed:
                self._scenes[index] = scene
        return self._finish(*scene, seed)

    def describe(self) -> dict[str, Any]:
        """The generator settings, for the training record."""
        return {"synthetic": self.config.to_dict(), "length": self.length}


def _pad_to(array: np.ndarray, size: tuple[int, int, int], value: float) -> np.ndarray:
    """``array`` padded centrally with ``value`` to at least ``size`` along each axis."""
    missing = [max(p - n, 0) for n, p in zip(array.shape, size)]
    if not any(missing):
        return array
    return np.pad(array, [(m // 2, m - m // 2) for m in missing], constant_values=value)
