"""The TopCoW 2024 convention (``--convention topcow``): optional ROI crop, every task-1 metric, the official
aggregates, and how they are shown.

``score_topcow_case`` returns one flat dict per case with the official column names (``Dice_ClsAvgDice``,
``clDice``, ``HD95_BA``, ...) plus the nested ``all_detection_dicts``/``all_graph_dicts``/``all_topo_dicts``;
``aggregate_topcow`` turns a list of them into the official aggregate block (pandas ``describe``-style column
statistics, group-2 F1, variant-balanced accuracies). ``flat_row`` gives a CSV-ready row (our layout).
Our choices beyond the official rules: cases pair by file name (as ``ours``), a prediction off the reference
grid is refused instead of silently given the reference's geometry, ROI files are found as ``ROI_DIR/CASE.txt``;
a comparison pools each trainer's cases over folds, without p-values (TopCoW ranks, it does not test).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_medsam_fusion.data.convert.topcow import MAPPING_KEY as LABEL_VALUES_KEY
from nnunet_medsam_fusion.evaluation.conventions.base import Convention
from nnunet_medsam_fusion.evaluation.kernels.cow_variants import (
    GROUP2_LABELS,
    aggregate_detections,
    aggregate_graphs,
    aggregate_topologies,
    graph_metrics,
    variant_name,
)
from nnunet_medsam_fusion.evaluation.kernels.label_metrics import check_pair, index_pair, voxel_metrics
from nnunet_medsam_fusion.text import markdown_table, short_list

CONVENTION = "topcow"
NESTED_COLUMNS = ("all_detection_dicts", "all_graph_dicts", "all_topo_dicts")
# the leaderboard's headline columns, shown in the printed tables
HEADLINE = ("Dice_ClsAvgDice", "Dice_MergedBin", "clDice", "B0err_ClsAvgB0err", "HD95_ClsAvgHD95", "HD_ClsAvgHD")
SUMMARY_COLUMNS = ("metric", "mean", "std", "count", "min", "25pc", "50pc", "75pc", "max")
FIXED_LABELS = "TopCoW's fixed label ids"
CONVENTION_TEXT = ("TopCoW 2024 task-1 evaluation (github CoWBenchmark/TopCoW_Eval_Metrics, topcow24_eval), "
                   "re-implemented: see docs/evaluation.md, 'TopCoW convention'")


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


def _number(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _std(value: float) -> str:
    return "-" if value != value else f"{value:.4f}"  # NaN for a single case


@dataclass(frozen=True)
class TopCowContext:
    """ROI folder (and one case's parsed ROI), nnU-Net -> TopCoW label map, where the labels came from."""

    roi_dir: Path | None
    label_values: dict[int, int] | None
    labels_source: str
    roi: tuple[list[int], list[int]] | None = None


class TopCow(Convention):
    name = CONVENTION
    text = CONVENTION_TEXT
    title = "TopCoW task-1 metrics"
    summary_columns = SUMMARY_COLUMNS

    def context(self, dataset: Mapping | None, dataset_json: Path | None,
                options: Mapping[str, Any]) -> TopCowContext:
        """``dataset``'s ``topcow_label_values`` (a ``nnmsf convert topcow --labels multiclass`` data set) maps
        nnU-Net-numbered predictions and references to TopCoW's ids; without it TopCoW's ids are expected."""
        if options.get("per_slice"):
            raise ValueError("TopCoW scores whole volumes; drop --per-slice or use --convention ours")
        if options.get("track") is not None:
            raise ValueError("--track belongs to the TopBrain convention; drop it or use --convention topbrain")
        roi_dir = Path(options["roi_dir"]) if options.get("roi_dir") is not None else None
        if dataset is not None and LABEL_VALUES_KEY in dataset:
            label_values = {int(k): int(v) for k, v in dataset[LABEL_VALUES_KEY].items()}
            source = f"nnU-Net's label values mapped to TopCoW's by {LABEL_VALUES_KEY} in {dataset_json}"
            return TopCowContext(roi_dir, label_values, source)
        return TopCowContext(roi_dir, None, FIXED_LABELS)

    def check_cases(self, context: TopCowContext, cases: Sequence[str]) -> None:
        if context.roi_dir is None:
            return
        missing = [case for case in cases if not (context.roi_dir / f"{case}.txt").is_file()]
        if missing:
            raise FileNotFoundError(f"no ROI file for case(s) {short_list(missing)} in {context.roi_dir} (expected "
                                    "CASE.txt, TopCoW's roi_loc format); add them or drop --roi-dir")

    def for_case(self, context: TopCowContext, case: str) -> TopCowContext:
        if context.roi_dir is None:
            return context
        return replace(context, roi=parse_roi_txt(context.roi_dir / f"{case}.txt"))

    def score_case(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                   context: TopCowContext) -> list[dict]:
        return [score_topcow_case(pred, ref, spacing, roi=context.roi, label_values=context.label_values)]

    def aggregate(self, rows: Sequence[Mapping], labels: Mapping[str, tuple[int, ...]]) -> dict:
        return aggregate_topcow(rows)

    def flat_row(self, row: Mapping) -> dict:
        return flat_row(row)

    def case_table(self, rows: Sequence[Mapping]) -> str:
        headers = ["Case", *HEADLINE, "Variant Ant (gt/pred)", "Variant Pos (gt/pred)", "Topo match Ant/Pos"]
        body = []
        for row in map(self.flat_row, rows):
            cells = [row["case"]] + [_number(row[m]) for m in HEADLINE]
            for short in ("Ant", "Pos"):
                cells.append(f"{row[f'Variant_{short}_gt'][8:]} / {row[f'Variant_{short}_pred'][8:]}")
            cells.append(f"{_yes(row['TopoMatch_Ant'])}/{_yes(row['TopoMatch_Pos'])}")
            body.append(cells)
        return f"convention: {self.name}\n\n" + markdown_table(headers, body)

    def summary_table(self, aggregates: Mapping) -> str:
        headers = ["Metric", "n", "mean ± std", "median"]
        body = [[metric, f"{stats['count']:g}", f"{_number(stats['mean'])} ± {_number(stats['std'])}",
                 _number(stats["50pc"])]
                for metric, stats in aggregates.items() if "mean" in stats and "count" in stats]
        detection = aggregates.get("dect_avg", {})
        extra = [["group-2 detection F1 (mean over R-Pcom, L-Pcom, Acom, 3rd-A2)", "",
                  _number(detection.get("f1_score", {}).get("mean", float("nan"))), ""]]
        for key, title in (("graph_var_bal_acc", "variant-balanced graph accuracy"),
                           ("topo_var_bal_acc", "variant-balanced topology match rate")):
            values = aggregates.get(key, {})
            extra.append([f"{title} (anterior / posterior)", "",
                          f"{_number(values.get('anterior'))} / {_number(values.get('posterior'))}", ""])
        return f"convention: {self.name}\n\n" + markdown_table(headers, body + extra)

    def summary_rows(self, aggregates: Mapping) -> list[dict]:
        """One CSV row per aggregated quantity: column statistics, detection scores and balanced accuracies."""
        rows = [{"metric": metric, **stats}
                for metric, stats in aggregates.items() if "mean" in stats and "count" in stats]
        for label, entry in aggregates.get("dect_avg", {}).items():
            if "label" in entry:
                rows += [{"metric": f"Detection_{score}_{entry['label']}", "mean": entry[score], "count": None}
                         for score in ("precision", "recall", "f1_score")]
            else:
                rows.append({"metric": f"Detection_{label}", **entry})
        for key in ("graph_var_bal_acc", "topo_var_bal_acc"):
            for region, value in aggregates.get(key, {}).items():
                rows.append({"metric": f"{key}_{region}", "mean": value})
        return rows

    def comparison_table(self, trainers: Sequence[tuple[str, str, Mapping | None]]) -> str:
        headers = ["Trainer", "Row", "n", *HEADLINE, "Grp-2 F1", "Graph acc. Ant/Pos", "Topo match Ant/Pos"]
        body = []
        for trainer, row_label, aggregates in trainers:
            if not aggregates:
                body.append([trainer, row_label, "0"] + ["-"] * (len(headers) - 3))
                continue
            n = aggregates.get("Dice_ClsAvgDice", {}).get("count", 0)
            cells = [f"{aggregates[m]['mean']:.4f} ± {_std(aggregates[m]['std'])}" for m in HEADLINE]
            graph, topo = aggregates["graph_var_bal_acc"], aggregates["topo_var_bal_acc"]
            cells += [f"{aggregates['dect_avg']['f1_score']['mean']:.4f}",
                      f"{graph['anterior']:.4f} / {graph['posterior']:.4f}",
                      f"{topo['anterior']:.4f} / {topo['posterior']:.4f}"]
            body.append([trainer, row_label, f"{n:g}", *cells])
        return markdown_table(headers, body)

    def comparison_note(self, distance_unit: str) -> str:
        return ("Cells: mean ± std (sample std, as pandas) over every scored case of the trainer, folds pooled; "
                f"distances in {distance_unit}; Grp-2 F1: mean F1 of the R-Pcom, L-Pcom, Acom and 3rd-A2 "
                "detections; accuracies are variant-balanced. No p-values.")


TOPCOW = TopCow()
