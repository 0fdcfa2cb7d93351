"""TopBrain 2025 task-1 scoring: the per-case values and aggregates of the official evaluation, re-implemented.

The official scorer is github CoWBenchmark/TopBrain_Eval_Metrics (package ``topbrain25_eval``), read at commit
ba4252ab0dbe9d59a9ae45058ae040b016aae0ad; docs/topbrain.md cites file and line for every rule and lists where
TopBrain and TopCoW differ. Arrays are label maps in SimpleITK's numpy order ((z, y, x)) with ``spacing`` in the
same order. The API is pure: ``columns``, ``score_case``, ``aggregate`` and ``track_from_labels``; ``TOPBRAIN``
(``--convention topbrain --track mr|ct``) serves it to the folder evaluation, comparison and writing.
Our choices beyond the official rules: cases pair by file name (as ``ours``), the track is ``--track`` or read
from dataset.json's label names, each row carries its ``track``, and a comparison pools each trainer's cases over
folds without p-values (as ``topcow``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_medsam_fusion.data.convert.topbrain import LABELS
from nnunet_medsam_fusion.evaluation.conventions.base import Convention
from nnunet_medsam_fusion.evaluation.conventions.topbrain_labels import SIDE_ROAD_LABELS, VALID_NEIGHBOURS
from nnunet_medsam_fusion.evaluation.conventions.topcow import describe
from nnunet_medsam_fusion.evaluation.kernels.adjacency import invalid_neighbour_counts
from nnunet_medsam_fusion.evaluation.kernels.label_index import LabelIndex
from nnunet_medsam_fusion.evaluation.kernels.label_metrics import (
    cldice_from_index,
    dice_from_counts,
    hausdorff_from_index,
    jaccard,
    overlap_counts,
)
from nnunet_medsam_fusion.evaluation.kernels.skeletons import component_betti0, label_skeletons, labels_at
from nnunet_medsam_fusion.text import markdown_table

TRACKS = ("mr", "ct")
HD95_UPPER_BOUND = 290  # mm, constants.py:74-76: HD95 and HD of a label empty in one mask
IOU_THRESHOLD = 0.25  # constants.py:102-104: side-road detection
MERGED_BIN = "MergedBin"  # constants.py:69-72
SUMMED = ("Dice", "clDice", "B0err", "HD95", "HD")  # the metrics with a class average and a MergedBin value


def _check_track(track: str) -> None:
    if track not in TRACKS:
        raise ValueError(f"TopBrain track {track!r} is not one of {', '.join(TRACKS)}; pass --track mr or --track ct")


def _names(track: str) -> list[str]:
    return [LABELS[track][value] for value in sorted(LABELS[track])]


def columns(track: str) -> list[str]:
    """Every per-case column of ``score_case``, in the official order (score_case_task_1_seg.py:38-124).

    ``Detection_<name>`` holds the side-road verdict (TP/TN/FP/FN) that the official code nests in
    ``all_detection_dicts`` (ours: one flat column per side-road label).
    """
    _check_track(track)
    names = _names(track)
    found: list[str] = []
    for metric in ("Dice", "clDice", "B0err"):
        found += [f"{metric}_{name}" for name in names] + [f"{metric}_ClsAvg{metric}", f"{metric}_{MERGED_BIN}"]
    for name in names:
        found += [f"HD_{name}", f"HD95_{name}"]
    found += ["HD95_ClsAvgHD95", "HD_ClsAvgHD", f"HD_{MERGED_BIN}", f"HD95_{MERGED_BIN}"]
    found += [f"NbErr_{name}" for name in names] + ["NbErr_ClsAvgNbErr"]
    found += [f"Detection_{LABELS[track][value]}" for value in SIDE_ROAD_LABELS[track]]
    return found


def track_from_labels(labels: Mapping[str, object]) -> str | None:
    """``mr`` or ``ct`` when a dataset.json ``labels`` block (name -> value) names TopBrain labels of one track
    only, with that track's values; ``None`` when it fits neither or both (labels 1-34 alone fit both)."""
    named = {name: value for name, value in labels.items() if name.lower() != "background"}
    fits = [track for track in TRACKS
            if named and all({n: v for v, n in LABELS[track].items()}.get(name) == value
                             for name, value in named.items())]
    return fits[0] if len(fits) == 1 else None


