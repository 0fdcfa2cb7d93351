"""The ``ours`` convention: the paper's metrics (Dice, IoU, HD95, ASD, precision, recall, F1) plus clDice and
topology (Betti-number errors, false islands; ``kernels/topology.py``), per case and label.

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_medsam_fusion.evaluation.conventions.base import Convention
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


def metric_unit(metric: str, unit: str = "mm") -> str:
    """The unit a table shows a metric in: % for overlaps, the distance unit for distances, else a count."""
    if metric in DISTANCE_METRICS:
        return unit
    return "count" if metric in TOPOLOGY_METRICS else "%"


def labels_from_dataset_json(dataset: Mapping) -> tuple[dict[str, tuple[int, ...]], int | None]:
    """Foreground labels (name -> label values, several for nnU-Net regions) and the ignore label value."""
    if "labels" not in dataset:
        raise ValueError("dataset.json has no 'labels' entry; it is not an nnU-Net v2 dataset.json")
    labels, ignore = {}, None
    for name, value in dataset["labels"].items():
        values = tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
        if name == "background":
            continue
        if name == "ignore":
            ignore = values[0]
            continue
        labels[name] = tuple(v for v in values if v != 0)
    if not labels:
        raise ValueError("dataset.json lists no foreground label; add one to 'labels'")
    return labels, ignore


def _check_known_values(array: np.ndarray, allowed: set[int], what: str) -> None:
    unknown = sorted(set(np.unique(array).tolist()) - allowed)
    if unknown:
        raise ValueError(f"{what} holds label value(s) {unknown} that dataset.json does not "
                         f"list (known: {sorted(allowed)}); pass the right --dataset-json or fix the labels")


def score_labels(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                 labels: Mapping[str, tuple[int, ...]] | None, ignore_value: int | None = None,
                 per_slice: bool = False) -> list[dict]:
    """One row per label (and slice). ``labels=None`` scores every value found in the pair (each its own label)."""
    if labels is None:
        found = sorted((set(np.unique(pred).tolist()) | set(np.unique(ref).tolist())) - {0})
        labels = {f"label_{v}": (v,) for v in found}
    else:
        allowed = {0} | {v for values in labels.values() for v in values}
        allowed |= set() if ignore_value is None else {ignore_value}
        _check_known_values(pred, allowed, "the prediction")
        _check_known_values(ref, allowed, "the reference")
    valid = None if ignore_value is None else ref != ignore_value

    rows = []
    for name, values in labels.items():
        pred_mask, ref_mask = np.isin(pred, values), np.isin(ref, values)
        if valid is not None:
            pred_mask &= valid
        base = {"label": name, "label_values": list(values)}
        if not per_slice:
            rows.append({**base, **binary_metrics(pred_mask, ref_mask, spacing)})
            continue
        if ref.ndim != 3:
            raise ValueError(f"per-slice mode needs 3D volumes, got shape {ref.shape}")
        for index in np.flatnonzero(pred_mask.any(axis=(1, 2)) | ref_mask.any(axis=(1, 2))):
            metrics = binary_metrics(pred_mask[index], ref_mask[index], spacing[1:])
            rows.append({**base, "slice": int(index), **metrics})
    return rows


def both_empty_row(case: str, label: str, values: tuple[int, ...]) -> dict:
    """The row of a label absent from both masks of a case."""
    zeros = np.zeros((1, 1, 1), dtype=bool)  # every metric and count of two empty masks
    metrics = binary_metrics(zeros, zeros, (1, 1, 1))
    return {"case": case, "label": label, "label_values": list(values), **metrics}


def mean_std(values: Iterable[float]) -> dict:
    """Mean and population std of the defined values; NaNs are counted as ``n_undefined``."""
    array = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    defined = array[~np.isnan(array)]
    return {
        "mean": float(defined.mean()) if defined.size else float("nan"),
        "std": float(defined.std()) if defined.size else float("nan"),
        "n": int(defined.size),
        "n_undefined": int(array.size - defined.size),
    }


def summarise(rows: Sequence[Mapping], labels: Iterable[str]) -> dict[str, dict]:
    """Per label: mean ± std of each metric, the row count and how often each empty-mask rule applied."""
    summary = {}
    for label in labels:
        selected = [row for row in rows if row["label"] == label]
        statuses: dict[str, int] = {}
        for row in selected:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        summary[label] = {
            "n_rows": len(selected),
            "status_counts": statuses,
            "metrics": {m: mean_std(row[m] for row in selected) for m in METRICS},
        }
    return summary


@dataclass(frozen=True)
class OursContext:
    """Labels from dataset.json (None: every value found), its ignore value, per-slice mode."""

    labels: dict[str, tuple[int, ...]] | None
    ignore_value: int | None
    per_slice: bool
    labels_source: str


def _found_labels(rows: Sequence[Mapping]) -> dict[str, tuple[int, ...]]:
    found = sorted({row["label"] for row in rows}, key=lambda n: int(n.split("_")[1]))
    return {name: (int(name.split("_")[1]),) for name in found}


class Ours(Convention):
    """The package's convention (docs/evaluation.md): the paper's metrics per case and label, with topology."""

    name = "ours"

    def context(self, dataset: Mapping | None, dataset_json: Path | None, options: Mapping[str, Any]) -> OursContext:
        if options.get("roi_dir") is not None:
            raise ValueError("ROI crops (--roi-dir) belong to the TopCoW convention; add --convention topcow")
        if options.get("track") is not None:
            raise ValueError("--track belongs to the TopBrain convention; add --convention topbrain")
        if dataset is None:
            return OursContext(None, None, bool(options.get("per_slice")),
                               "label values found in the files (no dataset.json given)")
        labels, ignore_value = labels_from_dataset_json(dataset)
        return OursContext(labels, ignore_value, bool(options.get("per_slice")), str(dataset_json))

    def score_case(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                   context: OursContext) -> list[dict]:
        return score_labels(pred, ref, spacing, context.labels, context.ignore_value, context.per_slice)

    def unpredicted_note(self, unpredicted: Sequence[str], total: int, listed: bool, names: str) -> str:
        return (f"{len(unpredicted)} {'listed' if listed else 'reference'} case(s) (of {total}) have no "
                f"prediction and were not scored: {names}")

    def complete(self, rows: list[dict], cases: Sequence[str], context: OursContext) -> tuple[list[dict], list[str]]:
        notes = []
        if context.labels is None:
            labels = _found_labels(rows)
            if not labels:
                notes.append("no foreground label in any prediction or reference; nothing to score")
            if not context.per_slice:  # a label absent from both masks of a case is a "both empty" row there
                present = {(row["case"], row["label"]) for row in rows}
                rows = rows + [both_empty_row(c, n, v) for c in cases for n, v in labels.items()
                               if (c, n) not in present]
                rows.sort(key=lambda row: (cases.index(row["case"]), row["label"]))
        if context.per_slice:
            notes.append("per-slice mode: only slices with foreground in the prediction or the reference are "
                         "scored (slices where both are empty would all score 1)")
        empty = sum(row["status"] == STATUS_BOTH_EMPTY for row in rows)
        if empty:
            notes.append(f"{empty} row(s) have an empty prediction and reference; scored by the both-empty rule")
        return rows, notes

    def labels(self, rows: Sequence[Mapping], context: OursContext) -> dict[str, tuple[int, ...]]:
        return dict(context.labels) if context.labels is not None else _found_labels(rows)

    def aggregate(self, rows: Sequence[Mapping], labels: Mapping[str, tuple[int, ...]]) -> dict:
        return summarise(rows, labels)


OURS = Ours()
