"""The printed tables of ``nnmsf evaluate``: one row per case, and the summary (markdown)."""

from __future__ import annotations

from nnunet_medsam_fusion.evaluation.conventions import DEFAULT, get_convention
from nnunet_medsam_fusion.evaluation.conventions.ours import METRICS
from nnunet_medsam_fusion.evaluation.folders import FolderEvaluation
from nnunet_medsam_fusion.evaluation.formatting import format_mean_std, format_value, metric_title
from nnunet_medsam_fusion.text import markdown_table


def summary_table(result: FolderEvaluation) -> str:
    """``ours``: one row per label, mean ± std per metric (% for overlaps, mm for distances); any other
    convention: its own summary of the aggregates."""
    if result.convention != DEFAULT:
        return get_convention(result.convention).summary_table(result.aggregates)
    headers = ["Label", "n"] + [metric_title(m, result.distance_unit) for m in METRICS]
    body = []
    for label, stats in result.aggregates.items():
        cells = [format_mean_std(stats["metrics"][m], m) for m in METRICS]
        body.append([label, str(stats["n_rows"])] + cells)
    return markdown_table(headers, body)


def case_table(result: FolderEvaluation) -> str:
    """One row per scored case (``ours``: per case and label, and slice in per-slice mode)."""
    if result.convention != DEFAULT:
        return get_convention(result.convention).case_table(result.rows)
    per_slice = result.mode == "per-slice"
    headers = ["Case"] + (["Slice"] if per_slice else []) + ["Label", "Status"]
    headers += [metric_title(m, result.distance_unit) for m in METRICS]
    body = []
    for row in result.rows:
        cells = [row["case"]] + ([str(row["slice"])] if per_slice else [])
        cells += [row["label"], row["status"]] + [format_value(row[m], m) for m in METRICS]
        body.append(cells)
    return markdown_table(headers, body)
