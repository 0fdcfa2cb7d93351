"""Trainers are compared on the same cases or not at all: what is missing, per fold and per trainer.

The expected (fold, case) pairs are those any trainer's evaluation listed (a fold's validation cases from
splits_final.json, or every reference case of a test set), so a case or a fold that no trainer has is a gap
too, not a silently shorter table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nnunet_medsam_fusion.evaluation.runs import TrainerRun
from nnunet_medsam_fusion.text import short_list

PARTIAL_HINT = "pass --allow-partial to compare anyway (every row then shows its n)"


def missing_folds(runs: Mapping[str, TrainerRun], folds: Sequence[str]) -> list[str]:
    """The requested folds that no trainer has a scored case in."""
    return [fold for fold in folds if not any(fold in run.evaluations for run in runs.values())]


def _missing_folds_text(runs: Mapping[str, TrainerRun], folds: Sequence[str], missing: Sequence[str]) -> str:
    searched = [str(run.searched[fold]) for fold in missing for run in runs.values() if fold in run.searched]
    return (f"fold(s) {', '.join(missing)} of the requested {', '.join(folds)} have no scored case for any "
            f"trainer (looked in {short_list(searched, limit=4)})")


def _case_gaps(runs: Mapping[str, TrainerRun], skipped_folds: Sequence[str]) -> list[str]:
    expected = {pair for run in runs.values() for pair in run.expected_cases if pair[0] not in skipped_folds}
    gaps = []
    for trainer, run in runs.items():
        missing = sorted(expected - run.scored_cases)
        if not missing:
            continue
        by_fold: dict[str, list[str]] = {}
        for fold, case in missing:
            by_fold.setdefault(fold, []).append(case)
        names = "; ".join(f"fold {fold}: {short_list(cases)}" for fold, cases in by_fold.items())
        gaps.append(f"{trainer} lacks {len(missing)} of the {len(expected)} case(s) ({names})")
    return gaps


def check_case_sets(runs: Mapping[str, TrainerRun], folds: Sequence[str], problems: Sequence[str],
                    allow_partial: bool) -> tuple[list[str], list[str]]:
    """The requested folds nobody has and the gaps (as problem lines); raises on any of them unless
    ``allow_partial``. Nothing scored at all is always an error."""
    details = "; ".join(problems) or "no prediction found"
    if not any(run.scored_cases for run in runs.values()):
        raise ValueError(f"nothing was scored for {', '.join(runs)}: {details}")
    absent = missing_folds(runs, folds)
    gaps = ([_missing_folds_text(runs, folds, absent)] if absent else []) + _case_gaps(runs, absent)
    if gaps and not allow_partial:
        fixes = "Predict the missing cases"
        if absent:
            fixes = ("Train and validate the missing fold(s) (nnUNetv2_train ... FOLD, or --val for a trained "
                     "fold) or leave them out of --folds; predict any missing cases")
        raise ValueError("trainers were scored on different case sets: " + "; ".join(gaps)
                         + f". Problems: {details}. {fixes}, or {PARTIAL_HINT}")
    return absent, gaps
