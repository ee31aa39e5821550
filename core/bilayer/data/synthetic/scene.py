"""The public entry points: one synthetic tomogram, or a stream of varied training patches.

A scene is a specimen slab (a lamella of crowded cytoplasm, or a thin ice layer of purified
material), membranes placed in it, non-membrane objects around them, the slab cut, and finally
the imaging physics. Everything is drawn from one :class:`numpy.random.Generator` seeded from
the caller's seed, so the same seed and config give bit-identical output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from bilayer.data.synthetic.appearance import add_dense_cores, draw_appearance
from bilayer.data.synthetic.compose import MEMBRANE_BUILDERS, add_crowding, add_proteins, place_membrane
from bilayer.data.synthetic.config import SceneType, SynthConfig
from bilayer.data.synthetic.distractors import add_carbon, add_contamination, add_filaments, add_gold, add_granules
from bilayer.data.synthetic.environment import Slab, draw_slab
from bilayer.data.synthetic.fields import full_crop
from bilayer.data.synthetic.imaging import draw_imaging, simulate
from bilayer.data.synthetic.membranes import Frame
from bilayer.data.synthetic.recipes import RECIPES, SceneRecipe
from bilayer.data.synthetic.render import Canvas
from bilayer.checks import number

__all__ = ["SyntheticTomogram", "generate_patches", "generate_tomogram"]

logger = logging.getLogger(__name__)

LABEL_BACKGROUND, LABEL_MEMBRANE, LABEL_IGNORE = 0, 1, 2

_VACUUM_RANGE = (1.0, 3.0)  # density of the vacuum below the solvent
_FIT_IN_ICE = 1.9  # free objects of an in vitro scene are at most this many half ice thicknesses tall
_DEFAULT_CONFIG = SynthConfig()
_MAX_BAND_FRACTION = 0.12  # stop adding membranes once this fraction of the volume is labelled
_FACE_IGNORE = 0.75  # label voxels closer than this (voxels) to a milled face are ambiguous


@dataclass(frozen=True)
class SyntheticTomogram:
    """A synthetic tomogram with its ground truth.

    Attributes:
        image: Tomogram (z, y, x), float32, mean 0 and standard deviation 1; dense is dark
            unless ``params["imaging"]["inverted"]``.
        labels: (z, y, x) uint8: 0 background, 1 membrane, 2 ignore.
        voxel_size: Isotropic voxel size, Å.
        params: Every value drawn for this tomogram, JSON-serialisable: seed, voxel size, scene
            type, slab, imaging conditions, and the list of membranes and other objects.
    """

    image: np.ndarray
    labels: np.ndarray
    voxel_size: float
    params: dict[str, Any]


def generate_tomogram(config: SynthConfig = _DEFAULT_CONFIG, seed: int = 0) -> SyntheticTomogram:
    """Generate one synthetic membrane tomogram with labels.

    Args:
        config: The ranges to draw from (shape, voxel size, membranes, imaging, ...).
        seed: Non-negative integer; the same seed and config give identical output.

    Raises:
        ConfigError: ``seed`` is not a non-negative integer.
    """
    return _generate(config, np.random.SeedSequence(number("seed", seed, 0, integer=True)), {"seed": seed})


def generate_patches(config: SynthConfig, n: int, seed: int = 0) -> Iterator[SyntheticTomogram]:
    """Generate ``n`` independent small scenes of shape ``config.shape`` (training patches).

    Patch i is seeded by the i-th child of ``SeedSequence(seed)``, so it does not depend on ``n``
    and patches are statistically independent.

    Raises:
        ConfigError: ``n`` or ``seed`` is not a non-negative integer.
    """
    n = number("generate_patches n", n, 0, integer=True)
    children = np.random.SeedSequence(number("seed", seed, 0, integer=True)).spawn(n)
    for i, child in enumerate(children):
        yield _generate(config, child, {"seed": seed, "patch": i})


def _generate(config: SynthConfig, seed_seq: np.random.SeedSequence, seed_info: dict[str, Any]) -> SyntheticTomogram:
    rng = np.random.default_rng(seed_seq)
    look_rng = np.random.default_rng(seed_seq.spawn(1)[0])  # the look's own stream (see .appearance)
    look = draw_appearance(look_rng, config)
    shape = config.shape
    vs = float(config.voxel_size) if config.voxel_size is not None else float(rng.uniform(*config.voxel_size_range))
    scene = config.scene_type
    if scene is None:
        scene = SceneType.LAMELLA if rng.random() < config.lamella_probability else SceneType.IN_VITRO
    recipe = RECIPES[scene]
    extent = np.array(shape, dtype=float) * vs
    slab = draw_slab(
        rng,
        extent,
        config.lamella_thickness_range if scene is SceneType.LAMELLA else config.ice_thickness_range,
        min(config.lamella_tilt_max, recipe.max_slab_tilt),
        _VACUUM_RANGE,
        curtaining=recipe.curtaining,
    )
    # Free objects fit in the ice of an in vitro scene; a lamella cuts through whatever is there.
    max_height = float("inf") if scene is SceneType.LAMELLA else _FIT_IN_ICE * slab.half_thickness
    imaging = draw_imaging(rng, config, 2 * slab.half_thickness)
    if look is not None:
        imaging = look.imaging(imaging)
    canvas = Canvas(shape, vs, (imaging.tilt_min, imaging.tilt_max), config.hidden_membrane_angle)
    frame = Frame(
        shape, vs, config, slab.z_range(extent), slab.z_interval(), max_height, canvas.membrane_distance, look, look_rng
    )
    slab_distance = slab.signed_distance(full_crop(shape, vs))
    inside = np.clip(np.float32(0.5) - slab_distance / np.float32(vs), 0, 1)

    membranes = _draw_membranes(rng, recipe, frame, canvas, inside)
    distractors = _draw_contents(rng, recipe, frame, canvas, slab)
    if look is not None:
        canvas.membrane_density *= np.float32(look.membrane_gain)
        if look.dense_cores:
            distractors += add_dense_cores(look_rng, canvas.density, canvas.membrane_distance, vs, membranes)
    canvas.membrane_density *= inside
    canvas.density *= inside
    canvas.density += canvas.membrane_density
    canvas.density += np.float32(slab.vacuum) * (1 - inside)
    distractors += _draw_surface_objects(rng, recipe, frame, canvas, slab)

    labels = _labels(canvas, slab_distance, vs)
    image = simulate(
        rng, canvas.density, vs, imaging, canvas.membrane_density, labels == LABEL_MEMBRANE, canvas.scatterer
    )
    params = {
        **seed_info,
        "shape": list(shape),
        "voxel_size": round(vs, 4),
        "scene_type": scene.value,
        "slab": slab.summary(),
        "imaging": imaging.to_dict(),
        "appearance": look.to_dict() if look is not None else None,
        "membranes": membranes,
        "distractors": distractors,
        "label_fractions": {
            "membrane": round(float(np.mean(labels == LABEL_MEMBRANE)), 5),
            "ignore": round(float(np.mean(labels == LABEL_IGNORE)), 5),
        },
    }
    logger.debug("synthetic tomogram %s: %d membranes, %d other objects", seed_info, len(membranes), len(distractors))
    return SyntheticTomogram(image=image, labels=labels, voxel_size=vs, params=_jsonable(params))


def _draw_membranes(
    rng: np.random.Generator, recipe: SceneRecipe, frame: Frame, canvas: Canvas, inside: np.ndarray
) -> list[dict[str, Any]]:
    """Draw the scene's membranes, largest kinds first, until the count or the label budget is reached."""
    config = frame.config
    if rng.random() < config.empty_probability:
        return []
    kinds = list(recipe.membrane_weights)
    p = np.array([recipe.membrane_weights[k] for k in kinds])
    n = int(rng.integers(config.membrane_count_range[0], config.membrane_count_range[1] + 1))
    drawn = [kinds[i] for i in rng.choice(len(kinds), size=n, p=p / p.sum())]
    order = list(MEMBRANE_BUILDERS)
    drawn.sort(key=order.index)
    out = []
    for kind in drawn:
        if canvas.band.mean() > _MAX_BAND_FRACTION:
            break
        summary = place_membrane(rng, frame, canvas, inside, MEMBRANE_BUILDERS[kind])
        if summary is not None:
            out.append(summary)
    return out


