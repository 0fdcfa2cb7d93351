"""``nnmsf compare --convention topcow``: the trainers side by side in TopCoW 2024's task-1 metrics.

The trainers' folds are found and scored as for ``ours`` (runs.py, case_sets.py), each case under the TopCoW
convention; this module pools every trainer's scored cases (all folds) and aggregates them the official way
(topcow_scoring.aggregate_topcow), so a cell compares with a TopCoW leaderboard column. Our choices: cases are
pooled over folds, and no p-values are given (TopCoW ranks, it does not test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nnunet_medsam_fusion.evaluation.runs import TrainerRun
from nnunet_medsam_fusion.evaluation.topcow_evaluate import CONVENTION_TEXT, HEADLINE, summary_rows
from nnunet_medsam_fusion.evaluation.topcow_scoring import CONVENTION, aggregate_topcow
from nnunet_medsam_fusion.evaluation.writing import refuse_to_overwrite, write_csv
from nnunet_medsam_fusion.text import markdown_table

CASE_HEAD = ("trainer", "paper_row", "encoder", "fold", "convention", "case")
SUMMARY_COLUMNS = ("trainer", "paper_row", "convention", "metric", "mean", "std", "count", "min", "25pc", "50pc",
                   "75pc", "max")


@dataclass
class TopCowComparisonResult:
    """Each trainer's pooled TopCoW aggregates, its per-case rows and what was missing."""

    dataset: str
    mode: str
    runs: dict[str, TrainerRun]
    aggregates: dict[str, dict]  # trainer -> aggregate_topcow of its scored cases
    problems: list[str]
    distance_unit: str = "mm"
    missing_folds: list[str] = field(default_factory=list)
    convention: str = CONVENTION

    @property
    def rows(self) -> list[dict]:
        return [row for run in self.runs.values() for row in run.rows]

    @property
    def stats(self) -> list[dict]:
        """Summary CSV rows: every aggregated quantity per trainer."""
        return [{"trainer": trainer, "paper_row": self.runs[trainer].row_label, **row}
                for trainer, aggregates in self.aggregates.items()
                for row in summary_rows(aggregates, self.convention)]

    def table(self) -> str:
        headers = ["Trainer", "Row", "n", *HEADLINE, "Grp-2 F1", "Graph acc. Ant/Pos", "Topo match Ant/Pos"]
        body = []
        for trainer, run in self.runs.items():
            aggregates = self.aggregates.get(trainer)
            if not aggregates:
                body.append([trainer, run.row_label, "0"] + ["-"] * (len(headers) - 3))
                continue
            n = aggregates.get("Dice_ClsAvgDice", {}).get("count", 0)
            cells = [f"{aggregates[m]['mean']:.4f} ± {_std(aggregates[m]['std'])}" for m in HEADLINE]
            graph, topo = aggregates["graph_var_bal_acc"], aggregates["topo_var_bal_acc"]
            cells += [f"{aggregates['dect_avg']['f1_score']['mean']:.4f}",
                      f"{graph['anterior']:.4f} / {graph['posterior']:.4f}",
                      f"{topo['anterior']:.4f} / {topo['posterior']:.4f}"]
            body.append([trainer, run.row_label, f"{n:g}", *cells])
        return markdown_table(headers, body)

    def markdown(self) -> str:
        lines = [f"# Comparison on {self.dataset} ({self.mode} predictions), convention: {self.convention}", "",
                 f"Metric rules: {CONVENTION_TEXT}. Cells: mean ± std (sample std, as pandas) over every scored "
                 f"case of the trainer, folds pooled; distances in {self.distance_unit}; Grp-2 F1: mean F1 of "
                 "the R-Pcom, L-Pcom, Acom and 3rd-A2 detections; accuracies are variant-balanced. No p-values.",
                 ""]
        if self.missing_folds:
            lines += [f"**Missing folds: {', '.join(self.missing_folds)}** have no scored case (see Problems).", ""]
        lines += ["## TopCoW task-1 metrics", "", self.table(), ""]
        lines += ["## Problems", ""] + ([f"- {p}" for p in self.problems] or ["- none"])
        return "\n".join(lines) + "\n"


def _std(value: float) -> str:
    return "-" if value != value else f"{value:.4f}"  # NaN for a single case


def topcow_comparison(dataset: str, mode: str, runs: dict[str, TrainerRun], problems: list[str],
                      distance_unit: str, missing_folds: list[str]) -> TopCowComparisonResult:
    """Pool each trainer's TopCoW-scored cases and aggregate them."""
    aggregates = {}
    for trainer, run in runs.items():
        cases = [case for result in run.evaluations.values() for case in result.cases]
        if cases:
            aggregates[trainer] = aggregate_topcow(cases)
    return TopCowComparisonResult(dataset=dataset, mode=mode, runs=runs, aggregates=aggregates, problems=problems,
                                  distance_unit=distance_unit, missing_folds=missing_folds)


def write_topcow_comparison(result: TopCowComparisonResult, out_dir: Path,
                            overwrite: bool = False) -> dict[str, Path]:
    """``compare.md``, ``compare_cases.csv`` and ``compare_summary.csv``, each naming the convention."""
    paths = {"markdown": out_dir / "compare.md", "cases_csv": out_dir / "compare_cases.csv",
             "summary_csv": out_dir / "compare_summary.csv"}
    refuse_to_overwrite(paths.values(), overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths["markdown"].write_text(result.markdown())
    rows = result.rows
    columns = list(CASE_HEAD)
    for row in rows:
        columns += [key for key in row if key not in columns]
    write_csv(paths["cases_csv"], rows, columns)
    write_csv(paths["summary_csv"], result.stats, SUMMARY_COLUMNS)
    return paths
