"""What each scene type contains: the mix of membranes and the other objects, as data.

A recipe says how often each membrane geometry is drawn and which distractors a scene of that
type gets, so that the scene composer holds no numbers of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bilayer.data.synthetic.config import SceneType
from bilayer.data.synthetic.membranes import MembraneKind

__all__ = ["RECIPES", "SceneRecipe"]


@dataclass(frozen=True)
class SceneRecipe:
    """The contents of one scene type.

    Attributes:
        membrane_weights: Relative frequency of each membrane geometry.
        max_slab_tilt: Cap on the slab's tilt, degrees (the configured maximum applies below it).
        curtaining: Whether the slab's faces may carry FIB curtaining stripes.
        filament_probability: Probability that the scene has filaments at all.
        granule_count: Inclusive range of the number of dense granules.
        ribosome_probability: Probability that the scene has ribosomes at all.
        protein_scale: Range of the factor on the configured soluble protein density.
        crowding_scale: Range of the factor on the configured crowding amplitude.
        gold: Whether gold fiducials are added.
        carbon_probability: Probability of a carbon film edge.
        contamination_probability: Probability of ice crystals on the faces.
    """

    membrane_weights: Mapping[MembraneKind, float]
    max_slab_tilt: float
    curtaining: bool
    filament_probability: float
    granule_count: tuple[int, int]
    ribosome_probability: float
    protein_scale: tuple[float, float]
    crowding_scale: tuple[float, float]
    gold: bool
    carbon_probability: float
    contamination_probability: float


#: Scene type -> recipe. Lamellae are crowded cells with organelles; in vitro scenes are mostly
#: vesicles and tubes in clean ice, with the grid's carbon and gold around.
RECIPES: dict[SceneType, SceneRecipe] = {
    SceneType.LAMELLA: SceneRecipe(
        membrane_weights={
            MembraneKind.VESICLE: 3.0,
            MembraneKind.TUBE: 1.0,
            MembraneKind.SHEET: 1.5,
            MembraneKind.STACK: 1.2,
            MembraneKind.INVAGINATION: 1.0,
            MembraneKind.MITOCHONDRION: 0.8,
        },
        max_slab_tilt=90.0,
        curtaining=True,
        filament_probability=1.0,
        granule_count=(0, 3),
        ribosome_probability=1.0,
        protein_scale=(1.0, 1.0),
        crowding_scale=(1.0, 1.0),
        gold=False,
        carbon_probability=0.0,
        contamination_probability=0.1,
    ),
    SceneType.IN_VITRO: SceneRecipe(
        membrane_weights={
            MembraneKind.VESICLE: 6.0,
            MembraneKind.TUBE: 1.2,
            MembraneKind.SHEET: 0.4,
            MembraneKind.STACK: 0.3,
            MembraneKind.INVAGINATION: 0.3,
        },
        max_slab_tilt=5.0,
        curtaining=False,
        filament_probability=0.2,
        granule_count=(0, 0),
        ribosome_probability=0.3,
        protein_scale=(0.0, 0.15),
        crowding_scale=(0.0, 0.15),
        gold=True,
        carbon_probability=0.4,
        contamination_probability=0.2,
    ),
}
