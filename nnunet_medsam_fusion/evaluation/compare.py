"""The paper's comparison and ablation tables from trained nnU-Net folds (``nnmsf compare``).

Two sources of predictions:

* validation (default): ``$nnUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}/fold_k/
  validation/`` against ``$nnUNet_preprocessed/DatasetXXX_Name/gt_segmentations/``; the fold's expected
  cases come from ``splits_final.json`` so an unfinished validation is caught;
* a test set: one prediction folder per trainer (``pred_dirs`` or subfolders of ``test_pred_root`` named
  after the trainers) against one reference folder.

Trainers are compared on the same cases or not at all: nothing scored, or trainers scored on different case
sets (a missing trainer, fold or case), is an error naming what is missing, unless ``allow_partial`` is given;
then the gaps are listed under "Problems" and every row shows its n. Wilcoxon signed-rank tests pair each
trainer's cases with the reference trainer's. A row whose foundation encoder had random (or unrecorded)
weights says so in every table, CSV and figure: the model folder's plans.json is the record.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon
from tqdm import tqdm

from nnunet_medsam_fusion.evaluation.evaluate import (
    COUNT_COLUMNS,
    EvaluationResult,
    evaluate_folders,
    format_mean_std,
    markdown_table,
    mean_std,
    metric_title,
    metric_unit,
    refuse_to_overwrite,
    short_list,
    write_csv,
)
from nnunet_medsam_fusion.evaluation.metrics import CONVENTIONS, METRICS, TOPOLOGY_METRICS
from nnunet_medsam_fusion.settings import nnunet_folder

# The paper's row names, in the order of its Table 1 (then the ablation rows). "Ours (MS)"/"Ours (MS2)" in its
# comparison tables are the "Full" ablation rows; "w/o FF" is nnU-Net with focal loss.
PAPER_ROWS = {
    "nnUNetTrainerUNet": "UNet",
    "nnUNetTrainerSwinUNet": "SwinUNet",
    "nnUNetTrainerTransUNet": "TransUNet",
    "nnUNetTrainer": "nnUNet",
    "nnUNetTrainerFocalDice": "w/o FF",
    "nnUNetTrainerMedSAMFusion": "Full (MS)",
    "nnUNetTrainerMedSAM2Fusion": "Full (MS2)",
    "nnUNetTrainerMedSAMFusion_noFocal": "w/o FL (MS)",
    "nnUNetTrainerMedSAM2Fusion_noFocal": "w/o FL (MS2)",
}
PAPER_ORDER = tuple(PAPER_ROWS.values())
# Schedule variants train the same method for less time (trainers/schedules.py): they keep the paper row.
SCHEDULE_SUFFIX = re.compile(r"_(demo|smoke|\d+epochs)$")
TINY = "Tiny"  # nnUNetTrainerMedSAMFusionTiny...: the same method with a tiny encoder of the real class
RANDOM_WEIGHTS_LOG_LINE = "RANDOM, UNTRAINED weights"  # what the trainer logs for a random encoder
PRETRAINED_LOG_LINE = re.compile(r"Foundation encoder .* loaded from (\S+)")
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
    TableLayout("Topology (not in the paper): clDice, Betti-number errors, false islands",
                ("cldice",) + TOPOLOGY_METRICS),
)


def _method_name(trainer: str) -> str:
    """The trainer without schedule suffixes and without the Tiny marker: the method it trains."""
    while SCHEDULE_SUFFIX.search(trainer):
        trainer = SCHEDULE_SUFFIX.sub("", trainer)
    return trainer.replace(f"Fusion{TINY}", "Fusion")


def paper_row(trainer: str) -> str | None:
    """The paper's row for a trainer's method (schedule suffixes and tiny encoders allowed; marks come apart).

    Other variants (``_512`` encoder input, ``_SkelRecall`` loss) are not the paper's rows: None.
    """
    return PAPER_ROWS.get(_method_name(trainer))


@dataclass(frozen=True)
class EncoderWeights:
    """What is recorded about a trainer's foundation encoder weights: 'pretrained', 'random' or 'unknown'."""

    status: str
    tiny: bool
    source: str
    file: str | None = None
    sha256: str | None = None

    @property
    def mark(self) -> str:
        """What a table row must say next to the paper's row ('' for a pretrained full-size encoder)."""
        if self.status == "random":
            return "random tiny encoder" if self.tiny else "random encoder"
        if self.status == "unknown":
            return "tiny encoder, weights unknown" if self.tiny else "encoder weights unknown"
        return "tiny encoder" if self.tiny else ""

    def describe(self) -> str:
        text = {"pretrained": "pretrained", "random": "RANDOM weights", "unknown": "weights UNKNOWN"}[self.status]
        text += " (tiny encoder)" if self.tiny else ""
        if self.file:
            text += f", file {self.file}"
        if self.sha256:
            text += f", sha256 {self.sha256}"
        return f"{text}; source: {self.source}"


