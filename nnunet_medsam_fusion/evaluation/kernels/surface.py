"""Surface distances between two binary masks: 6-neighbour surfaces, nearest-surface distances by k-d tree.

Surface = mask XOR its face-connected binary erosion (MONAI's and medpy's default); distances are Euclidean
between voxel centres scaled by the spacing; HD95 = max of the two directed 95th percentiles (MONAI's symmetric
rule), ASD = mean of both directed sets pooled (ASSD).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

HD_PERCENTILE = 95.0


def crop_to_union(pred: np.ndarray, ref: np.ndarray, margin: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the bounding box of ``pred | ref`` plus a margin, so large volumes score fast.

    Cropping does not change any metric: everything outside the box is background in both masks.
    """
    union = pred | ref
    if not union.any():
        return pred, ref
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(int(hits[0]) - margin, 0), int(hits[-1]) + margin + 1))
    box = tuple(box)
    return pred[box], ref[box]


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a binary mask: the mask minus its face-connected erosion."""
    return mask ^ ndimage.binary_erosion(mask)


def directed_surface_distances(from_surface: np.ndarray, to_surface: np.ndarray,
                               spacing: Sequence[float]) -> np.ndarray:
    """Distance in mm from every voxel of ``from_surface`` to the nearest voxel of ``to_surface``."""
    scale = np.asarray(spacing, dtype=np.float64)
    target = np.argwhere(to_surface) * scale
    source = np.argwhere(from_surface) * scale
    return cKDTree(target, leafsize=32).query(source, k=1)[0]


def surface_distance_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """HD95 and ASD (mm) of two non-empty masks."""
    pred_surface, ref_surface = surface_voxels(pred), surface_voxels(ref)
    pred_to_ref = directed_surface_distances(pred_surface, ref_surface, spacing)
    ref_to_pred = directed_surface_distances(ref_surface, pred_surface, spacing)
    hd95 = max(np.percentile(pred_to_ref, HD_PERCENTILE), np.percentile(ref_to_pred, HD_PERCENTILE))
    asd = np.concatenate([pred_to_ref, ref_to_pred]).mean()
    return {"hd95": float(hd95), "asd": float(asd)}
