"""The paper's comparison and ablation tables from trained nnU-Net folds (``nnmsf compare``).

Two sources of predictions:

* validation (default): ``$nnUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}/fold_k/
  validation/`` against ``$nnUNet_preprocessed/DatasetXXX_Name/gt_segmentations/``; the fold's expected
  cases come from ``splits_final.json`` so an unfinished validation is caught;
* a test set: one prediction folder per trainer (``pred_dirs`` or subfolders of ``test_pred_root`` named
  after the trainers) against one reference folder.

A missing trainer, fold or case never stops the comparison: it is listed under "Problems" and shown in
the tables. Wilcoxon signed-rank tests pair each trainer's cases with the reference trainer's.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

from nnunet_medsam_fusion.evaluation.evaluate import (
    COUNT_COLUMNS,
    METRIC_TITLES,
    EvaluationResult,
    evaluate_folders,
    format_mean_std,
    markdown_table,
    mean_std,
    refuse_to_overwrite,
    write_csv,
)
from nnunet_medsam_fusion.evaluation.metrics import CONVENTIONS, METRICS

# The paper's row names. "Ours (MS)"/"Ours (MS2)" in its comparison tables are the "Full" ablation rows.
PAPER_ROWS = {
    "nnUNetTrainer": "nnUNet",
    "nnUNetTrainerFocalDice": "w/o FF",
    "nnUNetTrainerMedSAMFusion": "Full (MS)",
    "nnUNetTrainerMedSAM2Fusion": "Full (MS2)",
    "nnUNetTrainerMedSAMFusion_noFocal": "w/o FL (MS)",
    "nnUNetTrainerMedSAM2Fusion_noFocal": "w/o FL (MS2)",
    # The same methods with tiny encoders of the real classes (tests, CPU demo): the trainer column says which.
    "nnUNetTrainerMedSAMFusionTiny": "Full (MS)",
    "nnUNetTrainerMedSAM2FusionTiny": "Full (MS2)",
}
SURFACE_METRICS = ("dice", "iou", "hd95", "asd")


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
    TableLayout("Topology (not in the paper): clDice", ("cldice",)),
)


def paper_row(trainer: str) -> str | None:
    """The paper's row for a trainer, allowing schedule suffixes (``nnUNetTrainerFocalDice_demo``)."""
    matches = [base for base in PAPER_ROWS if trainer == base or trainer.startswith(base + "_")]
    return PAPER_ROWS[max(matches, key=len)] if matches else None


@dataclass
class TrainerRun:
    """What was found and scored for one trainer: one evaluation per usable fold, problems for the rest."""

    trainer: str
    evaluations: dict[str, EvaluationResult] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def paper_row(self) -> str | None:
        return paper_row(self.trainer)

    @property
    def rows(self) -> list[dict]:
        return [{"trainer": self.trainer, "paper_row": self.paper_row or "", "fold": fold, **row}
                for fold, result in self.evaluations.items() for row in result.rows]


