"""The canvas a scene is drawn on: the density, the membrane label bands and their bookkeeping.

Densities are relative to the surrounding solvent (vitreous ice = 0) with a protein at about 1.
A bilayer is two Gaussian sheets of lipid head groups at ±separation/2 along the signed distance
to its mid-surface, with a shallow dip for the hydrocarbon core. Its label is the band
|d| <= label_thickness/2. Each sheet is widened by the voxel's own footprint before sampling
(an anti-aliasing filter), so a bilayer sampled at 20 Å comes out smooth instead of flickering
with its sub-voxel position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bilayer.data.synthetic.fields import Crop
from bilayer.data.synthetic.imaging import edge_on_angle

__all__ = ["Bilayer", "Canvas", "SurfaceSamples", "bilayer_density", "draw_bilayer_params"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_VOXEL_FOOTPRINT = 0.4  # σ of the anti-aliasing filter, in voxels
_MIN_LABEL_HALF = 0.75  # the label band is at least 1.5 voxels thick, so it never breaks up
_CONFLICT_MARGIN = 0.5  # two bands closer than this fraction of a half-thickness make an ignore zone
_SAMPLES_PER_SURFACE = 4000


@dataclass(frozen=True)
class Bilayer:
    """The density profile and label band of one membrane.

    Attributes:
        separation: Distance between the two head-group peaks, Å.
        width: Full width at half maximum of each head-group sheet, Å.
        label_half: Half the thickness of the label band, Å.
        outer: Peak density of the leaflet on the positive-distance side.
        inner: Peak density of the leaflet on the negative-distance side.
        core: Density of the hydrocarbon core at the mid-surface (usually slightly negative).
    """

    separation: float
    width: float
    label_half: float
    outer: float
    inner: float
    core: float

    @property
    def extent(self) -> float:
        """Distance from the mid-surface beyond which the density is negligible, Å (before voxel blur)."""
        return self.separation / 2 + 3.0 * self.width


def draw_bilayer_params(
    rng: np.random.Generator,
    separation_range: tuple[float, float],
    width_range: tuple[float, float],
    label_thickness: float | None,
) -> Bilayer:
    """Draw one membrane's profile; the label band is separation + width unless fixed."""
    separation = float(rng.uniform(*separation_range))
    width = float(rng.uniform(*width_range))
    thickness = separation + width if label_thickness is None else float(label_thickness)
    amplitude = float(rng.uniform(1.1, 1.8))
    asymmetry = float(rng.uniform(0.8, 1.2))
    return Bilayer(
        separation=separation,
        width=width,
        label_half=thickness / 2,
        outer=amplitude * asymmetry,
        inner=amplitude / asymmetry,
        core=-float(rng.uniform(0.0, 0.3)) * amplitude,
    )


def bilayer_density(d: np.ndarray, bilayer: Bilayer, voxel_size: float) -> np.ndarray:
    """Density of a bilayer at signed distances ``d`` (Å) from its mid-surface, anti-aliased.

    Each sheet's Gaussian is convolved with a Gaussian voxel footprint (σ = 0.4 voxel); the
    amplitude is scaled so that the density per unit area is unchanged.
    """
    sigma = bilayer.width * _FWHM_TO_SIGMA
    blur = _VOXEL_FOOTPRINT * voxel_size
    sigma_eff = float(np.sqrt(sigma**2 + blur**2))
    scale = sigma / sigma_eff
    half = np.float32(bilayer.separation / 2)
    inv = np.float32(-0.5 / sigma_eff**2)
    out = np.float32(bilayer.outer * scale) * np.exp(inv * (d - half) ** 2)
    out += np.float32(bilayer.inner * scale) * np.exp(inv * (d + half) ** 2)
    core_sigma = float(np.sqrt((0.3 * bilayer.separation) ** 2 + blur**2))
    core_scale = 0.3 * bilayer.separation / core_sigma
    out += np.float32(bilayer.core * core_scale) * np.exp(np.float32(-0.5 / core_sigma**2) * d * d)
    return out


@dataclass
class SurfaceSamples:
    """Points on a mid-surface with their normals, where membrane proteins can sit.

    Attributes:
        points: (n, 3) positions on the mid-surface, Å.
        normals: (n, 3) unit normals (pointing to positive distance).
        bilayer: The membrane's profile.
        area: Area of the surface inside the volume, Å².
    """

    points: np.ndarray
    normals: np.ndarray
    bilayer: Bilayer
    area: float