def _label_index(array: np.ndarray, what: str, track: str) -> LabelIndex:
    """The sparse view of ``array`` cast to uint8 (score_case_task_1_seg.py:23-28), refusing values the track
    does not name (the official code fails on them: generate_cls_avg_dict.py:254, KeyError)."""
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"the {what} holds non-integer values; pass label maps, not probabilities")
    if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
        outside = np.unique(array[(array < 0) | (array > 255)])
        _refuse_unknown(outside.tolist(), what, track)
    index = LabelIndex.of(array.astype(np.uint8, copy=False))
    _refuse_unknown([v for v in index.present() if v not in LABELS[track]], what, track)
    return index


def _refuse_unknown(unknown: list, what: str, track: str) -> None:
    if unknown:
        raise ValueError(f"the {what} holds label value(s) {unknown[:10]} that TopBrain's {track.upper()} track "
                         f"does not define (1..{max(LABELS[track])}); check --track or relabel to TopBrain's ids")


def _hausdorff(ref: LabelIndex, pred: LabelIndex, label: int | None, spacing: Sequence[float],
               empty: bool) -> tuple[float, float]:
    """(HD95, HD); 290 mm both when the label is empty in either mask (cls_avg_hd95.py:102-105)."""
    if empty:
        return HD95_UPPER_BOUND, HD95_UPPER_BOUND
    return hausdorff_from_index(ref, pred, label, spacing)


def _harmonic(precision: float, sensitivity: float) -> float:
    """clDice from its two skeleton scores, 0 when both are 0 (cls_avg_clDice.py:54-62)."""
    if precision + sensitivity == 0:
        return 0
    return 2 * precision * sensitivity / (precision + sensitivity)


def _per_label_cldice(ref: LabelIndex, pred: LabelIndex, components: dict[str, np.ndarray],
                      labels: list[int]) -> dict[int, float]:
    """clDice of every label's own masks (cls_avg_clDice.py:65-87): 0 when the label is empty in either mask;
    a score whose skeleton is empty counts 0 (lines 26-28). ``components``: per-label component ids by mask."""
    skeletons = {}
    for name, index, other in (("pred", pred, ref), ("ref", ref, pred)):
        flat, owner = label_skeletons(index, components[name])
        hit = labels_at(other, flat) == owner
        skeletons[name] = (np.bincount(owner, minlength=256), np.bincount(owner[hit], minlength=256))
    found = {}
    for label in labels:
        if ref.counts[label] == 0 or pred.counts[label] == 0:
            found[label] = 0
            continue
        scores = [0 if total[label] == 0 else float(inside[label] / total[label])
                  for total, inside in (skeletons["pred"], skeletons["ref"])]
        found[label] = _harmonic(*scores)
    return found