@dataclass
class ComparisonResult:
    """All per-case rows, per-trainer statistics and the tables built from them."""

    dataset: str
    mode: str
    reference: str | None
    labels: list[str]
    runs: dict[str, TrainerRun]
    stats: list[dict]
    problems: list[str]

    @property
    def rows(self) -> list[dict]:
        return [row for run in self.runs.values() for row in run.rows]

    def stat(self, trainer: str, label: str, metric: str) -> dict | None:
        for entry in self.stats:
            if (entry["trainer"], entry["label"], entry["metric"]) == (trainer, label, metric):
                return entry
        return None

    def tables(self) -> dict[str, str]:
        """Markdown tables keyed by title: the paper's layouts per label, then across-fold means."""
        tables = {}
        for label in self.labels:
            suffix = f" [{label}]" if len(self.labels) > 1 else ""
            for layout in PAPER_TABLES:
                tables[layout.title + suffix] = self._layout_table(layout, label)
            if self.mode == "validation":
                tables["Across folds: mean ± std of per-fold means" + suffix] = self._fold_table(label)
        return tables

    def markdown(self) -> str:
        reference = self.reference or "none (fewer than two trainers with results)"
        lines = [f"# Comparison on {self.dataset} ({self.mode} predictions)", "",
                 "Cells: mean ± std across cases (Dice, IoU, precision, recall, F1, clDice in %; "
                 "HD95, ASD in mm); p: two-sided Wilcoxon signed-rank test on paired cases against the "
                 f"reference trainer **{reference}**; 'undef.': cases with an empty prediction or reference, "
                 "left out of the mean.",
                 ""]
        for title, table in self.tables().items():
            lines += [f"## {title}", "", table, ""]
        lines += ["## Conventions", ""] + [f"- {key}: {text}" for key, text in CONVENTIONS.items()] + [""]
        lines += ["## Problems", ""] + ([f"- {p}" for p in self.problems] or ["- none"])
        return "\n".join(lines) + "\n"

    def _row_head(self, run: TrainerRun | None, trainer: str) -> list[str]:
        if run is None or not run.evaluations:
            return [trainer, paper_row(trainer) or "", "MISSING", "0"]
        folds = ",".join(run.evaluations)
        n = max((len([r for r in run.rows if r["label"] == label]) for label in self.labels), default=0)
        return [trainer, run.paper_row or "", folds, str(n)]

    def _layout_table(self, layout: TableLayout, label: str) -> str:
        headers = ["Trainer", "Paper row", "Folds", "n"] + [METRIC_TITLES[m] for m in layout.metrics]
        body = []
        for trainer in self._layout_trainers(layout):
            run = self.runs.get(trainer)
            cells = self._row_head(run, trainer)
            if cells[2] == "MISSING":
                body.append(cells + ["missing (see Problems)"] * len(layout.metrics))
                continue
            for metric in layout.metrics:
                entry = self.stat(trainer, label, metric)
                text = format_mean_std(entry, metric)
                if trainer == self.reference:
                    text += " (ref.)"
                elif not np.isnan(entry["p_value"]):
                    text += f" (p={entry['p_value']:.3g})"
                cells.append(text)
            body.append(cells)
        if layout.paper_rows is not None:
            present = {paper_row(t) for t in self.runs}
            for name in layout.paper_rows:
                if name not in present:
                    body.append([f"({_trainer_of(name)})", name, "not compared", "0"]
                                + ["not in --trainers"] * len(layout.metrics))
        return markdown_table(headers, body)

    def _layout_trainers(self, layout: TableLayout) -> list[str]:
        if layout.paper_rows is None:
            return list(self.runs)
        order = {name: i for i, name in enumerate(layout.paper_rows)}
        chosen = [t for t in self.runs if paper_row(t) in order]
        return sorted(chosen, key=lambda t: order[paper_row(t)])

    def _fold_table(self, label: str) -> str:
        headers = ["Trainer", "Paper row", "Folds", "n"] + [METRIC_TITLES[m] for m in METRICS]
        body = []
        for trainer, run in self.runs.items():
            cells = self._row_head(run, trainer)
            if cells[2] == "MISSING":
                body.append(cells + ["missing"] * len(METRICS))
                continue
            for metric in METRICS:
                entry = self.stat(trainer, label, metric)
                fold_stats = {"mean": entry["fold_mean"], "std": entry["fold_std"], "n": entry["n_folds"],
                              "n_undefined": 0}
                cells.append(format_mean_std(fold_stats, metric))
            body.append(cells)
        return markdown_table(headers, body)


def _trainer_of(name: str) -> str:
    return next(trainer for trainer, row in PAPER_ROWS.items() if row == name)