def model_folder(results_dir: Path | None, dataset_name: str, trainer: str, plans: str,
                 configuration: str) -> Path | None:
    """``results/DatasetXXX_Name/{trainer}__{plans}__{configuration}`` (may not exist); None without results."""
    if results_dir is None:
        return None
    return Path(results_dir) / dataset_name / f"{trainer}__{plans}__{configuration}"


def encoder_weights(model_dir: Path | None, configuration: str, trainer: str) -> EncoderWeights | None:
    """The foundation encoder weights a model was trained with; None when the trainer has no such encoder.

    The record is ``plans.json`` -> ``configurations[configuration]["foundation_weights"]`` (null: random;
    ``{"file", "sha256"}``: pretrained). Older model folders lack it: their training logs are read for the
    trainer's random-weights warning or its "loaded from" line, else the weights are unknown. Without a model
    folder, trainers named like a fusion trainer are "unknown".
    """
    tiny = TINY in trainer
    plans_file = model_dir / "plans.json" if model_dir is not None else None
    if plans_file is None or not plans_file.is_file():
        if "Fusion" in _method_name(trainer) or tiny:
            where = model_dir or "(no nnU-Net results folder given: pass --results)"
            return EncoderWeights("unknown", tiny, f"no model folder {where} to read the record from")
        return None
    config = json.loads(plans_file.read_text()).get("configurations", {}).get(configuration, {})
    spec = config.get("foundation")
    if spec is None:
        return None
    tiny = tiny or (isinstance(spec, dict) and spec.get("size") == "tiny")
    if "foundation_weights" in config:
        recorded = config["foundation_weights"]
        if recorded is None:
            return EncoderWeights("random", tiny, f"{plans_file} (foundation_weights: null)")
        return EncoderWeights("pretrained", tiny, str(plans_file), recorded.get("file"), recorded.get("sha256"))
    logs = sorted(model_dir.glob("fold_*/training_log_*.txt"))
    texts = [log.read_text(errors="replace") for log in logs]
    if any(RANDOM_WEIGHTS_LOG_LINE in text for text in texts):
        return EncoderWeights("random", tiny, "training log (plans.json predates the foundation_weights record)")
    loaded = [match.group(1) for text in texts for match in PRETRAINED_LOG_LINE.finditer(text)]
    if loaded:
        return EncoderWeights("pretrained", tiny, "training log, no digest (plans.json predates the "
                                                  "foundation_weights record)", file=loaded[0])
    return EncoderWeights("unknown", tiny, f"{plans_file} has no foundation_weights record and no training log "
                                           "says which weights were used")


