"""Score a folder of predicted label maps against a folder of references (``nnmsf evaluate``).

Cases are paired by file name, as nnU-Net names them (``CASE.nii.gz`` in both folders). Every problem that
would make a table silently wrong (missing or extra cases, shape or geometry mismatch, labels unknown to
dataset.json, empty folders) raises a ValueError/FileNotFoundError naming the case and the fix. Reading,
scoring one case, statistics, formatting and writing live in their own modules; this one ties them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nnunet_medsam_fusion.evaluation.conventions.ours import CONVENTIONS, METRICS, STATUS_BOTH_EMPTY
from nnunet_medsam_fusion.evaluation.formatting import (
    format_mean_std,
    format_value,
    metric_title,
)
from nnunet_medsam_fusion.evaluation.reading import (
    DEFAULT_FILE_ENDING,
    distance_unit,
    labels_from_dataset_json,
    list_cases,
    load_dataset_json,
)
from nnunet_medsam_fusion.evaluation.scoring import both_empty_row, pair_cases, timed_score_case
from nnunet_medsam_fusion.evaluation.statistics import summarise
from nnunet_medsam_fusion.evaluation.topcow_evaluate import TopCowEvaluationResult, evaluate_folders_topcow
from nnunet_medsam_fusion.evaluation.writing import write_evaluation
from nnunet_medsam_fusion.text import markdown_table, short_list

CONVENTION = "ours"  # the default metric convention; "topcow" scores as TopCoW 2024 does (topcow_evaluate.py)
CONVENTION_CHOICES = (CONVENTION, "topcow")


@dataclass
class EvaluationResult:
    """Per-case rows (one per case and label, or per case, label and slice) and their summary."""

    pred_dir: Path
    ref_dir: Path
    mode: str
    labels: dict[str, tuple[int, ...]]
    labels_source: str
    rows: list[dict]
    summary: dict[str, dict]
    notes: list[str] = field(default_factory=list)
    unpredicted: list[str] = field(default_factory=list)  # listed cases without a prediction (only_predicted)
    seconds_per_case: float = float("nan")
    file_ending: str = DEFAULT_FILE_ENDING

    @property
    def distance_unit(self) -> str:
        return distance_unit(self.file_ending)

    def prediction_file(self, case: str) -> Path:
        return self.pred_dir / f"{case}{self.file_ending}"

    def reference_file(self, case: str) -> Path:
        return self.ref_dir / f"{case}{self.file_ending}"

    def summary_table(self) -> str:
        """Markdown table: one row per label, mean ± std per metric (% for overlaps, mm for distances)."""
        headers = ["Label", "n"] + [metric_title(m, self.distance_unit) for m in METRICS]
        body = []
        for label, stats in self.summary.items():
            cells = [format_mean_std(stats["metrics"][m], m) for m in METRICS]
            body.append([label, str(stats["n_rows"])] + cells)
        return markdown_table(headers, body)

    def case_table(self) -> str:
        """Markdown table with one row per scored case (and slice in per-slice mode)."""
        headers = ["Case"] + (["Slice"] if self.mode == "per-slice" else []) + ["Label", "Status"]
        headers += [metric_title(m, self.distance_unit) for m in METRICS]
        body = []
        for row in self.rows:
            cells = [row["case"]] + ([str(row["slice"])] if self.mode == "per-slice" else [])
            cells += [row["label"], row["status"]] + [format_value(row[m], m) for m in METRICS]
            body.append(cells)
        return markdown_table(headers, body)

    def to_json_dict(self) -> dict:
        return {
            "prediction_folder": str(self.pred_dir),
            "reference_folder": str(self.ref_dir),
            "convention": CONVENTION,
            "mode": self.mode,
            "labels": {name: list(values) for name, values in self.labels.items()},
            "labels_source": self.labels_source,
            "distance_unit": self.distance_unit,
            "conventions": CONVENTIONS,
            "seconds_per_case": self.seconds_per_case,
            "notes": self.notes,
            "summary": self.summary,
            "cases": self.rows,
        }


def evaluate_folders(pred_dir: Path | str, ref_dir: Path | str, dataset_json: Path | str | None = None,
                     per_slice: bool = False, out_dir: Path | str | None = None, *,
                     cases: Sequence[str] | None = None, only_predicted: bool = False,
                     num_workers: int = 1, overwrite: bool = False, convention: str = CONVENTION,
                     roi_dir: Path | str | None = None) -> EvaluationResult | TopCowEvaluationResult:
    """Score every reference case (or ``cases``) and optionally write JSON/CSV into ``out_dir``.

    ``convention="topcow"`` scores as TopCoW 2024 does instead (``topcow_evaluate.evaluate_folders_topcow``,
    optionally on the ROI crops given by ``roi_dir``).

    Labels come from ``dataset_json``, else from ``pred_dir/dataset.json`` (nnUNetv2_predict writes one), else
    from the ``dataset.json`` beside the reference folder (nnU-Net's raw layout: ``labelsTr``/``labelsTs`` next
    to it), else from the values found in the files. ``only_predicted`` scores the predicted ones among those
    cases and notes the others instead of refusing.
    """
    if convention not in CONVENTION_CHOICES:
        raise ValueError(f"unknown metric convention {convention!r}; choose one of {', '.join(CONVENTION_CHOICES)}")
    if convention == "topcow":
        if per_slice:
            raise ValueError("TopCoW scores whole volumes; drop --per-slice or use --convention ours")
        return evaluate_folders_topcow(pred_dir, ref_dir, dataset_json, out_dir, roi_dir=roi_dir, cases=cases,
                                       only_predicted=only_predicted, num_workers=num_workers,
                                       overwrite=overwrite)
    if roi_dir is not None:
        raise ValueError("ROI crops (--roi-dir) belong to the TopCoW convention; add --convention topcow")
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    if dataset_json is None:
        found = [p for p in (pred_dir / "dataset.json", ref_dir.parent / "dataset.json") if p.is_file()]
        dataset_json = found[0] if found else None
    if dataset_json is not None:
        dataset = load_dataset_json(Path(dataset_json))
        labels, ignore_value = labels_from_dataset_json(dataset)
        file_ending = dataset.get("file_ending", DEFAULT_FILE_ENDING)
        labels_source = str(dataset_json)
    else:
        labels, ignore_value, file_ending = None, None, DEFAULT_FILE_ENDING
        labels_source = "label values found in the files (no dataset.json given)"

    pred_cases, ref_cases = list_cases(pred_dir, file_ending), list_cases(ref_dir, file_ending)
    wanted, unpredicted = pair_cases(pred_cases, ref_cases, cases, only_predicted)
    notes = []
    if unpredicted:
        kind = "listed" if cases is not None else "reference"
        notes.append(f"{len(unpredicted)} {kind} case(s) (of {len(wanted) + len(unpredicted)}) have no "
                     f"prediction and were not scored: {short_list(unpredicted)}")
    if not wanted:
        raise ValueError(f"no case to score between {pred_dir} and {ref_dir}; check the case list")
    jobs = [(c, pred_cases[c], ref_cases[c], labels, ignore_value, per_slice) for c in wanted]
    progress = {"total": len(jobs), "desc": f"scoring {pred_dir.name}", "unit": "case", "disable": None,
                "leave": False}  # disable=None: no bar when not writing to a terminal
    if num_workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            outcomes = list(tqdm(pool.map(timed_score_case, jobs), **progress))
    else:
        outcomes = [timed_score_case(job) for job in tqdm(jobs, **progress)]
    rows = [row for case_rows, _ in outcomes for row in case_rows]
    seconds = float(np.mean([duration for _, duration in outcomes]))

    if labels is None:
        found = sorted({row["label"] for row in rows}, key=lambda n: int(n.split("_")[1]))
        labels = {name: (int(name.split("_")[1]),) for name in found}
        if not labels:
            notes.append("no foreground label in any prediction or reference; nothing to score")
        if not per_slice:  # a label absent from both masks of a case is a "both empty" row there
            present = {(row["case"], row["label"]) for row in rows}
            rows += [both_empty_row(c, n, v) for c in wanted for n, v in labels.items()
                     if (c, n) not in present]
            rows.sort(key=lambda row: (wanted.index(row["case"]), row["label"]))
    if per_slice:
        notes.append("per-slice mode: only slices with foreground in the prediction or the reference are "
                     "scored (slices where both are empty would all score 1)")
    empty = sum(row["status"] == STATUS_BOTH_EMPTY for row in rows)
    if empty:
        notes.append(f"{empty} row(s) have an empty prediction and reference; scored by the both-empty rule")

    result = EvaluationResult(pred_dir=pred_dir, ref_dir=ref_dir, mode="per-slice" if per_slice else "volume",
                              labels=dict(labels), labels_source=labels_source, rows=rows,
                              summary=summarise(rows, labels), notes=notes, unpredicted=unpredicted,
                              seconds_per_case=seconds,
                              file_ending=file_ending)
    if out_dir is not None:
        write_evaluation(result, Path(out_dir), overwrite=overwrite)
    return result
