"""Comparing trainers (``nnmsf compare``): each trainer's trained folds or test predictions, scored and summarised.

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
from typing import Any

from tqdm import tqdm

from nnunet_medsam_fusion.evaluation.case_sets import check_case_sets
from nnunet_medsam_fusion.evaluation.conventions import DEFAULT, get_convention
from nnunet_medsam_fusion.evaluation.runs import (
    TEST_FOLD,
    TrainerRun,
    dataset_name_of_test_set,
    find_test_runs,
    find_validation_runs,
    resolve_dataset_name,
)
from nnunet_medsam_fusion.evaluation.statistics import trainer_statistics
from nnunet_medsam_fusion.settings import nnunet_folder
from nnunet_medsam_fusion.trainer_table import paper_row


@dataclass
class ComparisonResult:
    """Every trainer's scored runs, what was missing, and the convention's numbers over them (data only).

    ``ours``: per-trainer ``stats`` (mean ± std, fold means, Wilcoxon p against ``reference``) per label and
    metric; any other convention: ``aggregates``, each trainer's scored cases pooled over folds and aggregated
    the convention's way.
    """

    dataset: str
    mode: str
    runs: dict[str, TrainerRun]
    problems: list[str]
    convention: str = DEFAULT
    distance_unit: str = "mm"
    missing_folds: list[str] = field(default_factory=list)  # requested folds no trainer has (allow_partial)
    reference: str | None = None
    labels: list[str] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    aggregates: dict[str, dict] = field(default_factory=dict)  # trainer -> aggregates (not ours)

    @property
    def rows(self) -> list[dict]:
        return [row for run in self.runs.values() for row in run.rows]

    def stat(self, trainer: str, label: str, metric: str) -> dict | None:
        for entry in self.stats:
            if (entry["trainer"], entry["label"], entry["metric"]) == (trainer, label, metric):
                return entry
        return None


def _choose_reference(runs: Mapping[str, TrainerRun], reference: str | None) -> str | None:
    scored = [t for t, run in runs.items() if run.evaluations]
    if reference is not None:
        if reference not in runs:
            raise ValueError(f"reference trainer {reference} is not among --trainers {list(runs)}; add it")
        return reference if reference in scored and len(scored) > 1 else None
    baseline = [t for t in scored if paper_row(t) == "nnUNet"]
    candidates = baseline or scored
    return candidates[0] if len(scored) > 1 else None


def compare_runs(dataset: str | int, trainers: Sequence[str],
                 folds: Sequence[int | str] = (0, 1, 2, 3, 4), *, configuration: str = "2d",
                 plans: str = "nnUNetPlans", reference: str | None = None,
                 pred_dirs: Mapping[str, Path | str] | None = None,
                 test_pred_root: Path | str | None = None, ref_dir: Path | str | None = None,
                 dataset_json: Path | str | None = None, results_dir: Path | str | None = None,
                 allow_partial: bool = False, num_workers: int = 1, convention: str = DEFAULT,
                 roi_dir: Path | str | None = None, options: Mapping[str, Any] | None = None) -> ComparisonResult:
    """Score every trainer's folds (or test predictions) and build the paper's tables.

    ``results_dir`` is nnU-Net's results folder (default ``$nnUNet_results``): validation predictions and, in
    both modes, each model folder's record of its foundation encoder weights are read from it. Raises when
    nothing was scored or, unless ``allow_partial``, when a requested fold or case is missing for a trainer.
    The default reference for p-values is the plain nnU-Net trainer when compared, else the first trainer.
    Another ``convention`` (e.g. "topcow", optionally on ``roi_dir`` crops) scores every case its way and gives
    each trainer's cases, pooled over folds, aggregated its way (``aggregates``) instead of ``stats``.
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
                              results_dir, num_workers, progress, convention=convention, roi_dir=roi_dir,
                              options=options)
    else:
        mode, dataset_name, fold_names = "validation", resolve_dataset_name(dataset), [str(f) for f in folds]
        runs = find_validation_runs(dataset_name, trainers, fold_names, plans, configuration, results_dir,
                                    ref_dir, dataset_json, num_workers, progress, convention=convention,
                                    roi_dir=roi_dir, options=options)
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
    notes = [f"{run.trainer} fold {fold}: {note}" for run in runs.values()
             for fold, result in run.evaluations.items() for note in result.notes]
    if convention != DEFAULT:
        rules = get_convention(convention)
        aggregates = {}
        for trainer, run in runs.items():
            rows = [row for result in run.evaluations.values() for row in result.rows]
            if rows:
                aggregates[trainer] = rules.aggregate(rows, {})
        return ComparisonResult(dataset=dataset_name, mode=mode, runs=runs, problems=problems + notes,
                                convention=convention, distance_unit=units.pop(), missing_folds=absent,
                                aggregates=aggregates)
    chosen_reference = _choose_reference(runs, reference)
    if reference is not None and chosen_reference is None:
        problems.append(f"reference trainer {reference} has no scored fold (or is the only one): no p-values")
    return ComparisonResult(dataset=dataset_name, mode=mode, runs=runs, problems=problems + notes,
                            distance_unit=units.pop(), missing_folds=absent, reference=chosen_reference,
                            labels=labels, stats=trainer_statistics(runs, labels, chosen_reference))