@dataclass
class TrainerRun:
    """What was found and scored for one trainer: one evaluation per usable fold, problems for the rest."""

    trainer: str
    evaluations: dict[str, EvaluationResult] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    weights: EncoderWeights | None = None

    @property
    def paper_row(self) -> str | None:
        return paper_row(self.trainer)

    @property
    def row_label(self) -> str:
        """The paper's row with the encoder mark, e.g. 'Full (MS), random tiny encoder'."""
        mark = self.weights.mark if self.weights is not None else ""
        if not mark:
            return self.paper_row or ""
        return f"{self.paper_row}, {mark}" if self.paper_row else f"- ({mark})"

    @property
    def display_name(self) -> str:
        """The trainer name for figure titles and legends, with the encoder mark when there is one."""
        mark = self.weights.mark if self.weights is not None else ""
        return f"{self.trainer}\n[{mark}]" if mark else self.trainer

    @property
    def scored_cases(self) -> set[tuple[str, str]]:
        return {(fold, row["case"]) for fold, result in self.evaluations.items() for row in result.rows}

    @property
    def rows(self) -> list[dict]:
        encoder = self.weights.describe() if self.weights is not None else ""
        return [{"trainer": self.trainer, "paper_row": self.row_label, "encoder": encoder, "fold": fold, **row}
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
    distance_unit: str = "mm"

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
                 f"HD95, ASD in {self.distance_unit}; Betti-number errors and false islands as counts per case); "
                 "p: two-sided Wilcoxon signed-rank test on paired cases against the "
                 f"reference trainer **{reference}**; 'undef.': cases with an empty prediction or reference, "
                 "left out of the mean.",
                 ""]
        marked = [run for run in self.runs.values() if run.weights is not None and run.weights.mark]
        if marked:
            lines += ["**Foundation encoders that are not the pretrained ones:** " + "; ".join(
                f"{run.trainer} ({run.weights.mark})" for run in marked)
                + ". A random encoder's features mean nothing: such rows test the pipeline, not the paper's "
                "method. 'weights unknown': no record says which weights were used.", ""]
        for title, table in self.tables().items():
            lines += [f"## {title}", "", table, ""]
        encoders = [run for run in self.runs.values() if run.weights is not None]
        if encoders:
            lines += ["## Foundation encoder weights", ""]
            lines += [f"- {run.trainer}: {run.weights.describe()}" for run in encoders] + [""]
        lines += ["## Conventions", ""] + [f"- {key}: {text}" for key, text in CONVENTIONS.items()] + [""]
        lines += ["## Problems", ""] + ([f"- {p}" for p in self.problems] or ["- none"])
        return "\n".join(lines) + "\n"

    def _row_head(self, run: TrainerRun | None, trainer: str) -> list[str]:
        if run is None or not run.evaluations:
            label = run.row_label if run is not None else paper_row(trainer) or ""
            return [trainer, label, "MISSING", "0"]
        folds = ",".join(run.evaluations)
        n = max((len([r for r in run.rows if r["label"] == label]) for label in self.labels), default=0)
        return [trainer, run.row_label, folds, str(n)]

    def _layout_table(self, layout: TableLayout, label: str) -> str:
        headers = ["Trainer", "Paper row", "Folds", "n"] + [metric_title(m, self.distance_unit)
                                                            for m in layout.metrics]
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
        if layout.paper_rows is None:  # every trainer: the paper's rows in its order, then the others as given
            order = {name: i for i, name in enumerate(PAPER_ORDER)}
            return sorted(self.runs, key=lambda t: order.get(paper_row(t), len(order)))
        order = {name: i for i, name in enumerate(layout.paper_rows)}
        chosen = [t for t in self.runs if paper_row(t) in order]
        return sorted(chosen, key=lambda t: order[paper_row(t)])

    def _fold_table(self, label: str) -> str:
        headers = ["Trainer", "Paper row", "Folds", "n"] + [metric_title(m, self.distance_unit) for m in METRICS]
        body = []
        for trainer in self._layout_trainers(PAPER_TABLES[0]):
            run = self.runs[trainer]
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
def _required_folder(folder: Path | None, variable: str, purpose: str) -> Path:
    if folder is None:
        raise ValueError(f"{variable} is not set; export it ({purpose}) or give prediction folders with "
                         "--pred-dirs / --test-pred-root and --ref")
    return Path(folder)


def _test_dataset_name(dataset: str | int, results_dir: Path | None) -> str:
    """``DatasetXXX_Name`` for a test-set comparison without requiring nnU-Net's folders: as given, or the
    results folder's ``DatasetXXX_*`` for an id."""
    name = str(dataset)
    if name.startswith("Dataset") or not name.isdigit() or results_dir is None:
        return name
    found = sorted(Path(results_dir).glob(f"Dataset{int(name):03d}_*"))
    return found[0].name if found else name


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
                   cases: Sequence[str] | None, num_workers: int, only_predicted: bool) -> None:
    """Score one fold into ``run``; any input problem becomes a problem, judged after all trainers are scored."""
    try:
        run.evaluations[fold] = evaluate_folders(pred_dir, ref_dir, dataset_json, cases=cases,
                                                 only_predicted=only_predicted and cases is None,
                                                 num_workers=num_workers)
    except (ValueError, FileNotFoundError) as err:
        run.problems.append(f"{run.trainer} fold {fold}: not scored: {err}")