@dataclass
class Canvas:
    """The density and label bookkeeping of a scene being drawn.

    Attributes:
        shape: Volume shape (z, y, x).
        voxel_size: Voxel size, Å.
        density: Relative density of everything but the bilayers, float32.
        membrane_density: Relative density of the bilayers alone (kept apart to measure the
            membranes' own contrast for the SNR), float32.
        band: Voxels inside some membrane's label band.
        ignore: Voxels that get the ignore label (crossing membranes, invisible through the wedge).
        scatterer: Density of strong scatterers (gold, crystalline ice), imaged with amplitude
            contrast (always dark) rather than as a weak phase object, float32.
        crowding: Factor (0..1) on proteins and crowding texture (clear lumens are low).
        membrane_distance: Distance to the nearest membrane mid-surface drawn so far, Å (inf if none).
        samples: Surface points of each membrane, for membrane-bound proteins.
        tilt_range: (min, max) tilt of the tilt series, degrees.
        hidden_angle: Label voxels whose membrane never comes within this angle of edge-on over
            the tilt range are hidden by the missing wedge and get the ignore label; >= 90
            disables this.
    """

    shape: tuple[int, int, int]
    voxel_size: float
    tilt_range: tuple[float, float]
    hidden_angle: float
    density: np.ndarray = field(init=False)
    membrane_density: np.ndarray = field(init=False)
    scatterer: np.ndarray = field(init=False)
    band: np.ndarray = field(init=False)
    ignore: np.ndarray = field(init=False)
    crowding: np.ndarray = field(init=False)
    membrane_distance: np.ndarray = field(init=False)
    samples: list[SurfaceSamples] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.density = np.zeros(self.shape, np.float32)
        self.membrane_density = np.zeros(self.shape, np.float32)
        self.scatterer = np.zeros(self.shape, np.float32)
        self.band = np.zeros(self.shape, bool)
        self.ignore = np.zeros(self.shape, bool)
        self.crowding = np.ones(self.shape, np.float32)
        self.membrane_distance = np.full(self.shape, np.inf, np.float32)

    def label_half(self, bilayer: Bilayer) -> float:
        """The label half-thickness actually used, Å: never below 0.75 voxel."""
        return max(bilayer.label_half, _MIN_LABEL_HALF * self.voxel_size)

    def clearance(self, crop: Crop, d: np.ndarray) -> float:
        """Smallest distance between this surface and any membrane drawn so far, Å (inf if none)."""
        existing = self.membrane_distance[crop.slices]
        total = np.abs(d) + existing
        return float(total.min()) if total.size else float("inf")

    def add_membrane(
        self,
        rng: np.random.Generator,
        crop: Crop,
        d: np.ndarray,
        normals: tuple[np.ndarray, ...],
        bilayer: Bilayer,
    ) -> None:
        """Draw one membrane surface: its density, its label band and the ignore zones it creates.

        Args:
            rng: Random generator (for the surface samples).
            crop: Where ``d`` lives.
            d: Signed distance to the mid-surface on the crop, Å.
            normals: Unit normal components (z, y, x) on the crop.
            bilayer: The membrane's profile.
        """
        s = crop.slices
        half = self.label_half(bilayer)
        self.membrane_density[s] += bilayer_density(d, bilayer, self.voxel_size)
        absd = np.abs(d)
        band = absd <= half
        existing = self.membrane_distance[s]
        margin = (1.0 + _CONFLICT_MARGIN) * half
        conflict = (absd < margin) & (existing < margin) & (band | self.band[s])
        self.ignore[s] |= conflict
        if self.hidden_angle < 90.0:
            hidden = edge_on_angle(normals[0][band], normals[2][band], *self.tilt_range) > self.hidden_angle
            ignore = self.ignore[s]
            ignore[band] |= hidden
        self.band[s] |= band
        np.minimum(existing, absd, out=existing)
        self._sample(rng, crop, d, normals, bilayer)

    def _sample(
        self, rng: np.random.Generator, crop: Crop, d: np.ndarray, normals: tuple[np.ndarray, ...], bilayer: Bilayer
    ) -> None:
        near = np.flatnonzero(np.abs(d).ravel() <= 0.5 * self.voxel_size)
        if near.size == 0:
            return
        pick = rng.choice(near, size=min(near.size, _SAMPLES_PER_SURFACE), replace=False)
        iz, iy, ix = np.unravel_index(pick, d.shape)
        n = np.stack([normals[i].ravel()[pick] for i in range(3)], axis=1).astype(np.float64)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
        p = np.stack([crop.z.ravel()[iz], crop.y.ravel()[iy], crop.x.ravel()[ix]], axis=1).astype(np.float64)
        p -= d.ravel()[pick][:, None] * n
        area = near.size * self.voxel_size**2
        self.samples.append(SurfaceSamples(points=p, normals=n, bilayer=bilayer, area=area))

    def add_solid(self, crop: Crop, occupancy: np.ndarray, density: float, scatterer: bool = False) -> None:
        """Add a uniform-density solid given by its anti-aliased occupancy (0..1) on a crop.

        Args:
            crop: Where ``occupancy`` lives.
            occupancy: Fraction (0..1) of each voxel inside the solid.
            density: Density of the solid relative to the solvent.
            scatterer: Whether it scatters strongly (gold, crystals): drawn into :attr:`scatterer`.
        """
        target = self.scatterer if scatterer else self.density
        target[crop.slices] += np.float32(density) * occupancy
