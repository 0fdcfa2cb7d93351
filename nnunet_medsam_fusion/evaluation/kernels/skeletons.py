"""Centrelines and clDice (Shit et al., CVPR 2021) of binary masks, and per-label skeletons of a sparse label map.

``skimage.morphology.skeletonize`` thins 3D masks in the array's axis order, so the same mask skeletonised as
(z, y, x) or (x, y, z) can differ slightly; callers pass the order their convention names (``label_skeletons``
thins in (x, y, z) order, one 26-connected component at a time).
"""

from __future__ import annotations

import numpy as np
from skimage.morphology import skeletonize

from nnunet_medsam_fusion.evaluation.kernels.label_index import LabelIndex


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


def component_betti0(index: LabelIndex, components: np.ndarray) -> np.ndarray:
    """Number of components of every label value 0..255, given per-label component ids of ``index``'s voxels."""
    if not index.size:
        return np.zeros(256, dtype=np.int64)
    _, first = np.unique(components, return_index=True)
    return np.bincount(index.labels[first], minlength=256)


def label_skeletons(index: LabelIndex, components: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(padded flat indices, labels) of the skeleton voxels of every label's own mask.

    ``components``: per-label 26-connected component id of every voxel (``index.components(per_label=True)``).
    Each component is thinned (Lee's 3D thinning, skimage) on its bounding box with one background voxel around,
    in (x, y, z) array order: a voxel's deletion test sees only its 26 neighbours, which all lie in its own
    component's box, so this equals thinning each label's whole-volume mask in that order.
    """
    if not index.size:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=index.labels.dtype)
    order = np.argsort(components, kind="stable")
    starts = np.flatnonzero(np.diff(components[order], prepend=-1))
    found_flat, found_labels = [], []
    for members in np.split(order, starts[1:]):
        if len(members) == 1:  # a lone voxel is its own skeleton
            found_flat.append(index.flat[members])
            found_labels.append(index.labels[members])
            continue
        coords = index.coords[members]
        low = coords.min(axis=0)
        box = np.zeros(tuple(coords.max(axis=0) - low + 3), dtype=bool)
        box[tuple((coords - low + 1).T)] = True
        kept = np.argwhere(skeletonize(box.transpose(2, 1, 0)).transpose(2, 1, 0)) + low  # +1 pad -1 box margin
        found_flat.append(np.ravel_multi_index(tuple(kept.T), index.padded_shape))
        found_labels.append(np.full(len(kept), index.labels[members[0]], dtype=index.labels.dtype))
    return np.concatenate(found_flat), np.concatenate(found_labels)


def labels_at(index: LabelIndex, flat: np.ndarray) -> np.ndarray:
    """Label of ``index`` at each padded flat index (0 where it has background)."""
    if not index.size or not len(flat):
        return np.zeros(len(flat), dtype=index.labels.dtype)
    position = np.minimum(np.searchsorted(index.flat, flat), index.size - 1)
    return np.where(index.flat[position] == flat, index.labels[position], 0)
