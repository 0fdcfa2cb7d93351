"""TopCoW 2024 task-1 graph metrics: group-2 detection, Circle-of-Willis variant classification, topology matching.

These read the anatomy off the label map's adjacency (26-neighbourhood), as the official evaluation
(github CoWBenchmark/TopCoW_Eval_Metrics) does; docs/evaluation.md cites file and line for each rule.
Per-case results keep the official nested layout (``all_detection_dicts``, ``all_graph_dicts``,
``all_topo_dicts``) so they aggregate the same way: F1 per group-2 label and variant-balanced accuracies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_medsam_fusion.evaluation.kernels.label_index import LabelIndex
from nnunet_medsam_fusion.evaluation.kernels.label_metrics import LABEL_NAMES, index_pair, jaccard, overlap_counts

GROUP2_LABELS = (8, 9, 10, 15)  # constants.py:46-47: R-Pcom, L-Pcom, Acom, 3rd-A2
IOU_THRESHOLD = 0.25  # constants.py:49-51
ANTERIOR_LABELS = (10, 11, 12, 15)  # constants.py:63-64
POSTERIOR_LABELS = (2, 3, 8, 9)  # constants.py:65-66
NOT_MATCHED = "FAIL"  # aggregate_all_topo_dicts.py:55-56


@dataclass(frozen=True)
class LabelFacts:
    """What the graph rules need to know of one label in one mask."""

    b0: int
    neighbours: tuple[int, ...]  # other labels among the 26 neighbours of the label's voxels
    x_median: float  # median x index (last numpy axis) of the label's voxels, for the left-right check


def label_facts(mask: np.ndarray | LabelIndex) -> dict[int, LabelFacts]:
    """Facts of every present label (utils_neighborhood.py:151-180 neighbours, cls_avg_b0.py:54-60 b0)."""
    index = mask if isinstance(mask, LabelIndex) else LabelIndex.of(np.asarray(mask, dtype=np.uint8))
    x = index.coords[:, 2] if index.size else np.zeros(0)
    return {label: LabelFacts(b0=index.betti0[label], neighbours=index.neighbours[label],
                              x_median=float(np.median(x[index.labels == label])))
            for label in index.present()}


def _touches(facts: Mapping[int, LabelFacts], label: int, other: int) -> bool:
    return label in facts and other in facts[label].neighbours


def edge_list(facts: Mapping[int, LabelFacts]) -> tuple[list[int], list[int]]:
    """Anterior [L-A1, Acom, 3rd-A2, R-A1] and posterior [L-Pcom, L-P1, R-P1, R-Pcom] edges, 1 = present.

    generate_edgelist.py:65-82: A1 exists when ACA touches the same side's ICA (edge_criteria.py:17-76), P1 when
    PCA touches BA (edge_criteria.py:79-139); Acom, 3rd-A2 and the Pcoms exist when their label is present.
    """
    anterior = [_touches(facts, 12, 6), 10 in facts, 15 in facts, _touches(facts, 11, 4)]
    posterior = [9 in facts, _touches(facts, 3, 1), _touches(facts, 2, 1), 8 in facts]
    return [int(e) for e in anterior], [int(e) for e in posterior]


def variant_name(edges: Sequence[int], region: str) -> str:
    """Variant class string, e.g. ``Var_Ant_1_0_1_1`` (edge_list_to_variant_str.py:1-13)."""
    if region not in ("Ant", "Pos"):
        raise ValueError(f"region must be 'Ant' or 'Pos', got {region!r}")
    return f"Var_{region}_" + "_".join(str(int(e)) for e in edges)


def detection(ref: LabelIndex, pred: LabelIndex, label: int, intersections: np.ndarray) -> str:
    """TP/FN by IoU >= 0.25 when the label is in the reference, else FP/TN (detection_grp2_labels.py:61-117)."""
    if ref.counts[label]:
        overlap = jaccard(int(intersections[label]), int(ref.counts[label]), int(pred.counts[label]))
        return "TP" if overlap >= IOU_THRESHOLD else "FN"
    return "FP" if pred.counts[label] else "TN"


def left_right_flipped(facts: Mapping[int, LabelFacts], region: str) -> bool:
    """Left label's median x below the right one's (check_LR_flip.py:16-95; LPS+, so left has larger x).

    Anterior compares the ICAs, else the ACAs; posterior the PCAs; False when a pair is incomplete.
    """
    pairs = ((6, 4), (12, 11)) if region == "anterior" else ((3, 2),)
    for left, right in pairs:
        if left in facts and right in facts:
            return bool(facts[left].x_median < facts[right].x_median)
    return False


def graph_metrics(ref: np.ndarray | LabelIndex, pred: np.ndarray | LabelIndex) -> dict[str, dict]:
    """The nested per-case dicts: detection (group 2), graph classification and topology matching.

    score_case_task_1_seg.py:106-121; graph_classification.py:15-91; topology_matching.py:34-368.
    """
    if not isinstance(ref, LabelIndex):
        ref, pred = index_pair(ref, pred)
    intersections, _ = overlap_counts(ref, pred)
    ref_facts, pred_facts = label_facts(ref), label_facts(pred)
    detections = {label: detection(ref, pred, label, intersections)
                  for label in sorted(set(GROUP2_LABELS) | set(ANTERIOR_LABELS) | set(POSTERIOR_LABELS))}
    detection_dict = {str(label): {"label": LABEL_NAMES[label], "Detection": detections[label]}
                      for label in GROUP2_LABELS}
    ref_graph, pred_graph = edge_list(ref_facts), edge_list(pred_facts)
    graph_dict = {"anterior": {"gt_graph": ref_graph[0], "pred_graph": pred_graph[0]},
                  "posterior": {"gt_graph": ref_graph[1], "pred_graph": pred_graph[1]}}
    topo: dict = {"gt_topology": {}, "pred_topology": {}, "match_verdict": {}}
    for index, (region, labels) in enumerate((("anterior", ANTERIOR_LABELS), ("posterior", POSTERIOR_LABELS))):
        gt_part = {"graph": ref_graph[index]}
        pred_part = {"graph": pred_graph[index]}
        for label in labels:
            gt_part[LABEL_NAMES[label]] = _topo_entry(ref_facts.get(label))
            pred_part[LABEL_NAMES[label]] = {"detection": detections[label], **_topo_entry(pred_facts.get(label))}
        pred_part["LR_flipped"] = left_right_flipped(pred_facts, region)
        topo["gt_topology"][region] = gt_part
        topo["pred_topology"][region] = pred_part
        topo["match_verdict"][region] = topology_match(gt_part, pred_part, labels)
    return {"all_detection_dicts": detection_dict, "all_graph_dicts": graph_dict, "all_topo_dicts": topo}


def _topo_entry(facts: LabelFacts | None) -> dict:
    if facts is None:
        return {"b0": 0, "neighbors": []}
    return {"b0": facts.b0, "neighbors": list(facts.neighbours)}


def topology_match(gt_part: Mapping, pred_part: Mapping, labels: Iterable[int]) -> bool:
    """Match when every label is TP or TN, has the same neighbours and b0, and nothing is left-right flipped.

    topology_matching.py:309-368.
    """
    for label in labels:
        gt_label, pred_label = gt_part[LABEL_NAMES[label]], pred_part[LABEL_NAMES[label]]
        if pred_label["detection"] not in ("TP", "TN"):
            return False
        if gt_label["neighbors"] != pred_label["neighbors"] or gt_label["b0"] != pred_label["b0"]:
            return False
    return not pred_part["LR_flipped"]


def aggregate_detections(detection_dicts: Iterable[Mapping]) -> dict:
    """Precision, recall and F1 per group-2 label over all cases, NaN counted as 0, and their mean/std.

    aggregate_all_detection_dicts.py:30-170 (std is numpy's population std, line 150-165).
    """
    counts = {str(label): {"TP": 0, "TN": 0, "FP": 0, "FN": 0} for label in GROUP2_LABELS}
    for case in detection_dicts:
        for label, value in case.items():
            counts[label][value["Detection"]] += 1
    result: dict = {}
    columns: dict[str, list[float]] = {"precision": [], "recall": [], "f1_score": []}
    for label, c in counts.items():
        tp, fp, fn = c["TP"], c["FP"], c["FN"]
        scores = {"precision": tp / (tp + fp) if tp + fp else 0, "recall": tp / (tp + fn) if tp + fn else 0,
                  "f1_score": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0}
        result[label] = {"label": LABEL_NAMES[int(label)], **scores}
        for key, value in scores.items():
            columns[key].append(value)
    for key, values in columns.items():
        result[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return result


def balanced_accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Mean recall over the classes present in ``y_true`` (sklearn's balanced_accuracy_score, which TopCoW uses)."""
    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"need as many predictions as references and at least one: {len(y_true)} vs {len(y_pred)}")
    recalls = []
    for cls in sorted(set(y_true)):
        members = [p for t, p in zip(y_true, y_pred, strict=True) if t == cls]
        recalls.append(sum(p == cls for p in members) / len(members))
    return float(np.mean(recalls))


def aggregate_graphs(graph_dicts: Sequence[Mapping]) -> dict[str, float]:
    """Variant-balanced classification accuracy, anterior and posterior (aggregate_all_graph_dicts.py:17-114)."""
    result = {}
    for region, short in (("anterior", "Ant"), ("posterior", "Pos")):
        y_true = [variant_name(g[region]["gt_graph"], short) for g in graph_dicts]
        y_pred = [variant_name(g[region]["pred_graph"], short) for g in graph_dicts]
        result[region] = balanced_accuracy(y_true, y_pred)
    return result


def aggregate_topologies(topo_dicts: Sequence[Mapping]) -> dict[str, float]:
    """Variant-balanced topology match rate; a failed match counts as class FAIL.

    aggregate_all_topo_dicts.py:17-115.
    """
    result = {}
    for region, short in (("anterior", "Ant"), ("posterior", "Pos")):
        y_true = [variant_name(t["gt_topology"][region]["graph"], short) for t in topo_dicts]
        verdicts = [t["match_verdict"][region] for t in topo_dicts]
        y_pred = [truth if matched else NOT_MATCHED for truth, matched in zip(y_true, verdicts, strict=True)]
        result[region] = balanced_accuracy(y_true, y_pred)
    return result
