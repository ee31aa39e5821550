"""Appearance randomisation: how a scene looks, drawn apart from what it contains.

In the spirit of SynthSeg (Billot et al., Medical Image Analysis 2023), a segmenter that sees the
same geometry under many looks learns the geometry rather than one rendering of it. With
``SynthConfig.appearance_probability`` a scene keeps its membranes, labels and contents but draws
its look from wide families: a resolved bilayer or one dark band (leaflets unresolved, as most
tomograms at 10–20 Å show them), the membranes' contrast against the other contents, with or
without the CTF (no fringes), an effective resolution of 8–40 Å, noise shaped in Fourier space
or back-projected from a tilt series (streaks along the tilt directions), a multiplicative bias
field, and dense granular protein cores inside vesicles and free in the specimen (the hard
negatives of enveloped virions and ribosome-rich cytosol).

The decision and the look are drawn from a random stream of their own, so a configuration with
``appearance_probability = 0`` gives bit-identical scenes to the generator without this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from bilayer.data.synthetic.config import SynthConfig
from bilayer.data.synthetic.fields import log_uniform
from bilayer.data.synthetic.imaging import CtfMode, ImagingParams
from bilayer.data.synthetic.particles import lumpy, render_point_groups
from bilayer.data.synthetic.render import Bilayer

__all__ = ["Appearance", "add_dense_cores", "draw_appearance", "restyle_bilayer"]

_SINGLE_BAND = 0.6  # share of looks whose membranes are one dark band
_NO_CTF = 0.45  # share of looks imaged without a CTF (no fringes, low frequencies kept)
_RESOLUTION = 0.7  # share of looks with an extra low-pass to an effective resolution
_BACKPROJECTED = 0.4  # share of looks whose noise is back-projected from a tilt series
_TILT_COUNT = (15, 61)  # number of tilts of back-projected noise
_BIAS = 0.5  # share of looks with a multiplicative bias field
_BIAS_RANGE = (0.05, 0.35)  # its amplitude (standard deviation of the factor)
_CORES = 0.5  # share of looks with dense granular cores
_CORE_FILL = (0.3, 0.8)  # fraction of a vesicle's lumen (by radius) a core fills
_CORE_CLEARANCE = 60.0  # Å between a core's proteins and any membrane mid-surface
_FREE_CORES = (0, 3)  # free dense clusters per scene (inclusive)
_CORE_KIND = "dense_core"  # in a scene's summary; only looks draw it, so it is not a DistractorKind


@dataclass(frozen=True)
class Appearance:
    """The look of one scene.

    Attributes:
        single_band: Membranes are one dark band instead of two resolved leaflets.
        band_fwhm: Full width at half maximum of that band, Å.
        membrane_gain: Factor on the membranes' density against the other contents.
        ctf: Whether the CTF keeps its fringes (False: the fringe-free CTF of ``CtfMode.NONE``).
        resolution: Effective resolution of an extra Gaussian low-pass of the signal, Å, or None.
        noise_tilts: Number of tilts of back-projected noise, or 0 for Fourier-shaped noise.
        bias: Amplitude of the multiplicative bias field (0 for none).
        dense_cores: Whether vesicles and the specimen get dense granular protein cores.
    """

    single_band: bool
    band_fwhm: float
    membrane_gain: float
    ctf: bool
    resolution: float | None
    noise_tilts: int
    bias: float
    dense_cores: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable values, floats rounded."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}

    def imaging(self, params: ImagingParams) -> ImagingParams:
        """The imaging conditions with this look's CTF, resolution, noise and bias."""
        return dataclasses.replace(
            params,
            ctf_mode=params.ctf_mode if self.ctf else CtfMode.NONE,
            resolution=self.resolution,
            noise_tilts=self.noise_tilts,
            bias=self.bias,
        )


def draw_appearance(rng: np.random.Generator, config: SynthConfig) -> Appearance | None:
    """Draw a scene's look, or None (the generator's physical look) with 1 − ``appearance_probability``."""
    if config.appearance_probability <= 0 or rng.random() >= config.appearance_probability:
        return None
    return Appearance(
        single_band=bool(rng.random() < _SINGLE_BAND),
        band_fwhm=float(rng.uniform(*config.band_fwhm_range)),
        membrane_gain=log_uniform(rng, *config.membrane_gain_range),
        ctf=bool(rng.random() >= _NO_CTF),
        resolution=log_uniform(rng, *config.resolution_range) if rng.random() < _RESOLUTION else None,
        noise_tilts=int(rng.integers(*_TILT_COUNT)) if rng.random() < _BACKPROJECTED else 0,
        bias=float(rng.uniform(*_BIAS_RANGE)) if rng.random() < _BIAS else 0.0,
        dense_cores=bool(rng.random() < _CORES),
    )


def restyle_bilayer(rng: np.random.Generator | None, bilayer: Bilayer, look: Appearance | None) -> Bilayer:
    """A membrane's profile under a look: one band of the look's width (±15 %) whose peak is the
    two leaflets' peaks added (as when they blur into one), or the bilayer unchanged. The label
    band is the membrane's, whatever its look."""
    if look is None or rng is None or not look.single_band:
        return bilayer
    fwhm = look.band_fwhm * float(rng.uniform(0.85, 1.15))
    half = 0.5 * (bilayer.outer + bilayer.inner)  # two coinciding sheets make the band
    return Bilayer(separation=0.0, width=fwhm, label_half=bilayer.label_half, outer=half, inner=half, core=0.0)


def add_dense_cores(
    rng: np.random.Generator,
    density: np.ndarray,
    membrane_distance: np.ndarray,
    voxel_size: float,
    membranes: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Dense granular cores of packed proteins inside vesicles and as free clusters (not membranes).

    A core fills a sphere around a vesicle's centre, inside its smallest semi-axis; its proteins
    keep ``_CORE_CLEARANCE`` from every membrane, so they never touch a label band.

    Returns:
        Summaries of the cores drawn.
    """
    shape = density.shape
    extent = np.array(shape, dtype=float) * voxel_size
    spheres: list[tuple[np.ndarray, float]] = []
    for m in membranes:
        if m.get("kind") == "vesicle" and "center" in m:
            inner = min(m["semi_axes"]) - _CORE_CLEARANCE
            if inner > 60.0:
                spheres.append((np.array(m["center"], dtype=float), inner * float(rng.uniform(*_CORE_FILL))))
    for _ in range(int(rng.integers(_FREE_CORES[0], _FREE_CORES[1] + 1))):
        spheres.append((rng.uniform(0, 1, 3) * extent, log_uniform(rng, 150.0, 600.0)))
    out: list[dict[str, Any]] = []
    groups = []
    for center, radius in spheres:
        protein = log_uniform(rng, 25.0, 55.0)
        n = int(0.5 * (radius / protein) ** 3) + 1  # about half packed
        r = radius * rng.random(n) ** (1 / 3)
        direction = rng.standard_normal((n, 3))
        direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-6)
        points = center + r[:, None] * direction
        idx = np.clip(np.rint(points / voxel_size).astype(np.int64), 0, np.array(shape) - 1)
        keep = membrane_distance[tuple(idx.T)] > protein + _CORE_CLEARANCE
        points = points[keep]
        groups.append(lumpy(rng, points, rng.uniform(0.7, 1.3, len(points)), protein, _CORE_KIND))
        out.append({"kind": _CORE_KIND, "center": center.round(1).tolist(), "radius": round(radius, 1),
                    "count": int(len(points))})
    if groups:
        density += render_point_groups(groups, shape, voxel_size)
    return out
