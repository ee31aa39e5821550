"""The configuration of the synthetic tomogram generator.

:class:`SynthConfig` holds every range the generator draws from, so a training run can save it as
JSON next to its weights and regenerate the same data. Lengths are in Å and angles in degrees;
the few quantities with another customary unit carry it in their name (``defocus_range_um``,
``spherical_aberration_mm``, ``voltage_kv``, densities ``*_per_um3``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bilayer.checks import choice, known_keys, number, number_pair, probability
from bilayer.errors import ConfigError
from bilayer.settings import plain_values

__all__ = ["SceneType", "SynthConfig"]


class SceneType(str, enum.Enum):
    """What kind of specimen a synthetic tomogram shows."""

    LAMELLA = "lamella"
    """A FIB-milled slab of crowded cytoplasm with organelles, vacuum above and below."""

    IN_VITRO = "in_vitro"
    """Vesicles, tubes and proteins in a thin ice layer, with carbon edges and gold beads."""


# (field, low bound, high bound): the valid interval of a number or of both ends of a range.
_FLOAT_RANGES: tuple[tuple[str, float, float], ...] = (
    ("voxel_size_range", 1.0, 40.0),
    ("leaflet_separation_range", 20.0, 60.0),
    ("leaflet_width_range", 4.0, 25.0),
    ("vesicle_diameter_range", 100.0, 5000.0),
    ("tube_diameter_range", 100.0, 2000.0),
    ("sheet_lumen_range", 60.0, 1000.0),
    ("organelle_diameter_range", 1000.0, 50000.0),
    ("shape_perturbation_range", 0.0, 0.5),
    ("ribosome_density_range_per_um3", 0.0, 50000.0),
    ("protein_density_range_per_um3", 0.0, 500000.0),
    ("crowding_range", 0.0, 3.0),
    ("gold_diameter_range", 20.0, 300.0),
    ("lamella_thickness_range", 200.0, 10000.0),
    ("ice_thickness_range", 200.0, 10000.0),
    ("defocus_range_um", 0.2, 15.0),
    ("amplitude_contrast_range", 0.0, 0.5),
    ("b_factor_range", 0.0, 5000.0),
    ("tilt_range", 20.0, 90.0),
    ("snr_range", 1e-4, 100.0),
    ("noise_color_range", 0.0, 2.0),
    ("background_range", 0.0, 5.0),
    ("band_fwhm_range", 10.0, 80.0),
    ("membrane_gain_range", 0.1, 10.0),
    ("resolution_range", 4.0, 100.0),
)
_INT_RANGES: tuple[tuple[str, int, int], ...] = (
    ("membrane_count_range", 0, 100),
    ("stack_count_range", 1, 20),
    ("filament_count_range", 0, 100),
    ("gold_count_range", 0, 200),
)
_PROBABILITIES: tuple[str, ...] = (
    "lamella_probability",
    "empty_probability",
    "phase_flip_probability",
    "lowpass_probability",
    "invert_probability",
    "appearance_probability",
)
_SCALARS: tuple[tuple[str, float, float], ...] = (
    ("lamella_tilt_max", 0.0, 45.0),
    ("voltage_kv", 60.0, 1000.0),
    ("spherical_aberration_mm", 0.0, 10.0),
    ("hidden_membrane_angle", 5.0, 90.0),
)
_MIN_SIDE, _MAX_SIDE = 16, 1024
_LABEL_THICKNESS_BOUNDS = (10.0, 200.0)


@dataclass(frozen=True)
class SynthConfig:
    """Every range the synthetic tomogram generator draws from.

    A value is drawn per tomogram (or per membrane or object) uniformly from each ``(low, high)``
    range, except ``snr_range`` and the size ranges, which are drawn log-uniformly so that small
    and large values are equally common.

    Attributes:
        shape: Volume shape (z, y, x) in voxels; for :func:`generate_patches`, the patch shape.
        voxel_size: Isotropic voxel size in Å; None draws it from ``voxel_size_range``.
        voxel_size_range: Range of the drawn voxel size, Å.
        scene_type: The kind of specimen; None draws lamella with ``lamella_probability``,
            otherwise in vitro.
        lamella_probability: Probability of a lamella scene when ``scene_type`` is None.
        empty_probability: Probability that a scene has no membranes at all (only distractors),
            so that a model learns not to call membranes everywhere.
        leaflet_separation_range: Distance between the two leaflet density peaks, Å.
        leaflet_width_range: Full width at half maximum of each leaflet's density sheet, Å.
        label_thickness: Thickness of the membrane label band, Å; None uses each membrane's
            leaflet separation plus its leaflet width (about 50 Å).
        membrane_count_range: Number of membrane objects per scene (inclusive).
        vesicle_diameter_range: Vesicle diameters, Å.
        tube_diameter_range: Membrane tube diameters, Å.
        sheet_lumen_range: Distance between the two membranes of a flattened sheet (ER,
            thylakoid, crista), Å.
        stack_count_range: Number of flattened sheets in one stack (inclusive).
        organelle_diameter_range: Diameters of large organelles (mitochondria, cell bodies), Å.
        shape_perturbation_range: Amplitude of the smooth shape deformation, relative to the
            object's radius.
        ribosome_density_range_per_um3: Number of ribosomes per µm³ of cytoplasm.
        protein_density_range_per_um3: Number of soluble protein complexes per µm³.
        crowding_range: Amplitude of the fine macromolecular crowding texture, relative to the
            density of a protein.
        filament_count_range: Number of actin filaments and microtubules per scene (inclusive).
        gold_count_range: Number of gold fiducial beads in an in vitro scene (inclusive).
        gold_diameter_range: Gold bead diameters, Å.
        lamella_thickness_range: Thickness of a lamella, Å.
        lamella_tilt_max: Largest tilt of the lamella's surfaces away from the xy plane, degrees.
        ice_thickness_range: Thickness of the ice layer of an in vitro scene, Å.
        defocus_range_um: Underfocus, µm.
        voltage_kv: Acceleration voltage, kV.
        spherical_aberration_mm: Spherical aberration Cs, mm.
        amplitude_contrast_range: Fraction of amplitude contrast.
        phase_flip_probability: Probability that the tomogram was CTF-corrected by phase
            flipping (otherwise it keeps the raw CTF with its sign reversals).
        b_factor_range: B-factor of the signal envelope, Å².
        tilt_range: Largest tilt angle on each side of the tilt series, degrees; the two sides
            are drawn independently, so tilt series can be asymmetric.
        snr_range: Signal-to-noise ratio of the membranes: variance of the imaged bilayers over
            their label band divided by the noise variance, drawn log-uniformly (about 0.3:
            barely visible in a slice, 1: faint, 5: clear).
        noise_color_range: Exponent of the noise power spectrum's rise with frequency
            (0 white, 1 like weighted back-projection).
        lowpass_probability: Probability of a final low-pass filter (binning, SIRT-like).
        background_range: Amplitude of the smooth background (ice thickness gradients, uneven
            illumination), relative to the image's standard deviation.
        invert_probability: Probability of inverted contrast (dense comes out bright).
        hidden_membrane_angle: Membrane label voxels whose surface never comes within this angle
            (degrees) of edge-on, i.e. of parallel to the beam, in any tilt of the series lie in
            the missing wedge and are invisible; they get the ignore label 2. 90 disables this.
        appearance_probability: Probability that a scene's look is drawn from the wide appearance
            families of :mod:`.appearance` (one dark band or a bilayer, no CTF, low resolution,
            back-projected noise, bias field, dense cores) instead of the physical look alone;
            0 leaves every scene exactly as without them.
        band_fwhm_range: Width (FWHM) of a membrane drawn as one dark band, Å.
        membrane_gain_range: Factor on the membranes' density against the other contents under
            a drawn look (drawn log-uniformly).
        resolution_range: Effective resolution of a drawn look's extra low-pass, Å (log-uniform).
    """

    shape: tuple[int, int, int] = (128, 128, 128)
    voxel_size: float | None = None
    voxel_size_range: tuple[float, float] = (5.0, 20.0)
    scene_type: SceneType | None = None
    lamella_probability: float = 0.6
    empty_probability: float = 0.05
    leaflet_separation_range: tuple[float, float] = (36.0, 44.0)
    leaflet_width_range: tuple[float, float] = (8.0, 14.0)
    label_thickness: float | None = None
    membrane_count_range: tuple[int, int] = (1, 8)
    vesicle_diameter_range: tuple[float, float] = (200.0, 2000.0)
    tube_diameter_range: tuple[float, float] = (150.0, 600.0)
    sheet_lumen_range: tuple[float, float] = (80.0, 400.0)
    stack_count_range: tuple[int, int] = (1, 6)
    organelle_diameter_range: tuple[float, float] = (3000.0, 12000.0)
    shape_perturbation_range: tuple[float, float] = (0.0, 0.12)
    ribosome_density_range_per_um3: tuple[float, float] = (0.0, 8000.0)
    protein_density_range_per_um3: tuple[float, float] = (5000.0, 120000.0)
    crowding_range: tuple[float, float] = (0.1, 0.8)
    filament_count_range: tuple[int, int] = (0, 4)
    gold_count_range: tuple[int, int] = (0, 6)
    gold_diameter_range: tuple[float, float] = (50.0, 150.0)
    lamella_thickness_range: tuple[float, float] = (800.0, 3000.0)
    lamella_tilt_max: float = 10.0
    ice_thickness_range: tuple[float, float] = (500.0, 2500.0)
    defocus_range_um: tuple[float, float] = (1.5, 8.0)
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast_range: tuple[float, float] = (0.05, 0.10)
    phase_flip_probability: float = 0.5
    b_factor_range: tuple[float, float] = (50.0, 500.0)
    tilt_range: tuple[float, float] = (45.0, 70.0)
    snr_range: tuple[float, float] = (0.25, 8.0)
    noise_color_range: tuple[float, float] = (0.0, 1.0)
    lowpass_probability: float = 0.3
    background_range: tuple[float, float] = (0.0, 0.5)
    invert_probability: float = 0.03
    hidden_membrane_angle: float = 25.0
    appearance_probability: float = 0.0
    band_fwhm_range: tuple[float, float] = (25.0, 55.0)
    membrane_gain_range: tuple[float, float] = (0.5, 2.0)
    resolution_range: tuple[float, float] = (8.0, 40.0)

    def __post_init__(self) -> None:
        for name, value in _checked(self).items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (tuples as lists, enums as their value)."""
        return plain_values(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SynthConfig:
        """Build a config from a dict such as :meth:`to_dict` writes; missing keys keep defaults.

        Raises:
            ConfigError: Not a mapping, a key is unknown, or a value is of the wrong kind or out of range.
        """
        return cls(**known_keys(cls, d, "SynthConfig"))


def _checked(config: SynthConfig) -> dict[str, Any]:
    """Every field's value in canonical form (tuples, floats, ints, the enum), checked once.

    Raises:
        ConfigError: naming ``SynthConfig.<field>``, the value and the allowed range.
    """
    out: dict[str, Any] = {"shape": _shape(config.shape)}
    for name, lo, hi in _FLOAT_RANGES:
        out[name] = number_pair(f"SynthConfig.{name}", getattr(config, name), lo, hi)
    for name, ilo, ihi in _INT_RANGES:
        out[name] = number_pair(f"SynthConfig.{name}", getattr(config, name), ilo, ihi, integer=True)
    for name in _PROBABILITIES:
        out[name] = probability(f"SynthConfig.{name}", getattr(config, name))
    for name, lo, hi in _SCALARS:
        out[name] = number(f"SynthConfig.{name}", getattr(config, name), lo, hi)
    if config.voxel_size is not None:
        out["voxel_size"] = number("SynthConfig.voxel_size", config.voxel_size, *_FLOAT_RANGES[0][1:])
    if config.label_thickness is not None:
        out["label_thickness"] = number("SynthConfig.label_thickness", config.label_thickness,
                                        *_LABEL_THICKNESS_BOUNDS)
    if config.scene_type is not None:
        try:
            out["scene_type"] = choice("SynthConfig.scene_type", config.scene_type, SceneType)
        except ConfigError as e:
            raise ConfigError(f"{e}, or null to draw it per scene") from e
    return out


def _shape(shape: Any) -> tuple[int, int, int]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)) or len(shape) != 3:
        raise ConfigError(f"SynthConfig.shape={shape!r} must be three integers (z, y, x), "
                          f"each in [{_MIN_SIDE}, {_MAX_SIDE}]")
    z, y, x = (number(f"SynthConfig.shape[{i}]", side, _MIN_SIDE, _MAX_SIDE, integer=True)
               for i, side in enumerate(shape))
    return z, y, x
