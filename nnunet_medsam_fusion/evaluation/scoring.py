"""Scoring one case: a predicted label map against its reference, per label (or per slice), and pairing cases.

``score_case`` is where a case's metric rows are made: it checks that both files lie on one grid and hold only
known labels, then calls ``metrics.binary_metrics`` once per label.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nnunet_medsam_fusion.evaluation.conventions.ours import binary_metrics
from nnunet_medsam_fusion.evaluation.reading import read_pair
from nnunet_medsam_fusion.text import short_list


def _check_known_values(case: str, array: np.ndarray, allowed: set[int], what: str) -> None:
    unknown = sorted(set(np.unique(array).tolist()) - allowed)
    if unknown:
        raise ValueError(f"case {case}: {what} holds label value(s) {unknown} that dataset.json does not "
                         f"list (known: {sorted(allowed)}); pass the right --dataset-json or fix the labels")


def score_case(case: str, pred_path: Path, ref_path: Path, labels: Mapping[str, tuple[int, ...]] | None,
               ignore_value: int | None = None, per_slice: bool = False) -> list[dict]:
    """Rows for one case. ``labels=None`` scores every value found in the pair (each its own label)."""
    pred, ref, ref_geometry = read_pair(case, pred_path, ref_path)
    ref_spacing = ref_geometry.array_spacing
    if labels is None:
        found = sorted((set(np.unique(pred).tolist()) | set(np.unique(ref).tolist())) - {0})
        labels = {f"label_{v}": (v,) for v in found}
    else:
        allowed = {0} | {v for values in labels.values() for v in values}
        allowed |= set() if ignore_value is None else {ignore_value}
        _check_known_values(case, pred, allowed, "the prediction")
        _check_known_values(case, ref, allowed, "the reference")
    valid = None if ignore_value is None else ref != ignore_value

    rows = []
    for name, values in labels.items():
        pred_mask, ref_mask = np.isin(pred, values), np.isin(ref, values)
        if valid is not None:
            pred_mask &= valid
        base = {"case": case, "label": name, "label_values": list(values)}
        if not per_slice:
            rows.append({**base, **binary_metrics(pred_mask, ref_mask, ref_spacing)})
            continue
        if ref.ndim != 3:
            raise ValueError(f"case {case}: per-slice mode needs 3D volumes, got shape {ref.shape}")
        for index in np.flatnonzero(pred_mask.any(axis=(1, 2)) | ref_mask.any(axis=(1, 2))):
            metrics = binary_metrics(pred_mask[index], ref_mask[index], ref_spacing[1:])
            rows.append({**base, "slice": int(index), **metrics})
    return rows


def timed_score_case(arguments: tuple) -> tuple[list[dict], float]:
    """``score_case(*arguments)`` and its duration in seconds (one picklable job for a process pool)."""
    start = time.perf_counter()
    rows = score_case(*arguments)
    return rows, time.perf_counter() - start


def both_empty_row(case: str, label: str, values: tuple[int, ...]) -> dict:
    """The row of a label absent from both masks of a case."""
    zeros = np.zeros((1, 1, 1), dtype=bool)  # every metric and count of two empty masks
    metrics = binary_metrics(zeros, zeros, (1, 1, 1))
    return {"case": case, "label": label, "label_values": list(values), **metrics}


def pair_cases(pred_cases: Mapping[str, Path], ref_cases: Mapping[str, Path],
               cases: Sequence[str] | None = None,
               only_predicted: bool = False) -> tuple[list[str], list[str]]:
    """The case ids to score and the listed ones without a prediction; raises on a prediction without
    reference and, unless ``only_predicted``, on a missing prediction.

    ``cases`` narrows the reference cases to a list (e.g. a fold's validation cases).
    """
    extra = sorted(set(pred_cases) - set(ref_cases))
    if extra:
        raise ValueError(f"{len(extra)} prediction(s) have no reference: {short_list(extra)}; remove them or "
                         "pass the reference folder that holds them")
    listed = list(cases) if cases is not None else sorted(ref_cases)
    no_reference = [c for c in listed if c not in ref_cases]
    if no_reference:
        raise ValueError(f"no reference for case(s) {short_list(no_reference)}; check the reference folder")
    unpredicted = [c for c in listed if c not in pred_cases]
    if unpredicted and not only_predicted:
        raise ValueError(f"missing prediction(s) for {len(unpredicted)} case(s): {short_list(unpredicted)}; "
                         "predict them or evaluate only the predicted cases (--only-predicted)")
    return [c for c in listed if c in pred_cases], unpredicted