def _draw_contents(
    rng: np.random.Generator, recipe: SceneRecipe, frame: Frame, canvas: Canvas, slab: Slab
) -> list[dict[str, Any]]:
    """Everything inside the specimen besides membranes: filaments, granules, proteins, crowding."""
    config = frame.config
    filaments = int(rng.integers(config.filament_count_range[0], config.filament_count_range[1] + 1))
    out = add_filaments(rng, frame, canvas, filaments if rng.random() < recipe.filament_probability else 0)
    out += add_granules(rng, frame, canvas, int(rng.integers(recipe.granule_count[0], recipe.granule_count[1] + 1)))
    ribosome_scale = 1.0 if rng.random() < recipe.ribosome_probability else 0.0
    out += add_proteins(rng, frame, canvas, slab, ribosome_scale, float(rng.uniform(*recipe.protein_scale)))
    crowding = rng.uniform(*config.crowding_range) * rng.uniform(*recipe.crowding_scale)
    out.append(add_crowding(rng, frame, canvas, crowding))
    return out


def _draw_surface_objects(
    rng: np.random.Generator, recipe: SceneRecipe, frame: Frame, canvas: Canvas, slab: Slab
) -> list[dict[str, Any]]:
    """Objects on or beyond the slab's faces, drawn after the cut: gold, carbon, ice crystals."""
    config = frame.config
    out: list[dict[str, Any]] = []
    if recipe.gold:
        out += add_gold(
            rng, frame, canvas, slab, int(rng.integers(config.gold_count_range[0], config.gold_count_range[1] + 1))
        )
    if rng.random() < recipe.carbon_probability:
        out.append(add_carbon(rng, frame, canvas, slab))
    if rng.random() < recipe.contamination_probability:
        out += add_contamination(rng, frame, canvas, slab, int(rng.integers(1, 4)))
    return out


def _labels(canvas: Canvas, slab_distance: np.ndarray, voxel_size: float) -> np.ndarray:
    """0/1/2 labels: membrane bands inside the slab; ignore at crossings, wedge-hidden patches and
    where a membrane is cut by a milled face."""
    inside = slab_distance <= 0
    labels = np.zeros(canvas.shape, np.uint8)
    band = canvas.band & inside
    labels[band] = LABEL_MEMBRANE
    at_face = band & (slab_distance > -_FACE_IGNORE * voxel_size)
    labels[(canvas.ignore & inside) | at_face] = LABEL_IGNORE
    return labels


def _jsonable(value: Any) -> Any:
    """Plain Python types only (numpy scalars and arrays converted), so ``json.dumps`` works."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    return value
