"""``compare.md`` from a ``ComparisonResult``: the paper's comparison and ablation tables (``ours``), or the
convention's own comparison table (any other convention).

Cells are mean ± std across cases; p-values (Wilcoxon against the reference trainer) carry a marker when they
are not meaningful, explained under the tables; rows with a random, tiny or unverified foundation encoder say
so next to the paper's row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunet_medsam_fusion.evaluation.comparison import ComparisonResult
from nnunet_medsam_fusion.evaluation.conventions import DEFAULT, get_convention
from nnunet_medsam_fusion.evaluation.conventions.ours import CONVENTIONS, METRICS, TOPOLOGY_METRICS
from nnunet_medsam_fusion.evaluation.formatting import format_mean_std, metric_title
from nnunet_medsam_fusion.evaluation.runs import TrainerRun
from nnunet_medsam_fusion.evaluation.statistics import P_CAVEATS
from nnunet_medsam_fusion.text import markdown_table
from nnunet_medsam_fusion.trainer_table import PAPER_ORDER, PAPER_ROWS, paper_row

SURFACE_METRICS = ("dice", "iou", "hd95", "asd")
FOLD_TABLE = "Across folds: mean ± std of per-fold means"


@dataclass(frozen=True)
class TableLayout:
    """One of the paper's tables: its metrics and, for ablations, the paper rows it holds (None: all)."""

    title: str
    metrics: tuple[str, ...]
    paper_rows: tuple[str, ...] | None = None


PAPER_TABLES = (
    TableLayout("Comparison: Dice / IoU / HD95 / ASD", SURFACE_METRICS),
    TableLayout("Comparison: precision / recall / F1", ("precision", "recall", "f1")),
    TableLayout("Ablation: loss function (focal loss)", SURFACE_METRICS,
                ("Full (MS)", "w/o FL (MS)", "Full (MS2)", "w/o FL (MS2)")),
    TableLayout("Ablation: feature fusion", SURFACE_METRICS, ("Full (MS)", "Full (MS2)", "w/o FF")),
    TableLayout("Topology (not in the paper): clDice, Betti-number errors, false islands",
                ("cldice",) + TOPOLOGY_METRICS),
)


def comparison_tables(result: ComparisonResult) -> dict[str, str]:
    """Markdown tables keyed by title: the paper's layouts per label, then across-fold means."""
    tables = {}
    for label in result.labels:
        suffix = f" [{label}]" if len(result.labels) > 1 else ""
        for layout in PAPER_TABLES:
            tables[layout.title + suffix] = _layout_table(result, layout, label)
        if result.mode == "validation":
            tables[FOLD_TABLE + suffix] = _fold_table(result, label)
    return tables


def comparison_markdown(result: ComparisonResult) -> str:
    """compare.md: how to read the cells, the encoder and fold warnings, the tables, conventions, problems."""
    if result.convention != DEFAULT:
        return _convention_markdown(result)
    reference = result.reference or "none (fewer than two trainers with results)"
    lines = [f"# Comparison on {result.dataset} ({result.mode} predictions), convention: ours", "",
             "Cells: mean ± std across cases (Dice, IoU, precision, recall, F1, clDice in %; "
             f"HD95, ASD in {result.distance_unit}; Betti-number errors and false islands as counts per case); "
             "p: two-sided Wilcoxon signed-rank test on paired cases against the "
             f"reference trainer **{reference}**; 'undef.': cases with an empty prediction or reference, "
             "left out of the mean.", ""]
    if result.missing_folds:
        scored = sorted({fold for run in result.runs.values() for fold in run.evaluations})
        lines += [f"**Missing folds: {', '.join(result.missing_folds)}** were requested but have no scored case "
                  f"for any trainer; the tables hold fold(s) {', '.join(scored)} only (see Problems).", ""]
    marked = [run for run in result.runs.values() if run.weights is not None and run.weights.mark]
    if marked:
        lines += ["**Foundation encoders that are not the pretrained ones:** " + "; ".join(
            f"{run.trainer} ({run.weights.mark})" for run in marked)
            + ". A random encoder's features mean nothing: such rows test the pipeline, not the paper's "
            "method. 'not verified': no model folder was found to read the record from.", ""]
    used = sorted({caveat.split(":")[0] for entry in result.stats for caveat in entry["p_caveat"].split("; ")
                   if caveat})
    if used:
        lines += ["**p-values that are not meaningful** are marked: " + "; ".join(
            f"{P_CAVEATS[name][0]} {P_CAVEATS[name][1]}" for name in used) + ".", ""]
    for title, table in comparison_tables(result).items():
        lines += [f"## {title}", "", table, ""]
    encoders = [run for run in result.runs.values() if run.weights is not None]
    if encoders:
        lines += ["## Foundation encoder weights", ""]
        lines += [f"- {run.trainer}: {run.weights.describe()}" for run in encoders] + [""]
    lines += ["## Conventions", "", "- convention: ours (the default; `--convention topcow` scores as TopCoW 2024)"]
    lines += [f"- {key}: {text}" for key, text in CONVENTIONS.items()] + [""]
    lines += ["## Problems", ""] + ([f"- {p}" for p in result.problems] or ["- none"])
    return "\n".join(lines) + "\n"


