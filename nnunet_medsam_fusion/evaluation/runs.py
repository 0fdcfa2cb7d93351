"""Finding and scoring each trainer's predictions for ``nnmsf compare``: validation folds or test folders.

Every input problem (a trainer not trained, a fold without validation, a case without prediction) becomes a
problem of its ``TrainerRun``; the case-set check (``case_sets.py``) judges them once all trainers are scored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nnunet_medsam_fusion.evaluation.folders import FolderEvaluation, score_folders
from nnunet_medsam_fusion.evaluation.provenance import EncoderWeights, encoder_weights
from nnunet_medsam_fusion.model_folder import model_folder
from nnunet_medsam_fusion.settings import nnunet_folder
from nnunet_medsam_fusion.trainer_table import paper_row

TEST_FOLD = "test"  # the fold name of test-set predictions


@dataclass
class TrainerRun:
    """What was found and scored for one trainer: one evaluation per usable fold, problems for the rest."""

    trainer: str
    evaluations: dict[str, FolderEvaluation] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    weights: EncoderWeights | None = None
    searched: dict[str, Path] = field(default_factory=dict)  # fold -> the folder its predictions were sought in
    listed: dict[str, list[str]] = field(default_factory=dict)  # fold -> the cases it must hold, where known

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
    def expected_cases(self) -> set[tuple[str, str]]:
        """The (fold, case) pairs it was scored on or should have been (``listed``)."""
        return self.scored_cases | {(fold, case) for fold, cases in self.listed.items() for case in cases}

    def head(self, fold: str) -> dict:
        """The columns that start each of its rows in a comparison: trainer, paper row, encoder, fold."""
        encoder = self.weights.describe() if self.weights is not None else ""
        return {"trainer": self.trainer, "paper_row": self.row_label, "encoder": encoder, "fold": fold}

    @property
    def rows(self) -> list[dict]:
        return [{**self.head(fold), **row} for fold, result in self.evaluations.items() for row in result.rows]


def _required_folder(folder: Path | None, variable: str, purpose: str) -> Path:
    if folder is None:
        raise ValueError(f"{variable} is not set; export it ({purpose}) or give prediction folders with "
                         "--pred-dirs / --test-pred-root and --ref")
    return Path(folder)


def dataset_name_of_test_set(dataset: str | int, results_dir: Path | None) -> str:
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


def _score_fold(run: TrainerRun, fold: str, pred_dir: Path, ref_dir: Path, dataset_json: Path | None,
                cases: Sequence[str] | None, num_workers: int, complete: bool, convention: str = "ours",
                roi_dir: Path | None = None, options: Mapping[str, Any] | None = None) -> None:
    """Score the predicted cases of one fold into ``run``; any input problem becomes a problem of the run.

    ``complete``: the cases scored (``cases``, else every reference case) are all the fold must hold, so the
    unpredicted ones are kept for the case-set check (not so for a validation fold without splits_final.json,
    scored against all of gt_segmentations).
    """
    try:
        result = score_folders(pred_dir, ref_dir, dataset_json, cases=cases, only_predicted=True,
                               num_workers=num_workers, convention=convention, roi_dir=roi_dir, options=options)
    except (ValueError, FileNotFoundError) as err:
        run.problems.append(f"{run.trainer} fold {fold}: not scored: {err}")
        return
    run.evaluations[fold] = result
    if complete:
        run.listed[fold] = sorted({row["case"] for row in result.rows} | set(result.unpredicted))


def find_validation_runs(dataset_name: str, trainers: Sequence[str], folds: Sequence[str], plans: str,
                         configuration: str, results_dir: Path | None, ref_dir: Path | None,
                         dataset_json: Path | None, num_workers: int, progress: tqdm, convention: str = "ours",
                         roi_dir: Path | None = None,
                         options: Mapping[str, Any] | None = None) -> dict[str, TrainerRun]:
    """Each trainer's ``fold_k/validation`` predictions, scored against the fold's cases in splits_final.json."""
    results_dir = _required_folder(results_dir, "nnUNet_results", "the folder nnUNetv2_train wrote into")
    results = results_dir / dataset_name
    preprocessed = nnunet_folder("nnUNet_preprocessed")  # splits_final.json: the cases each fold must hold
    if ref_dir is None or dataset_json is None:
        preprocessed = _required_folder(preprocessed, "nnUNet_preprocessed", "it holds gt_segmentations")
    preprocessed = preprocessed / dataset_name if preprocessed is not None else None
    ref_dir = ref_dir or preprocessed / "gt_segmentations"
    runs = {}
    for trainer in trainers:
        run = runs[trainer] = TrainerRun(trainer)
        model_dir = model_folder(results_dir, dataset_name, trainer, plans, configuration)
        run.weights = encoder_weights(model_dir, configuration, trainer)
        run.searched = {fold: model_dir / f"fold_{fold}" / "validation" for fold in folds}
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
            validation = run.searched[fold]
            if not validation.parent.is_dir():
                run.problems.append(f"{trainer} fold {fold}: not trained (no {validation.parent})")
                continue
            if not validation.is_dir():
                run.problems.append(f"{trainer} fold {fold}: no validation folder {validation} (training "
                                    "unfinished? finish it, or run nnUNetv2_train with --val)")
                continue
            cases = _validation_cases(preprocessed, fold) if preprocessed is not None else None
            if preprocessed is None:
                run.problems.append(f"{trainer} fold {fold}: its validation cases are unknown (nnUNet_preprocessed "
                                    "is not set, so splits_final.json cannot be read): a case missing from "
                                    f"{validation} is not found; export nnUNet_preprocessed")
            _score_fold(run, fold, validation, ref_dir, trainer_json, cases, num_workers, complete=cases is not None,
                        convention=convention, roi_dir=roi_dir, options=options)
    return runs


def find_test_runs(dataset_name: str, trainers: Sequence[str], pred_dirs: Mapping[str, Path], ref_dir: Path,
                   dataset_json: Path | None, plans: str, configuration: str, results_dir: Path | None,
                   num_workers: int, progress: tqdm, convention: str = "ours",
                   roi_dir: Path | None = None,
                   options: Mapping[str, Any] | None = None) -> dict[str, TrainerRun]:
    """Each trainer's test-set prediction folder, scored against every case of the reference folder."""
    runs = {}
    for trainer in trainers:
        progress.update()
        run = runs[trainer] = TrainerRun(trainer)
        run.weights = encoder_weights(model_folder(results_dir, dataset_name, trainer, plans, configuration),
                                      configuration, trainer)
        folder = pred_dirs.get(trainer)
        run.searched = {TEST_FOLD: Path(folder)} if folder is not None else {}
        if folder is None or not Path(folder).is_dir():
            run.problems.append(f"{trainer}: no test predictions (folder {folder} missing)")
            continue
        _score_fold(run, TEST_FOLD, Path(folder), ref_dir, dataset_json, None, num_workers, complete=True,
                    convention=convention, roi_dir=roi_dir, options=options)
    return runs
