"""Surface-Dice loss from a differentiable soft skeleton (MemBrain v2, eq. 1-2).

The soft skeleton is clDice's (Shit et al. 2021, "clDice - a novel topology-preserving loss
function for tubular structure segmentation", CVPR): grey-value erosion is a 3x3x3 min-pool,
dilation a 3x3x3 max-pool, and each erosion step keeps what an opening (erosion then dilation)
removes. On a membrane the opening removes the middle sheet once the erosions have thinned it
to one or two voxels, so the skeleton is a surface. Pools see only voxels inside the volume,
so the volume border neither erodes nor dilates.

Surface-Dice compares skeletons with masks: precision ``T_prec = |S(P) & G| / |S(P)|`` (how
much of the predicted skeleton lies on the labelled membrane), sensitivity ``T_sens =
|S(G) & P| / |S(G)|`` (how much of the label's skeleton is predicted), and their harmonic
mean. As MemBrain-seg 0.0.10 (``training/surface_dice.py``) does, the label's skeleton is
taken from the membrane mask smoothed by a normalised 15-voxel Gaussian (sigma 2 voxels, zero
padding) times 1.5, which makes it continuous instead of patchy, and both ratios carry an
additive smoothing constant.

One change from MemBrain-seg: the predicted probabilities are set to 0 at voxels labelled 2
before skeletonising (MemBrain-seg only zeroes the skeleton there). The prediction is then
read like the label, whose skeleton already treats ignored voxels as background, and what
the network predicts under the ignore label changes neither the loss nor its gradient. The
two differ only within ``iterations + 2`` voxels of ignored voxels predicted as membrane.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bilayer.checks import number
from bilayer.errors import ConfigError
from bilayer.losses._tensors import check_pair, float32_math, membrane_voxels, per_sample_sum, valid_voxels

__all__ = [
    "SKELETON_ITERATIONS",
    "SURFACE_DICE_SMOOTH",
    "label_skeleton",
    "soft_skeleton",
    "soft_surface_dice",
    "surface_dice_loss",
]

#: Erosion steps of the soft skeleton in MemBrain-seg's loss and training metric.
SKELETON_ITERATIONS = 5
#: Additive smoothing of T_prec and T_sens in MemBrain-seg's loss (its training metric uses 1).
SURFACE_DICE_SMOOTH = 3.0

_LABEL_SIGMA = 2.0  # voxels: Gaussian smoothing of the label before its skeleton
_LABEL_RADIUS = 7  # voxels: MemBrain-seg's 15-voxel kernel
_LABEL_GAIN = 1.5  # MemBrain-seg's factor on the smoothed label
# The 3³ cube as three 1-D max-pools; max_pool3d pads with -inf, so the border is neutral.
_AXIS_POOLS = (((3, 1, 1), (1, 0, 0)), ((1, 3, 1), (0, 1, 0)), ((1, 1, 3), (0, 0, 1)))


def soft_skeleton(x: torch.Tensor, iterations: int = SKELETON_ITERATIONS) -> torch.Tensor:
    """Differentiable skeleton of soft masks (B, C, z, y, x) with values in [0, 1].

    Each step ``k = 0..iterations`` takes ``x_k`` (``x`` eroded ``k`` times) and adds to the
    skeleton ``delta_k = relu(x_k - open(x_k))`` where it is not yet set (``skeleton +=
    relu(delta_k - skeleton * delta_k)``). A binary sheet of thickness ``t`` voxels becomes
    its middle one (odd ``t``) or two (even ``t``) planes once ``iterations >= (t - 1) // 2``;
    a sheet thicker than ``2 * iterations + 2`` voxels gets no skeleton.

    Args:
        x: soft masks, float.
        iterations: erosion steps, >= 0; MemBrain-seg uses 5.

    Returns:
        The soft skeleton, same shape and dtype as ``x``, values in [0, 1] when ``x`` is.

    Raises:
        ConfigError: ``x`` is not 5-D or ``iterations`` is not a whole number >= 0.
    """
    iterations = number("skeleton iterations", iterations, 0, integer=True)
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        raise ConfigError(f"soft_skeleton needs a 5-D (B, C, z, y, x) tensor, got {getattr(x, 'shape', x)!r}")
    eroded = _erode(x)
    skeleton = F.relu(x - _dilate(eroded))
    for _ in range(iterations):
        x, eroded = eroded, _erode(eroded)
        delta = F.relu(x - _dilate(eroded))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


def label_skeleton(labels: torch.Tensor, iterations: int = SKELETON_ITERATIONS) -> torch.Tensor:
    """Soft skeleton of the membrane voxels (label 1) of ``labels``, as MemBrain-seg makes it.

    The membrane mask is smoothed by a normalised Gaussian (sigma 2 voxels, 15 voxels wide,
    zero padding), multiplied by 1.5, then skeletonised by :func:`soft_skeleton`. Ignored
    voxels count as background.

    Args:
        labels: (B, C, z, y, x), 0 background, 1 membrane, 2 ignore.
        iterations: erosion steps of the soft skeleton.

    Returns:
        (B, C, z, y, x) float32 skeleton, without gradient.
    """
    with torch.no_grad():
        smoothed = _gaussian(membrane_voxels(labels), _LABEL_SIGMA, _LABEL_RADIUS) * _LABEL_GAIN
        return soft_skeleton(smoothed, iterations)


def soft_surface_dice(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    iterations: int = SKELETON_ITERATIONS,
    smooth: float = SURFACE_DICE_SMOOTH,
) -> torch.Tensor:
    """Soft Surface-Dice per sample: ``2 T_prec T_sens / (T_prec + T_sens)`` (paper eq. 1-2).

    With ``p`` the sigmoid of the logits and ``g`` the membrane mask, both 0 at ignored voxels,
    ``T_prec = (sum(S(p) g) + s) / (sum(S(p)) + s)`` and ``T_sens = (sum(S_g p) + s) /
    (sum(S_g) + s)``, where ``S`` is :func:`soft_skeleton` and ``S_g`` is
    :func:`label_skeleton`, both zeroed at ignored voxels. See the module docstring for the
    one difference from MemBrain-seg.

    Args:
        logits: network outputs (B, C, z, y, x), any float dtype (computed in float32).
        labels: (B, C, z, y, x), 0 background, 1 membrane, 2 ignore.
        iterations: erosion steps of both soft skeletons (MemBrain-seg: 5).
        smooth: ``s`` above, > 0 (MemBrain-seg: 3 in its loss, 1 in its training metric).

    Returns:
        (B,) float32 scores in [0, 1]; 1 for a sample without membrane nor prediction.

    Raises:
        ConfigError: bad shapes, ``iterations`` or ``smooth``.
    """
    logits = check_pair(logits, labels)
    iterations = number("skeleton iterations", iterations, 0, integer=True)
    smooth = number("Surface-Dice smooth", smooth, 0.0, open_low=True)
    with float32_math(logits.device):
        valid = valid_voxels(labels)
        probabilities = torch.sigmoid(logits) * valid
        predicted = soft_skeleton(probabilities, iterations) * valid
        labelled = label_skeleton(labels, iterations) * valid
        precision = (per_sample_sum(predicted * membrane_voxels(labels)) + smooth) / (
            per_sample_sum(predicted) + smooth
        )
        sensitivity = (per_sample_sum(labelled * probabilities) + smooth) / (per_sample_sum(labelled) + smooth)
        return 2.0 * precision * sensitivity / (precision + sensitivity)


def surface_dice_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    iterations: int = SKELETON_ITERATIONS,
    smooth: float = SURFACE_DICE_SMOOTH,
) -> torch.Tensor:
    """``1 - soft_surface_dice(logits, labels)`` per sample: MemBrain-seg's
    ``IgnoreLabelSurfaceDiceLoss`` (with the change in the module docstring).

    Returns:
        (B,) float32 losses in [0, 1].
    """
    return 1.0 - soft_surface_dice(logits, labels, iterations=iterations, smooth=smooth)


def _erode(x: torch.Tensor) -> torch.Tensor:
    return -_dilate(-x)


def _dilate(x: torch.Tensor) -> torch.Tensor:
    """Max over the 3³ cube around each voxel, as three 1-D maxima (the same values; half the
    time of a cubic max-pool, forward and backward, on a CPU)."""
    for kernel, padding in _AXIS_POOLS:
        x = F.max_pool3d(x, kernel, 1, padding)
    return x


def _gaussian(x: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """``x`` (B, C, z, y, x) convolved with a normalised Gaussian, zero padding, axis by axis.

    A normalised 3-D Gaussian is the product of three normalised 1-D ones, so three 1-D
    passes give MemBrain-seg's (2r+1)^3 convolution at a fraction of its cost.
    """
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    batch, channels, *spatial = x.shape
    out = x.reshape(batch * channels, 1, *spatial)
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = 2 * radius + 1
        padding = [0, 0, 0]
        padding[axis] = radius
        out = F.conv3d(out, kernel.reshape(shape), padding=tuple(padding))
    return out.reshape(x.shape)