def _find_validation_runs(dataset_name: str, trainers: Sequence[str], folds: Sequence[str], plans: str,
                          configuration: str, results_dir: Path | None, ref_dir: Path | None,
                          dataset_json: Path | None, num_workers: int, progress: tqdm) -> dict[str, TrainerRun]:
    results_dir = _required_folder(results_dir, "nnUNet_results", "the folder nnUNetv2_train wrote into")
    results = results_dir / dataset_name
    preprocessed = None
    if ref_dir is None or dataset_json is None:
        preprocessed = _required_folder(nnunet_folder("nnUNet_preprocessed"), "nnUNet_preprocessed",
                                        "it holds gt_segmentations") / dataset_name
    ref_dir = ref_dir or preprocessed / "gt_segmentations"
    runs = {}
    for trainer in trainers:
        run = runs[trainer] = TrainerRun(trainer)
        model_dir = model_folder(results_dir, dataset_name, trainer, plans, configuration)
        run.weights = encoder_weights(model_dir, configuration, trainer)
        if not model_dir.is_dir():
            progress.update(len(folds))
            others = sorted(p.name for p in results.glob(f"{trainer}__*")) if results.is_dir() else []
            hint = f" (found {', '.join(others)}: pass --plans/--configuration)" if others else ""
            run.problems.append(f"{trainer}: not trained: no folder {model_dir}{hint}")
            continue
        trainer_json = dataset_json or (model_dir / "dataset.json" if (model_dir / "dataset.json").is_file()
                                        else preprocessed / "dataset.json")
        for fold in folds:
            progress.update()
            validation = model_dir / f"fold_{fold}" / "validation"
            if not (model_dir / f"fold_{fold}").is_dir():
                run.problems.append(f"{trainer} fold {fold}: not trained (no {model_dir / f'fold_{fold}'})")
                continue
            if not validation.is_dir():
                run.problems.append(f"{trainer} fold {fold}: no validation folder {validation} (training "
                                    "unfinished? finish it, or run nnUNetv2_train with --val)")
                continue
            cases = _validation_cases(preprocessed, fold) if preprocessed is not None else None
            _evaluate_fold(run, fold, validation, ref_dir, trainer_json, cases, num_workers, only_predicted=True)
    return runs


def _find_test_runs(dataset_name: str, trainers: Sequence[str], pred_dirs: Mapping[str, Path], ref_dir: Path,
                    dataset_json: Path | None, plans: str, configuration: str, results_dir: Path | None,
                    num_workers: int, allow_partial: bool, progress: tqdm) -> dict[str, TrainerRun]:
    runs = {}
    for trainer in trainers:
        progress.update()
        run = runs[trainer] = TrainerRun(trainer)
        run.weights = encoder_weights(model_folder(results_dir, dataset_name, trainer, plans, configuration),
                                      configuration, trainer)
        folder = pred_dirs.get(trainer)
        if folder is None or not Path(folder).is_dir():
            run.problems.append(f"{trainer}: no test predictions (folder {folder} missing)")
            continue
        _evaluate_fold(run, "test", Path(folder), ref_dir, dataset_json, None, num_workers,
                       only_predicted=allow_partial)
    return runs