def _row_head(result: ComparisonResult, run: TrainerRun | None, trainer: str) -> list[str]:
    if run is None or not run.evaluations:
        label = run.row_label if run is not None else paper_row(trainer) or ""
        return [trainer, label, "MISSING", "0"]
    folds = ",".join(run.evaluations)
    n = max((len([r for r in run.rows if r["label"] == label]) for label in result.labels), default=0)
    return [trainer, run.row_label, folds, str(n)]


def _p_text(result: ComparisonResult, trainer: str, entry: dict) -> str:
    if trainer == result.reference:
        return " (ref.)"
    if np.isnan(entry["p_value"]):
        return ""
    return f" (p={entry['p_value']:.3g}{entry['p_marker']})"


def _layout_table(result: ComparisonResult, layout: TableLayout, label: str) -> str:
    headers = ["Trainer", "Paper row", "Folds", "n"] + [metric_title(m, result.distance_unit)
                                                        for m in layout.metrics]
    body = []
    for trainer in _layout_trainers(result, layout):
        run = result.runs.get(trainer)
        cells = _row_head(result, run, trainer)
        if cells[2] == "MISSING":
            body.append(cells + ["missing (see Problems)"] * len(layout.metrics))
            continue
        for metric in layout.metrics:
            entry = result.stat(trainer, label, metric)
            cells.append(format_mean_std(entry, metric) + _p_text(result, trainer, entry))
        body.append(cells)
    if layout.paper_rows is not None:
        present = {paper_row(t) for t in result.runs}
        for name in layout.paper_rows:
            if name not in present:
                body.append([f"({_trainer_of(name)})", name, "not compared", "0"]
                            + ["not in --trainers"] * len(layout.metrics))
    return markdown_table(headers, body)


def _layout_trainers(result: ComparisonResult, layout: TableLayout) -> list[str]:
    if layout.paper_rows is None:  # every trainer: the paper's rows in its order, then the others as given
        order = {name: i for i, name in enumerate(PAPER_ORDER)}
        return sorted(result.runs, key=lambda t: order.get(paper_row(t), len(order)))
    order = {name: i for i, name in enumerate(layout.paper_rows)}
    chosen = [t for t in result.runs if paper_row(t) in order]
    return sorted(chosen, key=lambda t: order[paper_row(t)])


def _fold_table(result: ComparisonResult, label: str) -> str:
    headers = ["Trainer", "Paper row", "Folds", "n"] + [metric_title(m, result.distance_unit) for m in METRICS]
    body = []
    for trainer in _layout_trainers(result, PAPER_TABLES[0]):
        run = result.runs[trainer]
        cells = _row_head(result, run, trainer)
        if cells[2] == "MISSING":
            body.append(cells + ["missing"] * len(METRICS))
            continue
        for metric in METRICS:
            entry = result.stat(trainer, label, metric)
            fold_stats = {"mean": entry["fold_mean"], "std": entry["fold_std"], "n": entry["n_folds"],
                          "n_undefined": 0}
            cells.append(format_mean_std(fold_stats, metric))
        body.append(cells)
    return markdown_table(headers, body)


def _trainer_of(name: str) -> str:
    return next(trainer for trainer, row in PAPER_ROWS.items() if row == name)


def _convention_markdown(result: ComparisonResult) -> str:
    """compare.md of a convention other than ours: its rules, its comparison table, the problems."""
    rules = get_convention(result.convention)
    lines = [f"# Comparison on {result.dataset} ({result.mode} predictions), convention: {rules.name}", "",
             f"Metric rules: {rules.text}. {rules.comparison_note(result.distance_unit)}", ""]
    if result.missing_folds:
        lines += [f"**Missing folds: {', '.join(result.missing_folds)}** have no scored case (see Problems).", ""]
    trainers = [(trainer, run.row_label, result.aggregates.get(trainer)) for trainer, run in result.runs.items()]
    lines += [f"## {rules.title}", "", rules.comparison_table(trainers), ""]
    lines += ["## Problems", ""] + ([f"- {p}" for p in result.problems] or ["- none"])
    return "\n".join(lines) + "\n"
