"""Dice and Surface-Dice of a binary prediction against labels with an ignore label.

These are the scores of MemBrain-seg 0.0.10's benchmark (``benchmark/metrics.py`` and
``benchmark/compute_stats.py``, default "3D-NMS" skeletons), computed the same way so that
the numbers agree:

* voxels labelled 2 are left out: Dice counts ``tp``, ``fp`` and ``fn`` only where the
  label is 0 or 1, and both skeletons are cleared where it is 2;
* skeletons are :func:`bilayer.postprocess.skeletonize` (MemBrain-seg's tensor-voting
  non-maximum suppression) of the whole prediction and of the membrane voxels (label 1);
* Surface-Dice (MemBrain v2, eq. 1-2) is the harmonic mean of the skeleton precision
  ``T_prec = |S(P) & G| / |S(P)|`` and sensitivity ``T_sens = |S(G) & P| / |S(G)|``;
* every ratio ``a / b`` is ``a / (b + 1e-6)`` and the harmonic mean ``2 x y / (x + y + 1e-6)``,
  so an empty prediction scores 0, also against an empty label, and a perfect one scores
  just under 1 (1 - 5e-7, or down to 1 - 1.5e-6 for a mask of a few voxels);
* Dice is computed in float64 and Surface-Dice in float32, as MemBrain-seg does with
  numpy 2 (its skeletons are float32 arrays, and numpy 2 keeps float32 when adding 1e-6;
  numpy 1 promoted to float64 there), so both agree with it to the last bit.

Counts add up (:class:`DiceCounts`, :class:`SurfaceDiceCounts`), which gives MemBrain-seg's
"global" scores over a data set. This module needs only numpy until a skeleton is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bilayer.errors import ConfigError

__all__ = [
    "IGNORE_LABEL",
    "MEMBRANE_LABEL",
    "DiceCounts",
    "SurfaceDiceCounts",
    "dice",
    "dice_counts",
    "segmentation_scores",
    "surface_dice",
    "surface_dice_counts",
]

#: Label of membrane voxels.
MEMBRANE_LABEL = 1
#: Label of voxels that no loss or score looks at.
IGNORE_LABEL = 2

_EPS = 1e-6  # MemBrain-seg's benchmark constant, in every ratio and harmonic mean


def _ratio(part: float, whole: float, dtype: type = np.float64) -> float:
    return float(dtype(part) / (dtype(whole) + dtype(_EPS)))


def _harmonic(a: float, b: float, dtype: type = np.float64) -> float:
    a, b = dtype(a), dtype(b)
    return float(dtype(2.0) * (a * b) / (a + b + dtype(_EPS)))


@dataclass(frozen=True)
class DiceCounts:
    """Voxel counts of a prediction against labels, ignored voxels left out.

    Attributes:
        tp: predicted membrane voxels labelled 1.
        fp: predicted membrane voxels labelled 0.
        fn: voxels labelled 1 not predicted.
    """

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``: how much of the prediction is membrane (0 when nothing is predicted)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``: how much of the membrane is predicted (0 when nothing is labelled)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def dice(self) -> float:
        """Harmonic mean of precision and recall, MemBrain-seg's ``masked_dice``."""
        return _harmonic(self.precision, self.recall)

    def __add__(self, other: DiceCounts) -> DiceCounts:
        return DiceCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


@dataclass(frozen=True)
class SurfaceDiceCounts:
    """Skeleton counts of a prediction against labels, ignored voxels left out.

    Attributes:
        pred_hits: voxels of the prediction's skeleton labelled 1, ``|S(P) & G|``.
        pred_skeleton: voxels of the prediction's skeleton, ``|S(P)|``.
        label_hits: voxels of the label's skeleton that are predicted, ``|S(G) & P|``.
        label_skeleton: voxels of the label's skeleton, ``|S(G)|``.
    """

    pred_hits: int
    pred_skeleton: int
    label_hits: int
    label_skeleton: int

    @property
    def precision(self) -> float:
        """``T_prec``: how much of the predicted skeleton lies on labelled membrane."""
        return _ratio(self.pred_hits, self.pred_skeleton, np.float32)

    @property
    def sensitivity(self) -> float:
        """``T_sens``: how much of the label's skeleton is predicted."""
        return _ratio(self.label_hits, self.label_skeleton, np.float32)

    @property
    def surface_dice(self) -> float:
        """Harmonic mean of ``T_prec`` and ``T_sens``, MemBrain-seg's ``masked_surface_dice``."""
        return _harmonic(self.precision, self.sensitivity, np.float32)

    def __add__(self, other: SurfaceDiceCounts) -> SurfaceDiceCounts:
        return SurfaceDiceCounts(
            self.pred_hits + other.pred_hits,
            self.pred_skeleton + other.pred_skeleton,
            self.label_hits + other.label_hits,
            self.label_skeleton + other.label_skeleton,
        )


