"""The embedded default model: shipped in the package, small, and finds membranes out of the box.

The scenes here come from the generator's held-out settings (configs/default_synth.yaml,
``heldout``: wider voxel sizes, SNR, defocus and lamella tilt than training) with seeds far
from the training set's, so they test the model, not its memory of the training data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import bilayer
from bilayer.data.synthetic import SynthConfig, generate_tomogram
from bilayer.errors import InputFileError
from bilayer.infer import InferenceConfig
from bilayer.metrics import segmentation_scores
from bilayer.model import default_model_path, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
#: Unseen seeds: training used 0-399, 1000000-1000015, 2000000-2000239, 3000000-3000207 and
#: 4000008-4000015 (v4 also 11000000-11000259 and 12000000-12000007); the model card's held-out
#: sets 1500000-1500023, 6000000-6000023, 8000000-8000015 and 13000000-13000015.
SEEDS = (900002, 900003, 900004)

try:
    DEFAULT = default_model_path()
except InputFileError:  # an installation without the weights: the CLI test covers the message
    DEFAULT = None
pytestmark = pytest.mark.skipif(DEFAULT is None, reason="this installation has no default model")


def _heldout(seed: int, **changes):
    settings = yaml.safe_load((ROOT / "configs" / "default_synth.yaml").read_text())["heldout"]
    settings.update({"shape": [64, 96, 96], **changes})
    return generate_tomogram(SynthConfig.from_dict(settings), seed=seed)


def test_it_is_small_half_precision_and_at_10_angstrom():
    assert DEFAULT.stat().st_size <= 20 * 2**20
    info, state = read_checkpoint(DEFAULT)
    assert info.voxel_size == pytest.approx(10.0)
    assert {str(t.dtype) for t in state.values() if t.is_floating_point()} == {"torch.float16"}


@pytest.fixture(scope="module")
def predictor():
    from bilayer.infer import Predictor

    return Predictor.from_checkpoint(None, InferenceConfig(tta=False, window=96), "cpu")


def test_it_finds_the_membranes_of_unseen_synthetic_tomograms(predictor):
    """Mean Dice over three unseen scenes with membranes: v3 scores 0.60 (0.70, 0.30, 0.78), as did
    v2 (v1 about 0.5); a model that finds nothing 0 (docs/model_card.md has the full held-out figures)."""
    dice = []
    for seed in SEEDS:
        scene = _heldout(seed, empty_probability=0.0)
        result = bilayer.segment(scene.image, predictor, voxel_size=scene.voxel_size)
        dice.append(segmentation_scores(result.mask.data, scene.labels)["dice"])
    assert sum(dice) / len(dice) > 0.5, dice


def test_it_leaves_most_of_a_scene_without_membranes_empty(predictor):
    scene = _heldout(SEEDS[0], empty_probability=1.0)
    assert not (scene.labels == 1).any()
    result = bilayer.segment(scene.image, predictor, voxel_size=scene.voxel_size)
    # v3 marks 0.7 % of this scene, v2 0.3 % (v1 7-12 %: particles and filament crossings; see the model
    # card's limits): a bound that catches a model gone wrong, not a quality target.
    assert result.mask.data.mean() < 0.05


def test_it_leaves_real_microtubules_in_noise_unmarked(real_microtubules):
    """A real tomogram without membranes, 36 sections thin: every 160-voxel window reaches far
    past it. Mirror padding keeps the windows tomogram-like and v3 marks 5 % (v2 3 %: the
    microtubule walls and a few noise specks); MemBrain-seg's zero padding made v2 mark 64 % of
    the noise (v3 22 %), which a cryo-ET user would see as a segmentation of nothing."""
    from bilayer.infer import Predictor

    predictor = Predictor.from_checkpoint(None, InferenceConfig(tta=False), "cpu")  # the default window and padding
    result = bilayer.segment(real_microtubules, predictor)
    assert result.mask.data.mean() < 0.10


def _foreign_phantoms():
    """The hand-written phantoms of tests/foreign_phantoms.py (imported from the repository root)."""
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import foreign_phantoms

    return foreign_phantoms


@pytest.mark.parametrize(("family", "voxel_size"), [("sphere", 14.0), ("virion", 14.0), ("tube", 14.0)])
def test_it_finds_single_band_membranes_drawn_by_another_hand(predictor, family, voxel_size):
    """Phantoms written by hand, not by the generator: membranes drawn as one dark band about 4 nm
    wide (no resolved leaflets, no CTF fringes) in white noise, a virion with spikes and a dense
    core. v3, which had learnt the generator's resolved bilayers, found almost none (Dice 0.00,
    0.23 and 0.03 on these three); v4, trained on drawn looks, finds them (Dice 0.78, 0.85 and
    0.85; the model card has the whole foreign set)."""
    phantom = _foreign_phantoms().make_phantom(family, "single", voxel_size, "mid", seed=1)
    result = bilayer.segment(phantom.image, predictor, voxel_size=voxel_size)
    scores = segmentation_scores(result.mask.data, phantom.labels)
    assert scores["dice"] > 0.6 and scores["surface_dice"] > 0.6, scores