# ----------------------------------------------------------------------------------------------- finding runs
def _env_folder(variable: str, purpose: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        raise ValueError(f"{variable} is not set; export it ({purpose}) or give prediction folders with "
                         "--pred-dirs / --test-pred-root and --ref")
    return Path(value)


def resolve_dataset_name(dataset: str | int) -> str:
    """``DatasetXXX_Name`` from an id or name, through nnU-Net's own lookup."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(dataset)
    except RuntimeError as err:  # nnU-Net raises RuntimeError; the CLI reports ValueError as a usage error
        raise ValueError(f"cannot resolve dataset {dataset!r}: {err}") from err


def _validation_cases(preprocessed: Path, fold: str) -> list[str] | None:
    splits_file = preprocessed / "splits_final.json"
    if fold == "all" or not splits_file.is_file():
        return None
    splits = json.loads(splits_file.read_text())
    return list(splits[int(fold)]["val"]) if int(fold) < len(splits) else None


def _evaluate_fold(run: TrainerRun, fold: str, pred_dir: Path, ref_dir: Path, dataset_json: Path | None,
                   cases: Sequence[str] | None, num_workers: int) -> None:
    """Score one fold into ``run``; any input problem becomes a flagged problem instead of a crash."""
    try:
        run.evaluations[fold] = evaluate_folders(pred_dir, ref_dir, dataset_json, cases=cases,
                                                 only_predicted=cases is None, num_workers=num_workers)
    except (ValueError, FileNotFoundError) as err:
        run.problems.append(f"{run.trainer} fold {fold}: not scored: {err}")


def _find_validation_runs(dataset_name: str, trainers: Sequence[str], folds: Sequence[str], plans: str,
                          configuration: str, ref_dir: Path | None, dataset_json: Path | None,
                          num_workers: int) -> dict[str, TrainerRun]:
    results = _env_folder("nnUNet_results", "the folder nnUNetv2_train wrote into") / dataset_name
    preprocessed = None
    if ref_dir is None or dataset_json is None:
        preprocessed = _env_folder("nnUNet_preprocessed", "it holds gt_segmentations") / dataset_name
    ref_dir = ref_dir or preprocessed / "gt_segmentations"
    runs = {}
    for trainer in trainers:
        run = runs[trainer] = TrainerRun(trainer)
        model_dir = results / f"{trainer}__{plans}__{configuration}"
        if not model_dir.is_dir():
            others = sorted(p.name for p in results.glob(f"{trainer}__*")) if results.is_dir() else []
            hint = f" (found {', '.join(others)}: pass --plans/--configuration)" if others else ""
            run.problems.append(f"{trainer}: not trained: no folder {model_dir}{hint}")
            continue
        trainer_json = dataset_json or (model_dir / "dataset.json" if (model_dir / "dataset.json").is_file()
                                        else preprocessed / "dataset.json")
        for fold in folds:
            validation = model_dir / f"fold_{fold}" / "validation"
            if not (model_dir / f"fold_{fold}").is_dir():
                run.problems.append(f"{trainer} fold {fold}: not trained (no {model_dir / f'fold_{fold}'})")
                continue
            if not validation.is_dir():
                run.problems.append(f"{trainer} fold {fold}: no validation folder {validation} (training "
                                    "unfinished? finish it, or run nnUNetv2_train with --val)")
                continue
            cases = _validation_cases(preprocessed, fold) if preprocessed is not None else None
            _evaluate_fold(run, fold, validation, ref_dir, trainer_json, cases, num_workers)
    return runs


def _find_test_runs(trainers: Sequence[str], pred_dirs: Mapping[str, Path], ref_dir: Path,
                    dataset_json: Path | None, num_workers: int) -> dict[str, TrainerRun]:
    runs = {}
    for trainer in trainers:
        run = runs[trainer] = TrainerRun(trainer)
        folder = pred_dirs.get(trainer)
        if folder is None or not Path(folder).is_dir():
            run.problems.append(f"{trainer}: no test predictions (folder {folder} missing)")
            continue
        _evaluate_fold(run, "test", Path(folder), ref_dir, dataset_json, None, num_workers)
    return runs


# ----------------------------------------------------------------------------------------------- statistics
def paired_wilcoxon(values: Mapping, reference_values: Mapping) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p-value over keys defined in both mappings, and the number of pairs."""
    keys = [k for k in values if k in reference_values
            and not np.isnan(values[k]) and not np.isnan(reference_values[k])]
    if not keys:
        return float("nan"), 0
    x = np.array([values[k] for k in keys])
    y = np.array([reference_values[k] for k in keys])
    if np.allclose(x, y, rtol=0, atol=1e-12):
        return 1.0, len(keys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(wilcoxon(x, y).pvalue), len(keys)


def _metric_values(run: TrainerRun, label: str, metric: str) -> dict[tuple, float]:
    rows = [row for row in run.rows if row["label"] == label]
    return {(row["fold"], row["case"], row.get("slice")): row[metric] for row in rows}


def trainer_statistics(runs: Mapping[str, TrainerRun], labels: Sequence[str],
                       reference: str | None) -> list[dict]:
    """Per trainer, label and metric: across-case and across-fold mean ± std and the paired p-value."""
    stats = []
    for trainer, run in runs.items():
        if not run.evaluations:
            continue
        for label in labels:
            for metric in METRICS:
                values = _metric_values(run, label, metric)
                fold_means = [mean_std(v for (f, _, _), v in values.items() if f == fold)["mean"]
                              for fold in run.evaluations]
                folds = mean_std(fold_means)
                p_value, n_pairs = float("nan"), 0
                if reference is not None and trainer != reference:
                    reference_values = _metric_values(runs[reference], label, metric)
                    p_value, n_pairs = paired_wilcoxon(values, reference_values)
                stats.append({"trainer": trainer, "paper_row": run.paper_row or "", "label": label,
                              "metric": metric, **mean_std(values.values()), "fold_mean": folds["mean"],
                              "fold_std": folds["std"], "n_folds": folds["n"], "p_value": p_value,
                              "n_pairs": n_pairs, "reference": reference or ""})
    return stats


def _choose_reference(runs: Mapping[str, TrainerRun], reference: str | None) -> str | None:
    scored = [t for t, run in runs.items() if run.evaluations]
    if reference is not None:
        if reference not in runs:
            raise ValueError(f"reference trainer {reference} is not among --trainers {list(runs)}; add it")
        return reference if reference in scored and len(scored) > 1 else None
    baseline = [t for t in scored if paper_row(t) == "nnUNet"]
    candidates = baseline or scored
    return candidates[0] if len(scored) > 1 else None


# ----------------------------------------------------------------------------------------------- entry point
def compare_trainers(dataset: str | int, trainers: Sequence[str],
                     folds: Sequence[int | str] = (0, 1, 2, 3, 4), *, configuration: str = "2d",
                     plans: str = "nnUNetPlans", reference: str | None = None,
                     pred_dirs: Mapping[str, Path | str] | None = None,
                     test_pred_root: Path | str | None = None, ref_dir: Path | str | None = None,
                     dataset_json: Path | str | None = None,
                     out_dir: Path | str | None = None, num_workers: int = 1,
                     overwrite: bool = False) -> ComparisonResult:
    """Score every trainer's folds (or test predictions) and build the paper's tables.

    With ``out_dir`` writes ``compare.md``, ``compare_cases.csv`` and ``compare_summary.csv`` there.
    The default reference for p-values is the plain nnU-Net trainer when compared, else the first trainer.
    """
    if not trainers:
        raise ValueError("no trainer given; pass --trainers nnUNetTrainer nnUNetTrainerMedSAMFusion ...")
    if len(set(trainers)) != len(trainers):
        raise ValueError(f"--trainers lists a trainer twice: {list(trainers)}")
    ref_dir = Path(ref_dir) if ref_dir is not None else None
    dataset_json = Path(dataset_json) if dataset_json is not None else None
    if pred_dirs is not None or test_pred_root is not None:
        if ref_dir is None:
            raise ValueError("test-set predictions need the reference folder: pass --ref LABELS_DIR")
        folders = {t: Path(d) for t, d in (pred_dirs or {}).items()}
        if test_pred_root is not None:
            folders = {t: Path(test_pred_root) / t for t in trainers} | folders
        unknown = sorted(set(folders) - set(trainers))
        if unknown:
            raise ValueError(f"--pred-dirs names trainer(s) {unknown} missing from --trainers; add them")
        mode, dataset_name = "test", str(dataset)
        runs = _find_test_runs(trainers, folders, ref_dir, dataset_json, num_workers)
    else:
        mode, dataset_name = "validation", resolve_dataset_name(dataset)
        runs = _find_validation_runs(dataset_name, trainers, [str(f) for f in folds], plans, configuration,
                                     ref_dir, dataset_json, num_workers)

    labels = []
    for run in runs.values():
        for result in run.evaluations.values():
            labels += [name for name in result.labels if name not in labels]
    chosen_reference = _choose_reference(runs, reference)
    problems = [p for run in runs.values() for p in run.problems]
    if reference is not None and chosen_reference is None:
        problems.append(f"reference trainer {reference} has no scored fold (or is the only one): no p-values")
    for run in runs.values():
        for fold, result in run.evaluations.items():
            problems += [f"{run.trainer} fold {fold}: {note}" for note in result.notes]
    result = ComparisonResult(dataset=dataset_name, mode=mode, reference=chosen_reference, labels=labels,
                              runs=runs, stats=trainer_statistics(runs, labels, chosen_reference),
                              problems=problems)
    if out_dir is not None:
        write_comparison(result, Path(out_dir), overwrite=overwrite)
    return result


def write_comparison(result: ComparisonResult, out_dir: Path, overwrite: bool = False) -> dict[str, Path]:
    """``compare.md`` (tables), ``compare_cases.csv`` (every scored case) and ``compare_summary.csv``."""
    paths = {"markdown": out_dir / "compare.md", "cases_csv": out_dir / "compare_cases.csv",
             "summary_csv": out_dir / "compare_summary.csv"}
    refuse_to_overwrite(paths.values(), overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths["markdown"].write_text(result.markdown())
    case_columns = ["trainer", "paper_row", "fold", "case", "slice", "label", "status"]
    write_csv(paths["cases_csv"], result.rows, case_columns + list(METRICS) + list(COUNT_COLUMNS))
    write_csv(paths["summary_csv"], result.stats,
              ["trainer", "paper_row", "label", "metric", "mean", "std", "n", "n_undefined", "fold_mean",
               "fold_std", "n_folds", "reference", "p_value", "n_pairs"])
    return paths
