"""What the training loss is made of: term weights, Surface-Dice, deep-supervision weights.

Kept free of torch so that the command line can show these defaults without loading it.
The defaults are MemBrain-seg 0.0.10's training recipe (``networks/unet.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bilayer.checks import flag, known_keys, number
from bilayer.errors import ConfigError

__all__ = ["DEEP_SUPERVISION_WEIGHTS", "LossConfig"]

#: MemBrain-seg's weights of the full-resolution output and of each lower deep-supervision
#: head, in order. They are truncated to the number of heads and not normalised.
DEEP_SUPERVISION_WEIGHTS: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125, 0.0675)


@dataclass(frozen=True)
class LossConfig:
    """The training loss; the defaults are MemBrain-seg's.

    For one output head, the loss of a batch is
    ``(mean_b(dice_weight * Dice_b + bce_weight * BCE_b) + w * mean_b(SurfDiceLoss_b)) / (1 + w)``
    with ``w = surface_dice_weight`` when ``surface_dice`` is on (else the Surface-Dice term
    and ``w`` are left out). Over the heads it is ``sum_i deep_supervision_weights[i] *
    loss_i``, labels brought to each head's size by nearest-neighbour down-sampling.

    Attributes:
        bce_weight: weight of the masked binary cross-entropy (MemBrain-seg's ``lambda_ce``).
        dice_weight: weight of the masked soft Dice loss (``lambda_dice``).
        dice_smooth: additive smoothing of the Dice ratio (MONAI's 1e-5).
        surface_dice: add the Surface-Dice loss (MemBrain-seg's ``use_surf_dice``, off by default).
        surface_dice_weight: its weight ``w`` relative to Dice + BCE.
        skeleton_iterations: erosion steps of the soft skeletons (5); a membrane up to
            ``2 * iterations + 2`` voxels thick gets a skeleton.
        surface_dice_smooth: additive smoothing of T_prec and T_sens (3).
        deep_supervision: use the lower-resolution heads; off, only the full-resolution
            output counts (MemBrain-seg's weights ``1, 0, 0, 0, 0``).
        deep_supervision_weights: weight of each output, full resolution first; there must
            be at least as many as the network has outputs.
    """

    bce_weight: float = 1.0
    dice_weight: float = 1.0
    dice_smooth: float = 1e-5
    surface_dice: bool = False
    surface_dice_weight: float = 1.0
    skeleton_iterations: int = 5
    surface_dice_smooth: float = 3.0
    deep_supervision: bool = True
    deep_supervision_weights: tuple[float, ...] = DEEP_SUPERVISION_WEIGHTS

    def __post_init__(self) -> None:
        for name in ("bce_weight", "dice_weight", "surface_dice_weight"):
            object.__setattr__(self, name, number(f"loss {name}", getattr(self, name), 0.0))
        for name in ("dice_smooth", "surface_dice_smooth"):
            object.__setattr__(self, name, number(f"loss {name}", getattr(self, name), 0.0, open_low=True))
        for name in ("surface_dice", "deep_supervision"):
            object.__setattr__(self, name, flag(f"loss {name}", getattr(self, name)))
        object.__setattr__(self, "skeleton_iterations",
                           number("loss skeleton_iterations", self.skeleton_iterations, 0, integer=True))
        self._check_deep_supervision_weights()
        if self.bce_weight + self.dice_weight == 0 and not (self.surface_dice and self.surface_dice_weight > 0):
            raise ConfigError("loss bce_weight, dice_weight and surface_dice_weight are all 0; give one a weight > 0")

    def _check_deep_supervision_weights(self) -> None:
        weights = self.deep_supervision_weights
        if isinstance(weights, (str, bytes, Mapping)) or not hasattr(weights, "__iter__"):
            raise ConfigError(f"loss deep_supervision_weights={weights!r} must be a list of numbers >= 0")
        checked = tuple(number(f"loss deep_supervision_weights[{i}]", w, 0.0) for i, w in enumerate(weights))
        if not checked or checked[0] == 0:
            raise ConfigError(
                f"loss deep_supervision_weights={list(checked)} must start with the full-resolution "
                f"output's weight > 0, e.g. {list(DEEP_SUPERVISION_WEIGHTS)}"
            )
        object.__setattr__(self, "deep_supervision_weights", checked)

    def head_weights(self, heads: int) -> tuple[float, ...]:
        """Weights of a network's ``heads`` outputs (full resolution first), as used by the loss.

        Raises:
            ConfigError: more outputs than ``deep_supervision_weights``.
        """
        if not self.deep_supervision:
            return (1.0,) + (0.0,) * (heads - 1)
        if heads > len(self.deep_supervision_weights):
            raise ConfigError(
                f"the network returned {heads} outputs but loss deep_supervision_weights has only "
                f"{len(self.deep_supervision_weights)}; give one weight per output"
            )
        return self.deep_supervision_weights[:heads]

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-able values."""
        data = asdict(self)
        data["deep_supervision_weights"] = list(self.deep_supervision_weights)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossConfig:
        """Read a configuration written by :meth:`to_dict`; missing keys take the defaults.

        Raises:
            ConfigError: ``data`` is not a mapping, a key is unknown or a value is invalid.
        """
        return cls(**known_keys(cls, data, "loss configuration"))