def score_case(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float, float], track: str) -> dict[str, object]:
    """Every value of the official ``score_case_task_1_seg`` for one case, flat, under ``columns(track)``.

    Labels absent from both masks are ``None`` (the official per-case table has no entry for them; its
    DataFrame holds NaN). NbErr is scored for the labels present in the prediction only.
    """
    _check_track(track)
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}; "
                         "resample the prediction onto the reference grid first")
    if ref.ndim != 3:
        raise ValueError(f"TopBrain scores 3D volumes, got a {ref.ndim}D array of shape {ref.shape}")
    if len(spacing) != 3:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} entries; give one per array axis (z, y, x)")
    ref_index = _label_index(ref, "reference", track)
    pred_index = _label_index(pred, "prediction", track)
    row: dict[str, object] = dict.fromkeys(columns(track))
    names = LABELS[track]
    labels = sorted(set(ref_index.present()) | set(pred_index.present()))  # utils_mask.py:12-31
    intersections, merged_intersection = overlap_counts(ref_index, pred_index)

    if not labels:  # generate_cls_avg_dict.py:97-122: class averages and MergedBin are 0
        for metric in SUMMED:
            row[f"{metric}_ClsAvg{metric}"] = 0
            row[f"{metric}_{MERGED_BIN}"] = 0
    else:
        components = {"ref": ref_index.components(per_label=True), "pred": pred_index.components(per_label=True)}
        betti_ref = component_betti0(ref_index, components["ref"])
        betti_pred = component_betti0(pred_index, components["pred"])
        cldice = _per_label_cldice(ref_index, pred_index, components, labels)
        sums = dict.fromkeys(SUMMED, 0.0)
        for label in labels:
            name = names[label]
            values = {"Dice": dice_from_counts(int(intersections[label]), int(ref_index.counts[label]),
                                               int(pred_index.counts[label])),
                      "clDice": cldice[label],
                      "B0err": abs(int(betti_pred[label]) - int(betti_ref[label]))}
            empty = ref_index.counts[label] == 0 or pred_index.counts[label] == 0
            values["HD95"], values["HD"] = _hausdorff(ref_index, pred_index, label, spacing, empty)
            for metric, value in values.items():
                row[f"{metric}_{name}"] = value
                sums[metric] += value
        for metric in SUMMED:  # generate_cls_avg_dict.py:129-159
            row[f"{metric}_ClsAvg{metric}"] = sums[metric] / len(labels)
        empty = ref_index.size == 0 or pred_index.size == 0  # generate_cls_avg_dict.py:161-185
        row[f"Dice_{MERGED_BIN}"] = dice_from_counts(merged_intersection, ref_index.size, pred_index.size)
        row[f"clDice_{MERGED_BIN}"] = 0 if empty else cldice_from_index(ref_index, pred_index)
        row[f"B0err_{MERGED_BIN}"] = abs(pred_index.betti0_binary - ref_index.betti0_binary)
        row[f"HD95_{MERGED_BIN}"], row[f"HD_{MERGED_BIN}"] = _hausdorff(ref_index, pred_index, None, spacing, empty)

    # cls_avg_invalid_neighbors.py:58-93: labels of the prediction against the valid-neighbour table
    errors = invalid_neighbour_counts(pred_index.neighbours, VALID_NEIGHBOURS[track])
    for label, count in errors.items():
        row[f"NbErr_{names[label]}"] = count
    row["NbErr_ClsAvgNbErr"] = sum(errors.values()) / len(errors) if errors else 0

    for label in SIDE_ROAD_LABELS[track]:  # detection_sideroad_labels.py:62-118
        row[f"Detection_{names[label]}"] = _detection(ref_index, pred_index, label, int(intersections[label]))
    return row


def _detection(ref: LabelIndex, pred: LabelIndex, label: int, intersection: int) -> str:
    """TP: in the reference with IoU >= 0.25; FN: in the reference, IoU lower; FP: only predicted; TN: in
    neither (detection_sideroad_labels.py:62-118)."""
    if ref.counts[label]:
        iou = jaccard(intersection, int(ref.counts[label]), int(pred.counts[label]))
        return "TP" if iou >= IOU_THRESHOLD else "FN"
    return "FP" if pred.counts[label] else "TN"


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not math.isnan(float(value))