def dice_counts(pred: Any, labels: Any) -> DiceCounts:
    """Count true positives, false positives and false negatives outside the ignore label.

    Args:
        pred: binary prediction (bool, or 0 and 1), numpy array or CPU/GPU torch tensor.
        labels: labels of the same shape, 0 background, 1 membrane, 2 ignore.

    Raises:
        ConfigError: the shapes differ, ``pred`` is not binary, or a label is not 0, 1 or 2.
    """
    predicted, membrane, counted = _masks(pred, labels)
    return DiceCounts(
        tp=int(np.count_nonzero(predicted & membrane)),
        fp=int(np.count_nonzero(predicted & ~membrane & counted)),
        fn=int(np.count_nonzero(~predicted & membrane)),
    )


def dice(pred: Any, labels: Any) -> float:
    """Dice of a binary prediction against labels, voxels labelled 2 left out (0 if both empty).

    See :func:`dice_counts` for the arguments.
    """
    return dice_counts(pred, labels).dice


def surface_dice_counts(
    pred: Any,
    labels: Any,
    *,
    pred_skeleton: Any = None,
    label_skeleton: Any = None,
    device: str = "cpu",
) -> SurfaceDiceCounts:
    """Count the skeleton voxels behind Surface-Dice, ignored voxels left out.

    Args:
        pred: binary (z, y, x) prediction (bool, or 0 and 1), numpy array or torch tensor.
        labels: (z, y, x) labels, 0 background, 1 membrane, 2 ignore.
        pred_skeleton: skeleton of ``pred`` if already made; ``None``: made here.
        label_skeleton: skeleton of ``labels == 1`` if already made; ``None``: made here.
        device: torch device for making skeletons, e.g. ``"cuda"``.

    Raises:
        ConfigError: the arrays are not 3-D of one shape, ``pred`` is not binary, or a label
            is not 0, 1 or 2.
    """
    predicted, membrane, counted = _masks(pred, labels)
    if predicted.ndim != 3:
        raise ConfigError(f"Surface-Dice needs 3-D (z, y, x) masks, got shape {predicted.shape}")
    pred_skel = _skeleton(predicted, pred_skeleton, "pred_skeleton", device) & counted
    label_skel = _skeleton(membrane, label_skeleton, "label_skeleton", device) & counted
    return SurfaceDiceCounts(
        pred_hits=int(np.count_nonzero(pred_skel & membrane)),
        pred_skeleton=int(np.count_nonzero(pred_skel)),
        label_hits=int(np.count_nonzero(label_skel & predicted)),
        label_skeleton=int(np.count_nonzero(label_skel)),
    )


def surface_dice(pred: Any, labels: Any, *, device: str = "cpu") -> float:
    """Surface-Dice (MemBrain v2 eq. 1-2) of a binary (z, y, x) prediction against labels.

    Voxels labelled 2 are left out; an empty prediction scores 0. See
    :func:`surface_dice_counts` for the arguments.
    """
    return surface_dice_counts(pred, labels, device=device).surface_dice


def segmentation_scores(pred: Any, labels: Any, *, device: str = "cpu") -> dict[str, float]:
    """Every score of a binary (z, y, x) prediction against labels, ignored voxels left out.

    Returns:
        ``dice``, ``surface_dice``, voxel ``precision`` and ``recall``, and the skeleton
        ``skeleton_precision`` (T_prec) and ``skeleton_recall`` (T_sens), as floats.

    Raises:
        ConfigError: as :func:`surface_dice_counts`.
    """
    voxels = dice_counts(pred, labels)
    skeletons = surface_dice_counts(pred, labels, device=device)
    return {
        "dice": voxels.dice,
        "surface_dice": skeletons.surface_dice,
        "precision": voxels.precision,
        "recall": voxels.recall,
        "skeleton_precision": skeletons.precision,
        "skeleton_recall": skeletons.sensitivity,
    }


def _masks(pred: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean (prediction, membrane, counted) masks after checking shapes and values."""
    pred, labels = _as_array(pred, "pred"), _as_array(labels, "labels")
    if pred.shape != labels.shape:
        raise ConfigError(f"pred {pred.shape} and labels {labels.shape} must have the same shape")
    if pred.dtype != bool:
        if not np.all((pred == 0) | (pred == 1)):
            raise ConfigError(
                "pred must be a binary mask of 0 and 1 (or bool); threshold scores first, e.g. scores > 0"
            )
        pred = pred == 1
    membrane = labels == MEMBRANE_LABEL
    counted = labels != IGNORE_LABEL
    known = membrane | ~counted | (labels == 0)
    if not np.all(known):
        raise ConfigError(
            f"labels hold {labels[~known].flat[0]!r}; they must hold only 0 (background), {MEMBRANE_LABEL} "
            f"(membrane) and {IGNORE_LABEL} (ignore): map other classes to one of these first"
        )
    return pred, membrane, counted


def _as_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype != bool and not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"{name} must be a numeric or boolean array, got dtype {array.dtype}")
    return array


def _skeleton(mask: np.ndarray, given: Any, name: str, device: str) -> np.ndarray:
    if given is None:
        from bilayer.postprocess.skeleton import skeletonize  # loads torch: only when needed

        return skeletonize(mask, device=device)
    skeleton = _as_array(given, name)
    if skeleton.shape != mask.shape:
        raise ConfigError(f"{name} {skeleton.shape} must have the shape of the masks, {mask.shape}")
    return skeleton > 0
