"""bilayer.data.synthetic.recipes: every scene type has a valid recipe and every geometry can be drawn."""

from __future__ import annotations

import dataclasses

from bilayer.data.synthetic import MembraneKind, SceneType
from bilayer.data.synthetic.compose import MEMBRANE_BUILDERS
from bilayer.data.synthetic.recipes import RECIPES, SceneRecipe


def test_every_scene_type_has_a_recipe_and_every_geometry_a_scene():
    assert set(RECIPES) == set(SceneType)
    drawn = {kind for recipe in RECIPES.values() for kind, weight in recipe.membrane_weights.items() if weight > 0}
    assert drawn == set(MembraneKind) == set(MEMBRANE_BUILDERS)


def test_recipes_hold_valid_weights_probabilities_and_ranges():
    probabilities = [f.name for f in dataclasses.fields(SceneRecipe) if f.name.endswith("_probability")]
    assert probabilities  # the check below checks something
    for scene, recipe in RECIPES.items():
        assert all(isinstance(k, MembraneKind) and w >= 0 for k, w in recipe.membrane_weights.items()), scene
        assert sum(recipe.membrane_weights.values()) > 0, scene
        assert all(0.0 <= getattr(recipe, name) <= 1.0 for name in probabilities), scene
        for name in ("granule_count", "protein_scale", "crowding_scale"):
            low, high = getattr(recipe, name)
            assert 0 <= low <= high, (scene, name)
        assert 0.0 <= recipe.max_slab_tilt <= 90.0


def test_in_vitro_ice_is_flat_clean_and_has_gold_and_lamellae_are_milled_cells():
    in_vitro, lamella = RECIPES[SceneType.IN_VITRO], RECIPES[SceneType.LAMELLA]
    assert in_vitro.gold and not in_vitro.curtaining and in_vitro.max_slab_tilt <= 5.0
    assert in_vitro.granule_count == (0, 0) and MembraneKind.MITOCHONDRION not in in_vitro.membrane_weights
    assert lamella.curtaining and not lamella.gold and lamella.carbon_probability == 0.0
    assert lamella.ribosome_probability == 1.0 and lamella.membrane_weights[MembraneKind.MITOCHONDRION] > 0