def detection_scores(rows: Sequence[Mapping[str, object]], track: str) -> dict[str, object]:
    """Side-road precision, recall and F1 per label over all cases, and their mean and population std
    (aggregate_all_detection_dicts.py:45-200; an undefined ratio counts 0)."""
    result: dict[str, object] = {}
    lists: dict[str, list[float]] = {"precision": [], "recall": [], "f1_score": []}
    for label in SIDE_ROAD_LABELS[track]:
        name = LABELS[track][label]
        verdicts = [row[f"Detection_{name}"] for row in rows]
        tp, fp, fn = (verdicts.count(kind) for kind in ("TP", "FP", "FN"))
        scores = {"precision": tp / (tp + fp) if tp + fp else 0, "recall": tp / (tp + fn) if tp + fn else 0,
                  "f1_score": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0}
        result[str(label)] = {"label": name, **scores}
        for key, value in scores.items():
            lists[key].append(value)
    for key, values in lists.items():
        result[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return result


def aggregate(rows: list[dict], track: str) -> dict[str, object]:
    """The official aggregates: pandas-``describe`` statistics of every numeric column with at least one value
    (base_algorithm.py:315-317, evalutils), and ``dect_avg``, the side-road detection scores whose
    ``f1_score.mean`` is the ranked F1 (base_algorithm.py:329-336)."""
    _check_track(track)
    if not rows:
        raise ValueError("no scored cases to aggregate; score at least one case first")
    found: dict[str, object] = {}
    for column in columns(track):
        if column.startswith("Detection_"):
            continue
        values = [row.get(column) for row in rows]
        if any(_finite(value) for value in values):
            found[column] = describe([float(v) if _finite(v) else float("nan") for v in values])
    found["dect_avg"] = detection_scores(rows, track)
    return found


CONVENTION = "topbrain"
# the six ranked metrics (Dice, clDice, B0 error, HD95, invalid-neighbour error, side-road F1) and the two shown
# beside them in the printed tables
HEADLINE = ("Dice_ClsAvgDice", "Dice_MergedBin", "clDice_ClsAvgclDice", "B0err_ClsAvgB0err", "HD95_ClsAvgHD95",
            "HD_ClsAvgHD", "NbErr_ClsAvgNbErr")
DETECTION_F1 = "side-road detection F1 (mean over side-road labels)"
SUMMARY_COLUMNS = ("metric", "mean", "std", "count", "min", "25pc", "50pc", "75pc", "max")
CONVENTION_TEXT = ("TopBrain 2025 task-1 evaluation (github CoWBenchmark/TopBrain_Eval_Metrics, topbrain25_eval), "
                   "re-implemented: see docs/topbrain.md")


@dataclass(frozen=True)
class TopBrainContext:
    """The track scored (``mr`` or ``ct``) and where it came from."""

    track: str
    labels_source: str


def _mean_std(stats: Mapping | None) -> str:
    if not stats or "mean" not in stats:
        return "-"
    std = stats.get("std", float("nan"))
    return f"{stats['mean']:.4f} ± " + ("-" if std != std else f"{std:.4f}")  # std is NaN for one case


def _detection_f1(aggregates: Mapping) -> float:
    return aggregates["dect_avg"]["f1_score"]["mean"]


class TopBrain(Convention):
    name = CONVENTION
    text = CONVENTION_TEXT
    title = "TopBrain 2025 task-1 metrics"
    summary_columns = SUMMARY_COLUMNS

    def context(self, dataset: Mapping | None, dataset_json: Path | None,
                options: Mapping[str, Any]) -> TopBrainContext:
        """The track from ``options["track"]`` (``--track``), else from dataset.json's label names; refuses
        neither, or a ``--track`` the label names contradict. Label values are TopBrain's own (``nnmsf convert
        topbrain`` keeps them), so nothing is mapped."""
        if options.get("per_slice"):
            raise ValueError("TopBrain scores whole volumes; drop --per-slice or use --convention ours")
        if options.get("roi_dir") is not None:
            raise ValueError("TopBrain scores whole volumes (its release has no ROI files); drop --roi-dir")
        inferred = track_from_labels(dataset.get("labels", {})) if dataset is not None else None
        track = options.get("track")
        if track is None:
            if inferred is None:
                where = (f"the label names in {dataset_json} do not say it" if dataset is not None
                         else "no dataset.json was found to read it from")
                raise ValueError(f"TopBrain needs its track (mr or ct) and {where}; pass --track mr or --track ct")
            return TopBrainContext(inferred, f"TopBrain's {inferred.upper()} label ids (track from the label "
                                             f"names in {dataset_json})")
        _check_track(track)
        if inferred is not None and inferred != track:
            raise ValueError(f"--track {track} contradicts {dataset_json}, whose label names are TopBrain's "
                             f"{inferred.upper()} track; pass --track {inferred} or another --dataset-json")
        return TopBrainContext(track, f"TopBrain's {track.upper()} label ids (--track {track})")

    def score_case(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                   context: TopBrainContext) -> list[dict]:
        return [{"track": context.track, **score_case(pred, ref, tuple(spacing), context.track)}]

    def aggregate(self, rows: Sequence[Mapping], labels: Mapping[str, tuple[int, ...]]) -> dict:
        """``aggregate`` of the rows' track (every row of one evaluation or comparison has the same)."""
        tracks = sorted({row["track"] for row in rows})
        if len(tracks) != 1:
            raise ValueError(f"rows of TopBrain tracks {tracks} cannot be aggregated together; score one track")
        return aggregate(list(rows), tracks[0])

    def case_table(self, rows: Sequence[Mapping]) -> str:
        headers = ["Case", *HEADLINE, "Side roads TP/FP/FN"]
        body = []
        for row in rows:
            verdicts = [value for key, value in row.items() if key.startswith("Detection_")]
            numbers = ["-" if row[m] is None else f"{row[m]:.4f}".rstrip("0").rstrip(".") for m in HEADLINE]
            body.append([row["case"], *numbers, "/".join(str(verdicts.count(v)) for v in ("TP", "FP", "FN"))])
        return f"convention: {self.name}\n\n" + markdown_table(headers, body)

    def summary_table(self, aggregates: Mapping) -> str:
        """The headline metrics and the side-road F1 (every column's statistics are in the summary CSV)."""
        body = [[metric, f"{aggregates[metric]['count']:g}", _mean_std(aggregates[metric]),
                 f"{aggregates[metric]['50pc']:.4f}"] for metric in HEADLINE if metric in aggregates]
        body.append([DETECTION_F1, "", f"{_detection_f1(aggregates):.4f}", ""])
        return f"convention: {self.name}\n\n" + markdown_table(["Metric", "n", "mean ± std", "median"], body)

    def summary_rows(self, aggregates: Mapping) -> list[dict]:
        """One CSV row per column's statistics, per side-road label's precision/recall/F1, and their mean/std."""
        rows = [{"metric": metric, **stats} for metric, stats in aggregates.items() if metric != "dect_avg"]
        for key, entry in aggregates["dect_avg"].items():
            if "label" in entry:
                rows += [{"metric": f"Detection_{score}_{entry['label']}", "mean": entry[score]}
                         for score in ("precision", "recall", "f1_score")]
            else:
                rows.append({"metric": f"Detection_{key}", **entry})
        return rows

    def comparison_table(self, trainers: Sequence[tuple[str, str, Mapping | None]]) -> str:
        headers = ["Trainer", "Row", "n", *HEADLINE, "Side-road F1"]
        body = []
        for trainer, row_label, aggregates in trainers:
            if not aggregates:
                body.append([trainer, row_label, "0"] + ["-"] * (len(headers) - 3))
                continue
            n = aggregates.get("Dice_ClsAvgDice", {}).get("count", 0)
            cells = [_mean_std(aggregates.get(m)) for m in HEADLINE]
            body.append([trainer, row_label, f"{n:g}", *cells, f"{_detection_f1(aggregates):.4f}"])
        return markdown_table(headers, body)

    def comparison_note(self, distance_unit: str) -> str:
        return ("Cells: mean ± std (sample std, as pandas) over every scored case of the trainer, folds pooled; "
                f"distances in {distance_unit}; Side-road F1: F1 of each side-road label's detections over the "
                "trainer's cases (IoU >= 0.25), averaged over the labels. No p-values.")


TOPBRAIN = TopBrain()
