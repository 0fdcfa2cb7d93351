"""How numbers appear in tables: metric names and units, the paper's precision, markdown tables."""

from __future__ import annotations

import math
from collections.abc import Mapping

from nnunet_medsam_fusion.evaluation.conventions.ours import DISTANCE_METRICS, TOPOLOGY_METRICS, metric_unit

METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "asd": "ASD", "precision": "Precision",
                "recall": "Recall", "f1": "F1", "cldice": "clDice", "betti0_error": "β0 error",
                "betti1_error": "β1 error", "false_islands": "False islands",
                "false_island_voxels": "False-island voxels"}


def metric_title(metric: str, unit: str = "mm") -> str:
    """Column header, e.g. 'Dice (%)', 'HD95 (mm)', 'HD95 (px)', 'β0 error'."""
    shown = metric_unit(metric, unit)
    return METRIC_NAMES[metric] + ("" if shown == "count" else f" ({shown})")


def metric_scale(metric: str) -> float:
    """Factor from stored value to table value: 100 for overlaps (shown in %), else 1."""
    return 1.0 if metric in DISTANCE_METRICS or metric in TOPOLOGY_METRICS else 100.0


def format_value(value: float | None, metric: str) -> str:
    """One case's value in the paper's units ('undefined' for NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    if metric in TOPOLOGY_METRICS:
        return str(int(value))
    return f"{value:.2f}" if metric in DISTANCE_METRICS else f"{100 * value:.2f}"


def format_mean_std(stats: Mapping, metric: str) -> str:
    """``mean ± std`` in the paper's units, with the count of undefined cases when there are any."""
    if stats["n"] == 0:
        text = "undefined"
    else:
        scale = metric_scale(metric)
        text = f"{scale * stats['mean']:.2f} ± {scale * stats['std']:.2f}"
    if stats["n_undefined"]:
        text += f" ({stats['n_undefined']} undef.)"
    return text

