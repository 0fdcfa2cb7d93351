"""Topology of a segmentation: Betti numbers and false islands far from the reference.

Vessel trees are judged by connectivity as much as by overlap (clDice, TopCoW). Conventions (ours, following
the usual digital-topology pairing so that foreground and background connectivities are dual):

* b0 = foreground components, 26-connected in 3D (8 in 2D);
* b2 = cavities: 6-connected background components that do not touch the image border (0 in 2D);
* b1 = tunnels/loops: b0 + b2 - Euler characteristic (3D, 26-connectivity, ``skimage.measure.euler_number``);
  in 2D b1 = holes = b0 - Euler characteristic (8-connectivity);
* a false island is a predicted foreground component (26/8-connected) with no voxel within
  ``FAR_ISLAND_DISTANCE`` (in the spacing's unit) of any reference voxel: a spurious blob away from the tree,
  the kind of error that drives HD95 up while barely touching Dice.

Betti numbers are computed on the mask's bounding box with a one-voxel background margin: they depend only on
the foreground set (outside the image counts as background, as ``euler_number`` pads), so this is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import euler_number

FAR_ISLAND_DISTANCE = 5.0  # mm (px for images without physical spacing); see docs/evaluation.md


def _closed_box(mask: np.ndarray) -> np.ndarray:
    """The mask's bounding box with one background voxel all round (zero padding only where the image ends)."""
    window, pad = [], []
    for axis, size in enumerate(mask.shape):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        start, stop = int(hits[0]) - 1, int(hits[-1]) + 2
        window.append(slice(max(start, 0), min(stop, size)))
        pad.append((int(start < 0), int(stop > size)))
    crop = mask[tuple(window)]
    return np.pad(crop, pad) if any(before or after for before, after in pad) else crop


def foreground_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels of the fully connected (26 in 3D, 8 in 2D) foreground components and their number."""
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    labels, count = ndimage.label(mask, structure=structure)
    return labels, int(count)


def betti_numbers(mask: np.ndarray, b0: int | None = None) -> tuple[int, int, int]:
    """(b0, b1, b2) of a binary 2D or 3D mask with the conventions of this module.

    ``b0`` may be passed when the caller has already counted the mask's components (saves a labelling pass).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim not in (2, 3):
        raise ValueError(f"Betti numbers need a 2D or 3D mask, got {mask.ndim} dimensions")
    if not mask.any():
        return 0, 0, 0
    mask = _closed_box(mask)  # the background margin joins all outside background into one component
    if b0 is None:
        b0 = foreground_components(mask)[1]
    euler = int(euler_number(mask, connectivity=mask.ndim))
    if mask.ndim == 2:
        return b0, b0 - euler, 0
    _, background = ndimage.label(~mask, structure=ndimage.generate_binary_structure(3, 1))
    b2 = int(background) - 1  # every background component except the outside one is a cavity
    return b0, b0 + b2 - euler, b2


def _far_components(labels: np.ndarray, count: int, ref: np.ndarray, spacing: Sequence[float],
                    distance: float) -> dict[int, int]:
    """Label -> voxel count of the components with no voxel within ``distance`` of ``ref``.

    Each component that does not overlap the reference is checked against the reference voxels in its bounding
    box widened by ``distance``, so the cost follows the candidates, not the volume.
    """
    if count == 0:
        return {}
    near = np.zeros(count + 1, dtype=bool)
    near[np.unique(labels[ref])] = True  # components overlapping the reference are at distance 0
    if near[1:].all():
        return {}
    scale = np.asarray(spacing, dtype=np.float64)
    reach = np.ceil(distance / scale).astype(int)
    limit = np.nextafter(distance, np.inf)  # the k-d tree's bound is exclusive; "within" includes the distance
    far = {}
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or near[index]:
            continue
        window = tuple(slice(max(s.start - r, 0), s.stop + r) for s, r in zip(box, reach, strict=True))
        component = np.argwhere(labels[window] == index)
        near_ref = np.argwhere(ref[window])
        if near_ref.size:
            gaps = cKDTree(near_ref * scale).query(component * scale, k=1, distance_upper_bound=limit)[0]
            if np.any(gaps <= distance):
                continue
        far[index] = len(component)
    return far


def false_islands(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                  distance: float = FAR_ISLAND_DISTANCE) -> tuple[np.ndarray, int]:
    """Mask of the predicted components with no voxel within ``distance`` of ``ref``, and how many there are.

    With an empty reference every predicted component is a false island.
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    labels, count = foreground_components(pred)
    far = _far_components(labels, count, ref, spacing, distance)
    return np.isin(labels, list(far)), len(far)


def topology_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                     distance: float = FAR_ISLAND_DISTANCE) -> dict[str, int]:
    """Betti numbers of both masks, their absolute differences, and the false islands (count and voxels)."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    labels, count = foreground_components(pred)
    far = _far_components(labels, count, ref, spacing, distance)
    pred_betti, ref_betti = betti_numbers(pred, b0=count), betti_numbers(ref)
    return {
        "betti0_error": abs(pred_betti[0] - ref_betti[0]),
        "betti1_error": abs(pred_betti[1] - ref_betti[1]),
        "false_islands": len(far),
        "false_island_voxels": sum(far.values()),
        "pred_betti0": pred_betti[0], "pred_betti1": pred_betti[1],
        "ref_betti0": ref_betti[0], "ref_betti1": ref_betti[1],
    }