def check_case_sets(runs: Mapping[str, TrainerRun], problems: Sequence[str], allow_partial: bool) -> list[str]:
    """Raise unless every trainer was scored on the same (fold, case) pairs; with ``allow_partial`` return the
    gaps as problems instead. Nothing scored at all is always an error."""
    scored = {trainer: run.scored_cases for trainer, run in runs.items()}
    union = set().union(*scored.values())
    details = "; ".join(problems) or "no prediction found"
    if not union:
        raise ValueError(f"nothing was scored for {', '.join(runs)}: {details}")
    gaps = []
    for trainer, cases in scored.items():
        missing = sorted(union - cases)
        if missing:
            by_fold: dict[str, list[str]] = {}
            for fold, case in missing:
                by_fold.setdefault(fold, []).append(case)
            names = "; ".join(f"fold {fold}: {short_list(names)}" for fold, names in by_fold.items())
            gaps.append(f"{trainer} lacks {len(missing)} of the {len(union)} case(s) the others were scored on "
                        f"({names})")
    if gaps and not allow_partial:
        raise ValueError("trainers were scored on different case sets: " + "; ".join(gaps) + f". Problems: "
                         f"{details}. Predict the missing cases, or pass --allow-partial (allow_partial=True) to "
                         "compare anyway (every row then shows its n)")
    return gaps



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
    unit = next((result.distance_unit for run in runs.values() for result in run.evaluations.values()), "mm")
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
                stats.append({"trainer": trainer, "paper_row": run.row_label, "label": label, "metric": metric,
                              "unit": metric_unit(metric, unit), **mean_std(values.values()),
                              "fold_mean": folds["mean"],
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
                     dataset_json: Path | str | None = None, results_dir: Path | str | None = None,
                     allow_partial: bool = False, out_dir: Path | str | None = None, num_workers: int = 1,
                     overwrite: bool = False) -> ComparisonResult:
    """Score every trainer's folds (or test predictions) and build the paper's tables.

    ``results_dir`` is nnU-Net's results folder (default ``$nnUNet_results``): validation predictions and, in
    both modes, each model folder's record of its foundation encoder weights are read from it. Raises when
    nothing was scored or, unless ``allow_partial``, when trainers were scored on different cases.
    With ``out_dir`` writes ``compare.md``, ``compare_cases.csv`` and ``compare_summary.csv`` there.
    The default reference for p-values is the plain nnU-Net trainer when compared, else the first trainer.
    """
    if not trainers:
        raise ValueError("no trainer given; pass --trainers nnUNetTrainer nnUNetTrainerMedSAMFusion ...")
    if len(set(trainers)) != len(trainers):
        raise ValueError(f"--trainers lists a trainer twice: {list(trainers)}")
    ref_dir = Path(ref_dir) if ref_dir is not None else None
    dataset_json = Path(dataset_json) if dataset_json is not None else None
    results_dir = Path(results_dir) if results_dir is not None else nnunet_folder("nnUNet_results")
    test_mode = pred_dirs is not None or test_pred_root is not None
    progress = tqdm(total=len(trainers) * (1 if test_mode else len(folds)), desc="compare", unit="fold",
                    disable=None)  # no bar when not writing to a terminal
    if test_mode:
        if ref_dir is None:
            raise ValueError("test-set predictions need the reference folder: pass --ref LABELS_DIR")
        folders = {t: Path(d) for t, d in (pred_dirs or {}).items()}
        if test_pred_root is not None:
            folders = {t: Path(test_pred_root) / t for t in trainers} | folders
        unknown = sorted(set(folders) - set(trainers))
        if unknown:
            raise ValueError(f"--pred-dirs names trainer(s) {unknown} missing from --trainers; add them")
        mode, dataset_name = "test", _test_dataset_name(dataset, results_dir)
        runs = _find_test_runs(dataset_name, trainers, folders, ref_dir, dataset_json, plans, configuration,
                               results_dir, num_workers, allow_partial, progress)
    else:
        mode, dataset_name = "validation", resolve_dataset_name(dataset)
        runs = _find_validation_runs(dataset_name, trainers, [str(f) for f in folds], plans, configuration,
                                     results_dir, ref_dir, dataset_json, num_workers, progress)
    progress.close()

    labels = []
    for run in runs.values():
        for result in run.evaluations.values():
            labels += [name for name in result.labels if name not in labels]
    problems = [p for run in runs.values() for p in run.problems]
    problems += check_case_sets(runs, problems, allow_partial)
    units = {result.distance_unit for run in runs.values() for result in run.evaluations.values()}
    if len(units) > 1:
        raise ValueError(f"trainers' predictions mix distance units {sorted(units)} (file formats with and "
                         "without physical spacing); compare predictions of one format")
    chosen_reference = _choose_reference(runs, reference)
    if reference is not None and chosen_reference is None:
        problems.append(f"reference trainer {reference} has no scored fold (or is the only one): no p-values")
    for run in runs.values():
        for fold, result in run.evaluations.items():
            problems += [f"{run.trainer} fold {fold}: {note}" for note in result.notes]
    result = ComparisonResult(dataset=dataset_name, mode=mode, reference=chosen_reference, labels=labels,
                              runs=runs, stats=trainer_statistics(runs, labels, chosen_reference),
                              problems=problems, distance_unit=units.pop())
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
    case_columns = ["trainer", "paper_row", "encoder", "fold", "case", "slice", "label", "status"]
    write_csv(paths["cases_csv"], result.rows, case_columns + list(METRICS) + list(COUNT_COLUMNS))
    write_csv(paths["summary_csv"], result.stats,
              ["trainer", "paper_row", "label", "metric", "unit", "mean", "std", "n", "n_undefined", "fold_mean",
               "fold_std", "n_folds", "reference", "p_value", "n_pairs"])
    return paths
