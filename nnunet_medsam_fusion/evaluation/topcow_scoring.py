"""Score cases under the TopCoW convention: optional ROI crop, every task-1 metric, and the official aggregates.

``score_topcow_case`` returns one flat dict per case with the official column names (``Dice_ClsAvgDice``,
``clDice``, ``HD95_BA``, ...) plus the nested ``all_detection_dicts``/``all_graph_dicts``/``all_topo_dicts``;
``aggregate_topcow`` turns a list of them into the official aggregate block (pandas ``describe``-style column
statistics, group-2 F1, variant-balanced accuracies). ``flat_row`` gives a CSV-ready row (our layout).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nnunet_medsam_fusion.data.convert.topcow import MAPPING_KEY as LABEL_VALUES_KEY
from nnunet_medsam_fusion.evaluation.kernels.cow_variants import (
    GROUP2_LABELS,
    aggregate_detections,
    aggregate_graphs,
    aggregate_topologies,
    graph_metrics,
    variant_name,
)
from nnunet_medsam_fusion.evaluation.kernels.label_metrics import check_pair, index_pair, voxel_metrics

CONVENTION = "topcow"
NESTED_COLUMNS = ("all_detection_dicts", "all_graph_dicts", "all_topo_dicts")


def parse_roi_txt(path: Path | str) -> tuple[list[int], list[int]]:
    """(size, location) in voxels along x, y, z from a TopCoW ``roi_loc`` txt (utils_box.py:5-31).

    Line 2 holds the size, line 3 the 0-indexed lower corner; every integer on the line counts.
    """
    lines = Path(path).read_text().splitlines()
    if len(lines) < 3:
        raise ValueError(f"{path}: a TopCoW ROI file has a header line, a 'Size' line and a 'Location' line; "
                         f"found {len(lines)} line(s)")
    size = [int(x) for x in re.findall(r"\b\d+\b", lines[1])]
    location = [int(x) for x in re.findall(r"\b\d+\b", lines[2])]
    if len(size) != 3 or len(location) != 3:
        raise ValueError(f"{path}: expected three sizes and three locations (x y z), got {size} and {location}")
    return size, location


def roi_box(shape_zyx: Sequence[int], size: Sequence[int], location: Sequence[int]) -> tuple[slice, slice, slice]:
    """Numpy (z, y, x) slices of the ROI, clamped to the image (utils_box.py:81-167, crop_sitk.py:6-17)."""
    shape_xyz = tuple(reversed(shape_zyx))
    slices = []
    for axis in range(3):
        start = max(0, int(location[axis]))
        end = min(shape_xyz[axis] - 1, start + int(size[axis]) - 1)
        slices.append(slice(start, end + 1))
    return tuple(reversed(slices))


def to_topcow_values(array: np.ndarray, label_values: Mapping[int, int], what: str) -> np.ndarray:
    """``array`` in TopCoW's label values, mapped from nnU-Net's numbering through ``label_values``
    (dataset.json's ``topcow_label_values`` of a ``nnmsf convert topcow --labels multiclass`` data set)."""
    lookup = np.full(max(max(label_values), 0) + 1, -1, dtype=np.int64)
    lookup[0] = 0
    for nnunet_value, topcow_value in label_values.items():
        lookup[int(nnunet_value)] = int(topcow_value)
    values = np.asarray(array).astype(np.int64)
    outside = (values < 0) | (values >= lookup.size)
    unmapped = np.unique(np.concatenate([values[outside], values[~outside][lookup[values[~outside]] < 0]]))
    if unmapped.size:
        raise ValueError(f"{what} holds label value(s) {unmapped.tolist()} that the data set's "
                         f"{LABEL_VALUES_KEY} map does not hold (it maps nnU-Net values {sorted(label_values)}); "
                         "is it in TopCoW's values already? then score it without that dataset.json")
    return lookup[values]


def score_topcow_case(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                      roi: tuple[Sequence[int], Sequence[int]] | None = None,
                      label_values: Mapping[int, int] | None = None) -> dict:
    """Every TopCoW task-1 metric of one case (score_case_task_1_seg.py:16-121, evaluation.py:85-92).

    ``pred``/``ref``: label maps in (z, y, x) order, ``spacing`` in the same order; ``roi``: (size, location)
    from ``parse_roi_txt`` to score the crop only; ``label_values``: nnU-Net value -> TopCoW value, to score
    label maps in nnU-Net's numbering (``topcow_label_values`` of the data set's dataset.json). Both masks are
    cast to integers first; label values outside TopCoW's set are refused (the official code casts to uint8 and
    fails on unnamed labels).
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    for name, array in (("prediction", pred), ("reference", ref)):
        if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.bool_):
            if not np.array_equal(array, np.round(array)):
                raise ValueError(f"the {name} holds non-integer values; pass label maps, not probabilities")
    if label_values is not None:
        pred = to_topcow_values(pred, label_values, "the prediction")
        ref = to_topcow_values(ref, label_values, "the reference")
    check_pair(pred, ref, spacing)
    if roi is not None:
        box = roi_box(ref.shape, *roi)
        pred, ref = pred[box], ref[box]
    ref_index, pred_index = index_pair(ref, pred)
    return {**voxel_metrics(ref_index, pred_index, spacing), **graph_metrics(ref_index, pred_index)}


def describe(values: Sequence[float]) -> dict[str, float]:
    """pandas ``describe`` of one column, NaN dropped (the evalutils aggregates the official JSON holds)."""
    data = np.array([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))],
                    dtype=np.float64)
    if data.size == 0:
        return {"count": 0.0}
    return {"25pc": float(np.percentile(data, 25)), "50pc": float(np.percentile(data, 50)),
            "75pc": float(np.percentile(data, 75)), "count": float(data.size), "max": float(data.max()),
            "mean": float(data.mean()), "min": float(data.min()),
            "std": float(data.std(ddof=1)) if data.size > 1 else float("nan")}


def aggregate_topcow(cases: Sequence[Mapping]) -> dict:
    """Official aggregates: column statistics of every numeric metric (a label missing in a case is NaN there,
    so not counted), ``dect_avg`` (group-2 F1), ``graph_var_bal_acc`` and ``topo_var_bal_acc``."""
    columns = sorted({key for case in cases for key, value in case.items()
                      if key not in NESTED_COLUMNS and isinstance(value, (int, float))})
    aggregates = {column: describe([case.get(column, float("nan")) for case in cases]) for column in columns}
    if cases:
        aggregates["dect_avg"] = aggregate_detections([case["all_detection_dicts"] for case in cases])
        aggregates["graph_var_bal_acc"] = aggregate_graphs([case["all_graph_dicts"] for case in cases])
        aggregates["topo_var_bal_acc"] = aggregate_topologies([case["all_topo_dicts"] for case in cases])
    return aggregates


def flat_row(case: Mapping) -> dict:
    """A CSV row of one scored case (our layout): scalar metrics, one detection column per group-2 label,
    the reference/predicted variant classes and the topology verdicts."""
    row = {key: value for key, value in case.items() if key not in NESTED_COLUMNS}
    for label in GROUP2_LABELS:
        entry = case["all_detection_dicts"][str(label)]
        row[f"Detection_{entry['label']}"] = entry["Detection"]
    for region, short in (("anterior", "Ant"), ("posterior", "Pos")):
        graph = case["all_graph_dicts"][region]
        row[f"Variant_{short}_gt"] = variant_name(graph["gt_graph"], short)
        row[f"Variant_{short}_pred"] = variant_name(graph["pred_graph"], short)
        row[f"TopoMatch_{short}"] = bool(case["all_topo_dicts"]["match_verdict"][region])
    return row
