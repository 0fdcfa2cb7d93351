"""The paper's comparison and ablation tables from trained nnU-Net folds (``nnmsf compare``).

Two sources of predictions (``runs.py``):

* validation (default): ``$nnUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}/fold_k/
  validation/`` against ``$nnUNet_preprocessed/DatasetXXX_Name/gt_segmentations/``; the fold's expected
  cases come from ``splits_final.json`` so an unfinished validation is caught;
* a test set: one prediction folder per trainer (``pred_dirs`` or subfolders of ``test_pred_root`` named
  after the trainers) against one reference folder.

Trainers are compared on the same cases or not at all (``case_sets.py``): nothing scored, a requested fold
no trainer has, or trainers scored on different case sets is an error naming what is missing, unless
``allow_partial`` is given; then the gaps are listed under "Problems" and every row shows its n. Wilcoxon
signed-rank tests pair each trainer's cases with the reference trainer's (``statistics.py``). A row whose
foundation encoder had random weights says so in every table, CSV and figure (``provenance.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from nnunet_medsam_fusion.evaluation.case_sets import check_case_sets
from nnunet_medsam_fusion.evaluation.comparison_tables import comparison_markdown, comparison_tables
from nnunet_medsam_fusion.evaluation.runs import (
    TEST_FOLD,
    TrainerRun,
    dataset_name_of_test_set,
    find_test_runs,
    find_validation_runs,
    resolve_dataset_name,
)
from nnunet_medsam_fusion.evaluation.statistics import trainer_statistics
from nnunet_medsam_fusion.evaluation.topcow_compare import (
    TopCowComparisonResult,
    topcow_comparison,
    write_topcow_comparison,
)
from nnunet_medsam_fusion.evaluation.writing import write_comparison
from nnunet_medsam_fusion.settings import nnunet_folder
from nnunet_medsam_fusion.trainer_table import paper_row


@dataclass
class ComparisonResult:
    """All per-case rows, per-trainer statistics and what was missing; ``markdown()`` renders the tables."""

    dataset: str
    mode: str
    reference: str | None
    labels: list[str]
    runs: dict[str, TrainerRun]
    stats: list[dict]
    problems: list[str]
    distance_unit: str = "mm"
    missing_folds: list[str] = field(default_factory=list)  # requested folds no trainer has (allow_partial)

    @property
    def rows(self) -> list[dict]:
        return [row for run in self.runs.values() for row in run.rows]

    def stat(self, trainer: str, label: str, metric: str) -> dict | None:
        for entry in self.stats:
            if (entry["trainer"], entry["label"], entry["metric"]) == (trainer, label, metric):
                return entry
        return None

    def tables(self) -> dict[str, str]:
        return comparison_tables(self)

    def markdown(self) -> str:
        return comparison_markdown(self)


def _choose_reference(runs: Mapping[str, TrainerRun], reference: str | None) -> str | None:
    scored = [t for t, run in runs.items() if run.evaluations]
    if reference is not None:
        if reference not in runs:
            raise ValueError(f"reference trainer {reference} is not among --trainers {list(runs)}; add it")
        return reference if reference in scored and len(scored) > 1 else None
    baseline = [t for t in scored if paper_row(t) == "nnUNet"]
    candidates = baseline or scored
    return candidates[0] if len(scored) > 1 else None


def compare_trainers(dataset: str | int, trainers: Sequence[str],
                     folds: Sequence[int | str] = (0, 1, 2, 3, 4), *, configuration: str = "2d",
                     plans: str = "nnUNetPlans", reference: str | None = None,
                     pred_dirs: Mapping[str, Path | str] | None = None,
                     test_pred_root: Path | str | None = None, ref_dir: Path | str | None = None,
                     dataset_json: Path | str | None = None, results_dir: Path | str | None = None,
                     allow_partial: bool = False, out_dir: Path | str | None = None, num_workers: int = 1,
                     overwrite: bool = False, convention: str = "ours",
                     roi_dir: Path | str | None = None) -> ComparisonResult | TopCowComparisonResult:
    """Score every trainer's folds (or test predictions) and build the paper's tables.

    ``results_dir`` is nnU-Net's results folder (default ``$nnUNet_results``): validation predictions and, in
    both modes, each model folder's record of its foundation encoder weights are read from it. Raises when
    nothing was scored or, unless ``allow_partial``, when a requested fold or case is missing for a trainer.
    With ``out_dir`` writes ``compare.md``, ``compare_cases.csv`` and ``compare_summary.csv`` there.
    The default reference for p-values is the plain nnU-Net trainer when compared, else the first trainer.
    ``convention="topcow"`` scores every case as TopCoW 2024 does (optionally on ``roi_dir`` crops) and returns
    the trainers' pooled TopCoW aggregates instead of the paper's tables (topcow_compare.py).
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
        mode, dataset_name, fold_names = "test", dataset_name_of_test_set(dataset, results_dir), [TEST_FOLD]
        runs = find_test_runs(dataset_name, trainers, folders, ref_dir, dataset_json, plans, configuration,
                              results_dir, num_workers, progress, convention=convention, roi_dir=roi_dir)
    else:
        mode, dataset_name, fold_names = "validation", resolve_dataset_name(dataset), [str(f) for f in folds]
        runs = find_validation_runs(dataset_name, trainers, fold_names, plans, configuration, results_dir,
                                    ref_dir, dataset_json, num_workers, progress, convention=convention,
                                    roi_dir=roi_dir)
    progress.close()

    labels = []
    for run in runs.values():
        for result in run.evaluations.values():
            labels += [name for name in result.labels if name not in labels]
    problems = [p for run in runs.values() for p in run.problems]
    absent, gaps = check_case_sets(runs, fold_names, problems, allow_partial)
    problems += gaps
    units = {result.distance_unit for run in runs.values() for result in run.evaluations.values()}
    if len(units) > 1:
        raise ValueError(f"trainers' predictions mix distance units {sorted(units)} (file formats with and "
                         "without physical spacing); compare predictions of one format")
    if convention == "topcow":
        for run in runs.values():
            for fold, result in run.evaluations.items():
                problems += [f"{run.trainer} fold {fold}: {note}" for note in result.notes]
        comparison = topcow_comparison(dataset_name, mode, runs, problems, units.pop(), absent)
        if out_dir is not None:
            write_topcow_comparison(comparison, Path(out_dir), overwrite=overwrite)
        return comparison
    chosen_reference = _choose_reference(runs, reference)
    if reference is not None and chosen_reference is None:
        problems.append(f"reference trainer {reference} has no scored fold (or is the only one): no p-values")
    for run in runs.values():
        for fold, result in run.evaluations.items():
            problems += [f"{run.trainer} fold {fold}: {note}" for note in result.notes]
    result = ComparisonResult(dataset=dataset_name, mode=mode, reference=chosen_reference, labels=labels,
                              runs=runs, stats=trainer_statistics(runs, labels, chosen_reference),
                              problems=problems, distance_unit=units.pop(), missing_folds=absent)
    if out_dir is not None:
        write_comparison(result, Path(out_dir), overwrite=overwrite)
    return result
