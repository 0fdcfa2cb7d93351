"""Centrelines and clDice (Shit et al., CVPR 2021) of binary masks, skeletons in voxel space.

``skimage.morphology.skeletonize`` thins 3D masks in the array's axis order, so the same mask skeletonised as
(z, y, x) or (x, y, z) can differ slightly; callers pass the order their convention names.
"""

from __future__ import annotations

import numpy as np
from skimage.morphology import skeletonize


def centreline(mask: np.ndarray) -> np.ndarray:
    """``skimage.morphology.skeletonize`` of a mask, or the mask itself when thinning leaves nothing.

    (3D thinning removes some one- or two-voxel-thin structures entirely; their voxels are their own centreline.)
    """
    skeleton = skeletonize(mask)
    return skeleton if skeleton.any() else mask


def centerline_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """clDice (Shit et al., CVPR 2021) of two non-empty masks: connectivity-aware overlap for vessels."""
    pred_skeleton, ref_skeleton = centreline(pred), centreline(ref)
    topology_precision = np.count_nonzero(pred_skeleton & ref) / np.count_nonzero(pred_skeleton)
    topology_sensitivity = np.count_nonzero(ref_skeleton & pred) / np.count_nonzero(ref_skeleton)
    if topology_precision + topology_sensitivity == 0:
        return 0.0
    return float(2 * topology_precision * topology_sensitivity / (topology_precision + topology_sensitivity))
