"""Per-case segmentation metrics of the paper (Dice, IoU, HD95, ASD, precision, recall, F1) plus clDice and
topology (Betti-number errors, false islands; ``topology.py``).

Everything works on one binary mask pair with its voxel spacing, so the same code scores a 3D volume or a
2D slice. Conventions follow MONAI's ``compute_hausdorff_distance`` / ``compute_average_surface_distance``
(checked against them in the tests) so numbers are comparable with papers that used MONAI or medpy:

* surface = mask XOR its binary erosion with a face-connected structuring element (scipy's default, the
  one MONAI and medpy use); voxels outside the image count as background;
* distances are Euclidean between voxel centres in the spacing's unit (mm; px for images without physical
  spacing), nearest surface voxel found
  with a k-d tree (scipy ``cKDTree``; a dense distance transform with anisotropic sampling is ~25x slower
  on a 512x512x200 vessel volume);
* HD95 = max of the two directed 95th percentiles (MONAI's symmetric rule; medpy instead takes the
  95th percentile of the pooled distances);
* ASD = mean of both directed distance sets pooled (average symmetric surface distance, ASSD);
* clDice = harmonic mean of topology precision |S(P) & R| / |S(P)| and sensitivity |S(R) & P| / |S(R)|,
  skeletons S from ``skimage.morphology.skeletonize`` in voxel space on (z, y, x) arrays (3D thinning depends
  on the axis order), a mask whose skeleton is empty being its own skeleton;
* both masks empty: overlap scores and clDice 1, distances 0; exactly one empty: overlap scores and clDice
  0, distances NaN (undefined; counted and left out of means by the summaries). Topology counts are always
  defined (an empty mask has Betti numbers 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_medsam_fusion.evaluation.kernels.skeletons import centerline_dice
from nnunet_medsam_fusion.evaluation.kernels.surface import crop_to_union, surface_distance_metrics
from nnunet_medsam_fusion.evaluation.kernels.topology import FAR_ISLAND_DISTANCE, topology_metrics

OVERLAP_METRICS = ("dice", "iou", "precision", "recall", "f1", "cldice")
DISTANCE_METRICS = ("hd95", "asd")
TOPOLOGY_METRICS = ("betti0_error", "betti1_error", "false_islands", "false_island_voxels")
METRICS = ("dice", "iou", "hd95", "asd", "precision", "recall", "f1", "cldice") + TOPOLOGY_METRICS
TOPOLOGY_COUNTS = ("pred_betti0", "ref_betti0", "pred_betti1", "ref_betti1")

STATUS_OK = "ok"
STATUS_BOTH_EMPTY = "both empty"
STATUS_EMPTY_PREDICTION = "empty prediction"
STATUS_EMPTY_REFERENCE = "empty reference"

CONVENTIONS = {
    "volume": "metrics per case on the whole volume (per-slice mode: per 2D slice along the first array "
              "axis, i.e. z of the image)",
    "spacing": "voxel spacing read from each file; distances in mm, or in px for 2D image formats without "
               "physical spacing (.png, .bmp, .tif: SimpleITK reports spacing 1); prediction and reference must "
               "share geometry (spacing within 1e-4 relative, origin within 1% of the smallest voxel side, "
               "direction cosines within 1e-3)",
    "surface": "mask XOR binary_erosion(mask) with a face-connected structure (6-neighbourhood in 3D, "
               "4 in 2D); outside the image counts as background",
    "distance": "Euclidean distance between voxel centres scaled by spacing, to the nearest surface voxel "
                "of the other mask (scipy cKDTree)",
    "hd95": "max of the two directed 95th percentiles of surface distances (MONAI's symmetric "
            "compute_hausdorff_distance(percentile=95); medpy pools both sets instead)",
    "asd": "mean of both directed surface-distance sets pooled (ASSD; MONAI symmetric=True)",
    "overlap": "dice=2TP/(2TP+FP+FN), iou=TP/(TP+FP+FN), precision=TP/(TP+FP), recall=TP/(TP+FN), "
               "f1=2PR/(P+R) (equals Dice for a binary mask)",
    "cldice": "2*Tprec*Tsens/(Tprec+Tsens), Tprec=|skel(P)&R|/|skel(P)|, Tsens=|skel(R)&P|/|skel(R)|, "
              "skimage.morphology.skeletonize in voxel space on (z, y, x) arrays (3D thinning depends on the axis "
              "order); a mask whose skeleton is empty is its own skeleton",
    "betti": "betti0_error = |b0(P) - b0(R)|, betti1_error = |b1(P) - b1(R)|; b0 = 26-connected foreground "
             "components (8 in 2D); b2 = 6-connected background components not touching the image border; "
             "b1 = b0 + b2 - Euler characteristic (skimage.measure.euler_number, 26-connectivity; 2D: b1 = b0 - "
             "Euler, 8-connectivity); per label",
    "false_islands": f"predicted 26-connected (8 in 2D) components with no voxel within {FAR_ISLAND_DISTANCE:g} "
                     "(mm, or px) of any reference voxel: their number and their voxel count "
                     "(false_island_voxels); with an empty reference every predicted component counts",
    "both_empty": "dice/iou/precision/recall/f1/cldice = 1, hd95/asd = 0, topology counts 0",
    "one_empty": "dice/iou/precision/recall/f1/cldice = 0, hd95/asd = NaN (undefined: written as null, "
                 "counted as n_undefined and excluded from means)",
    "summary": "mean and population standard deviation (ddof=0) over the defined values",
}


def _check_pair(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}; "
                         "resample the prediction onto the reference grid first")
    if len(spacing) != ref.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} entries for a {ref.ndim}D mask; "
                         "give one spacing per array axis")


def binary_metrics(pred: np.ndarray, ref: np.ndarray,
                   spacing: Sequence[float]) -> dict[str, float | int | str]:
    """All paper metrics plus clDice for one binary mask pair (arrays in the same axis order as ``spacing``).

    Returns the metrics, the voxel counts (tp, fp, fn, pred_voxels, ref_voxels), both masks' Betti numbers
    b0/b1 and a ``status`` naming the empty-mask rule that applied ("ok", "both empty", "empty prediction",
    "empty reference").
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    _check_pair(pred, ref, spacing)
    tp = int(np.count_nonzero(pred & ref))
    pred_voxels, ref_voxels = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    counts = {"tp": tp, "fp": pred_voxels - tp, "fn": ref_voxels - tp,
              "pred_voxels": pred_voxels, "ref_voxels": ref_voxels}
    pred_box, ref_box = crop_to_union(pred, ref)
    counts.update(topology_metrics(pred_box, ref_box, spacing))
    if pred_voxels == 0 and ref_voxels == 0:
        return {"status": STATUS_BOTH_EMPTY, **dict.fromkeys(OVERLAP_METRICS, 1.0),
                "hd95": 0.0, "asd": 0.0, **counts}
    if pred_voxels == 0 or ref_voxels == 0:
        status = STATUS_EMPTY_PREDICTION if pred_voxels == 0 else STATUS_EMPTY_REFERENCE
        return {"status": status, **dict.fromkeys(OVERLAP_METRICS, 0.0),
                "hd95": float("nan"), "asd": float("nan"), **counts}

    fp, fn = counts["fp"], counts["fn"]
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "status": STATUS_OK,
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "cldice": centerline_dice(pred_box, ref_box),
        **surface_distance_metrics(pred_box, ref_box, spacing),
        **counts,
    }
