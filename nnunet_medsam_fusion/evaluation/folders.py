"""Score a folder of predicted label maps against a folder of references under one convention.

Cases are paired by file name, as nnU-Net names them (``CASE.nii.gz`` in both folders). Every problem that would
make a table silently wrong (missing or extra cases, shape or geometry mismatch, labels the convention does not
know, empty folders) raises a ValueError/FileNotFoundError naming the case and the fix. The convention
(``conventions/``) scores each case and aggregates; this module finds the files and the dataset.json.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from nnunet_medsam_fusion.evaluation.conventions import DEFAULT, get_convention
from nnunet_medsam_fusion.evaluation.reading import (
    DEFAULT_FILE_ENDING,
    distance_unit,
    list_cases,
    load_dataset_json,
    read_pair,
)
from nnunet_medsam_fusion.text import short_list


@dataclass
class FolderEvaluation:
    """The scored rows of one prediction folder under one convention and their aggregates (data only)."""

    convention: str
    pred_dir: Path
    ref_dir: Path
    rows: list[dict]  # the convention's rows: per case and label (and slice) for ours, per case otherwise
    aggregates: dict  # the convention's aggregates (ours: per-label summary)
    labels: dict[str, tuple[int, ...]]
    labels_source: str
    mode: str = "volume"
    roi_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    unpredicted: list[str] = field(default_factory=list)  # listed cases without a prediction (only_predicted)
    seconds_per_case: float = float("nan")
    file_ending: str = DEFAULT_FILE_ENDING

    @property
    def summary(self) -> dict:
        """``ours``' name for its aggregates (per label: mean ± std of each metric)."""
        return self.aggregates

    @property
    def distance_unit(self) -> str:
        return distance_unit(self.file_ending)

    def prediction_file(self, case: str) -> Path:
        return self.pred_dir / f"{case}{self.file_ending}"

    def reference_file(self, case: str) -> Path:
        return self.ref_dir / f"{case}{self.file_ending}"


def pair_cases(pred_cases: Mapping[str, Path], ref_cases: Mapping[str, Path],
               cases: Sequence[str] | None = None,
               only_predicted: bool = False) -> tuple[list[str], list[str]]:
    """The case ids to score and the listed ones without a prediction; raises on a prediction without
    reference and, unless ``only_predicted``, on a missing prediction.

    ``cases`` narrows the reference cases to a list (e.g. a fold's validation cases).
    """
    extra = sorted(set(pred_cases) - set(ref_cases))
    if extra:
        raise ValueError(f"{len(extra)} prediction(s) have no reference: {short_list(extra)}; remove them or "
                         "pass the reference folder that holds them")
    listed = list(cases) if cases is not None else sorted(ref_cases)
    no_reference = [c for c in listed if c not in ref_cases]
    if no_reference:
        raise ValueError(f"no reference for case(s) {short_list(no_reference)}; check the reference folder")
    unpredicted = [c for c in listed if c not in pred_cases]
    if unpredicted and not only_predicted:
        raise ValueError(f"missing prediction(s) for {len(unpredicted)} case(s): {short_list(unpredicted)}; "
                         "predict them or evaluate only the predicted cases (--only-predicted)")
    return [c for c in listed if c in pred_cases], unpredicted


def score_file(convention: str, case: str, pred_path: Path, ref_path: Path, context: Any) -> list[dict]:
    """The rows of one case read from disk (reference spacing), each starting with the case name."""
    pred, ref, ref_geometry = read_pair(case, pred_path, ref_path)
    try:
        rows = get_convention(convention).score_case(pred, ref, ref_geometry.array_spacing, context)
    except ValueError as err:
        raise ValueError(f"case {case}: {err}") from err
    return [{"case": case, **row} for row in rows]


def timed_score_file(arguments: tuple) -> tuple[list[dict], float]:
    """``score_file(*arguments)`` and its duration in seconds (one picklable job for a process pool)."""
    start = time.perf_counter()
    rows = score_file(*arguments)
    return rows, time.perf_counter() - start


def find_dataset_json(pred_dir: Path, ref_dir: Path) -> Path | None:
    """``PRED/dataset.json`` (nnUNetv2_predict writes it), else the one beside the reference folder."""
    found = [p for p in (pred_dir / "dataset.json", ref_dir.parent / "dataset.json") if p.is_file()]
    return found[0] if found else None


def score_folders(pred_dir: Path | str, ref_dir: Path | str, dataset_json: Path | str | None = None,
                     per_slice: bool = False, *, cases: Sequence[str] | None = None, only_predicted: bool = False,
                     num_workers: int = 1, convention: str = DEFAULT,
                     roi_dir: Path | str | None = None,
                     options: Mapping[str, Any] | None = None) -> FolderEvaluation:
    """Score every reference case (or ``cases``) under ``convention``.

    The dataset.json is ``dataset_json``, else ``pred_dir/dataset.json``, else the one beside the reference
    folder (nnU-Net's raw layout: ``labelsTr``/``labelsTs`` next to it), else none; it gives the file ending
    and what the convention reads from it (labels, TopCoW's label map). ``only_predicted`` scores the predicted
    ones among those cases and notes the others instead of refusing. ``roi_dir`` (TopCoW): ``CASE.txt`` ROI files;
    ``options``: any further option of the convention (passed to its ``context``, e.g. a track).
    """
    rules = get_convention(convention)
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    dataset_json = Path(dataset_json) if dataset_json is not None else find_dataset_json(pred_dir, ref_dir)
    dataset = load_dataset_json(dataset_json) if dataset_json is not None else None
    file_ending = dataset.get("file_ending", DEFAULT_FILE_ENDING) if dataset is not None else DEFAULT_FILE_ENDING
    context = rules.context(dataset, dataset_json, {"per_slice": per_slice, "roi_dir": roi_dir, **(options or {})})

    pred_cases, ref_cases = list_cases(pred_dir, file_ending), list_cases(ref_dir, file_ending)
    wanted, unpredicted = pair_cases(pred_cases, ref_cases, cases, only_predicted)
    if not wanted:
        raise ValueError(f"no case to score between {pred_dir} and {ref_dir}; check the case list")
    rules.check_cases(context, wanted)
    notes = []
    if unpredicted:
        notes.append(rules.unpredicted_note(unpredicted, len(wanted) + len(unpredicted), cases is not None,
                                            short_list(unpredicted)))
    jobs = [(rules.name, c, pred_cases[c], ref_cases[c], rules.for_case(context, c)) for c in wanted]
    progress = {"total": len(jobs), "desc": f"scoring {pred_dir.name}", "unit": "case", "disable": None,
                "leave": False}  # disable=None: no bar when not writing to a terminal
    if num_workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            outcomes = list(tqdm(pool.map(timed_score_file, jobs), **progress))
    else:
        outcomes = [timed_score_file(job) for job in tqdm(jobs, **progress)]
    rows, more_notes = rules.complete([row for case_rows, _ in outcomes for row in case_rows], wanted, context)
    labels = rules.labels(rows, context)
    return FolderEvaluation(convention=rules.name, pred_dir=pred_dir, ref_dir=ref_dir, rows=rows,
                            aggregates=rules.aggregate(rows, labels), labels=labels,
                            labels_source=rules.labels_source(context), mode="per-slice" if per_slice else "volume",
                            roi_dir=Path(roi_dir) if roi_dir is not None else None, notes=notes + more_notes,
                            unpredicted=unpredicted, seconds_per_case=float(np.mean([s for _, s in outcomes])),
                            file_ending=file_ending)
