"""``nnmsf evaluate --convention topcow``: score a prediction folder the way TopCoW 2024 scores task 1.

One row per case with the official columns (topcow_scoring.py), the official aggregates, and the same files as
the ``ours`` convention (``nnmsf_metrics.json``, ``_cases.csv``, ``_summary.csv``), each naming the convention.
Our choices beyond the official rules: cases pair by file name (as ``ours``), a prediction off the reference
grid is refused instead of silently given the reference's geometry, ROI files are found as ``ROI_DIR/CASE.txt``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_medsam_fusion.evaluation.reading import (
    DEFAULT_FILE_ENDING,
    distance_unit,
    list_cases,
    load_dataset_json,
    read_pair,
)
from nnunet_medsam_fusion.evaluation.scoring import pair_cases
from nnunet_medsam_fusion.evaluation.topcow_scoring import (
    CONVENTION,
    LABEL_VALUES_KEY,
    aggregate_topcow,
    flat_row,
    parse_roi_txt,
    score_topcow_case,
)
from nnunet_medsam_fusion.evaluation.writing import OUTPUT_PREFIX, start_evaluation_files, write_csv
from nnunet_medsam_fusion.text import markdown_table, short_list

# the leaderboard's headline columns, shown in the printed tables
HEADLINE = ("Dice_ClsAvgDice", "Dice_MergedBin", "clDice", "B0err_ClsAvgB0err", "HD95_ClsAvgHD95", "HD_ClsAvgHD")
SUMMARY_COLUMNS = ("convention", "metric", "mean", "std", "count", "min", "25pc", "50pc", "75pc", "max")
FIXED_LABELS = "TopCoW's fixed label ids"
CONVENTION_TEXT = ("TopCoW 2024 task-1 evaluation (github CoWBenchmark/TopCoW_Eval_Metrics, topcow24_eval), "
                   "re-implemented: see docs/evaluation.md, 'TopCoW convention'")


def score_topcow_file(case: str, pred_path: Path, ref_path: Path, roi_path: Path | None = None,
                      label_values: dict[int, int] | None = None) -> dict:
    """The TopCoW row of one case read from disk (reference spacing, optional ROI file and label map)."""
    pred, ref, ref_geometry = read_pair(case, pred_path, ref_path)
    roi = parse_roi_txt(roi_path) if roi_path is not None else None
    try:
        scores = score_topcow_case(pred, ref, ref_geometry.array_spacing, roi=roi, label_values=label_values)
    except ValueError as err:
        raise ValueError(f"case {case}: {err}") from err
    return {"case": case, **scores}


def timed_score_topcow_file(arguments: tuple) -> tuple[dict, float]:
    """``score_topcow_file(*arguments)`` and its duration (one picklable process-pool job)."""
    start = time.perf_counter()
    row = score_topcow_file(*arguments)
    return row, time.perf_counter() - start


@dataclass
class TopCowEvaluationResult:
    """Per-case TopCoW rows (nested dicts included) and the official aggregates."""

    pred_dir: Path
    ref_dir: Path
    cases: list[dict]
    aggregates: dict
    roi_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    unpredicted: list[str] = field(default_factory=list)
    seconds_per_case: float = float("nan")
    file_ending: str = DEFAULT_FILE_ENDING
    convention: str = CONVENTION
    mode: str = "volume"
    labels_source: str = FIXED_LABELS

    @property
    def rows(self) -> list[dict]:
        """CSV-ready rows, one per case."""
        return [{"convention": self.convention, **flat_row(case)} for case in self.cases]

    @property
    def distance_unit(self) -> str:
        return distance_unit(self.file_ending)

    @property
    def labels(self) -> dict[str, tuple[int, ...]]:
        return {}

    @property
    def columns(self) -> list[str]:
        """Every CSV column in first-seen order (labels absent from a case leave its cell empty)."""
        columns: list[str] = []
        for row in self.rows:
            columns += [key for key in row if key not in columns]
        return columns

    def case_table(self) -> str:
        headers = ["Case", *HEADLINE, "Variant Ant (gt/pred)", "Variant Pos (gt/pred)", "Topo match Ant/Pos"]
        body = []
        for row in self.rows:
            cells = [row["case"]] + [_number(row[m]) for m in HEADLINE]
            for short in ("Ant", "Pos"):
                cells.append(f"{row[f'Variant_{short}_gt'][8:]} / {row[f'Variant_{short}_pred'][8:]}")
            cells.append(f"{_yes(row['TopoMatch_Ant'])}/{_yes(row['TopoMatch_Pos'])}")
            body.append(cells)
        return f"convention: {self.convention}\n\n" + markdown_table(headers, body)

    def summary_table(self) -> str:
        headers = ["Metric", "n", "mean ± std", "median"]
        body = [[metric, f"{stats['count']:g}", f"{_number(stats['mean'])} ± {_number(stats['std'])}",
                 _number(stats["50pc"])]
                for metric, stats in self.aggregates.items() if "mean" in stats and "count" in stats]
        detection = self.aggregates.get("dect_avg", {})
        extra = [["group-2 detection F1 (mean over R-Pcom, L-Pcom, Acom, 3rd-A2)", "",
                  _number(detection.get("f1_score", {}).get("mean", float("nan"))), ""]]
        for key, title in (("graph_var_bal_acc", "variant-balanced graph accuracy"),
                           ("topo_var_bal_acc", "variant-balanced topology match rate")):
            values = self.aggregates.get(key, {})
            extra.append([f"{title} (anterior / posterior)", "",
                          f"{_number(values.get('anterior'))} / {_number(values.get('posterior'))}", ""])
        return f"convention: {self.convention}\n\n" + markdown_table(headers, body + extra)

    def to_json_dict(self) -> dict:
        return {"convention": self.convention, "convention_text": CONVENTION_TEXT,
                "prediction_folder": str(self.pred_dir), "reference_folder": str(self.ref_dir),
                "roi_folder": None if self.roi_dir is None else str(self.roi_dir), "labels_source": self.labels_source,
                "distance_unit": self.distance_unit, "seconds_per_case": self.seconds_per_case,
                "notes": self.notes, "aggregates": self.aggregates, "cases": self.cases}


def _number(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def evaluate_folders_topcow(pred_dir: Path | str, ref_dir: Path | str, dataset_json: Path | str | None = None,
                            out_dir: Path | str | None = None, *, roi_dir: Path | str | None = None,
                            cases: Sequence[str] | None = None, only_predicted: bool = False,
                            num_workers: int = 1, overwrite: bool = False) -> TopCowEvaluationResult:
    """Score every reference case (or ``cases``) under the TopCoW convention; optionally write the files.

    ``dataset_json`` (found as for ``ours``) gives the file ending and, for a data set written by ``nnmsf convert
    topcow --labels multiclass``, its ``topcow_label_values``: predictions and references in nnU-Net's numbering
    are then mapped to TopCoW's label ids before scoring. Without that map TopCoW's ids are expected and any
    other value is refused. ``roi_dir`` holds one ``CASE.txt`` roi_loc file per case to score its crop.
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    if dataset_json is None:
        found = [p for p in (pred_dir / "dataset.json", ref_dir.parent / "dataset.json") if p.is_file()]
        dataset_json = found[0] if found else None
    file_ending, label_values, labels_source = DEFAULT_FILE_ENDING, None, FIXED_LABELS
    if dataset_json is not None:
        dataset = load_dataset_json(Path(dataset_json))
        file_ending = dataset.get("file_ending", DEFAULT_FILE_ENDING)
        if LABEL_VALUES_KEY in dataset:
            label_values = {int(k): int(v) for k, v in dataset[LABEL_VALUES_KEY].items()}
            labels_source = f"nnU-Net's label values mapped to TopCoW's by {LABEL_VALUES_KEY} in {dataset_json}"
    pred_cases, ref_cases = list_cases(pred_dir, file_ending), list_cases(ref_dir, file_ending)
    wanted, unpredicted = pair_cases(pred_cases, ref_cases, cases, only_predicted)
    if not wanted:
        raise ValueError(f"no case to score between {pred_dir} and {ref_dir}; check the case list")
    roi_paths: dict[str, Path | None] = dict.fromkeys(wanted)
    if roi_dir is not None:
        roi_dir = Path(roi_dir)
        roi_paths = {case: roi_dir / f"{case}.txt" for case in wanted}
        missing = [case for case, path in roi_paths.items() if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"no ROI file for case(s) {short_list(missing)} in {roi_dir} (expected "
                                    "CASE.txt, TopCoW's roi_loc format); add them or drop --roi-dir")
    notes = []
    if unpredicted:
        notes.append(f"{len(unpredicted)} case(s) have no prediction and were not scored: {short_list(unpredicted)}")
    jobs = [(case, pred_cases[case], ref_cases[case], roi_paths[case], label_values) for case in wanted]
    if num_workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            outcomes = list(pool.map(timed_score_topcow_file, jobs))
    else:
        outcomes = [timed_score_topcow_file(job) for job in jobs]
    scored = [row for row, _ in outcomes]
    result = TopCowEvaluationResult(pred_dir=pred_dir, ref_dir=ref_dir, cases=scored,
                                    aggregates=aggregate_topcow(scored), roi_dir=roi_dir, notes=notes,
                                    unpredicted=unpredicted,
                                    seconds_per_case=float(np.mean([seconds for _, seconds in outcomes])),
                                    file_ending=file_ending, labels_source=labels_source)
    if out_dir is not None:
        write_topcow_evaluation(result, Path(out_dir), overwrite=overwrite)
    return result


def summary_rows(aggregates: dict, convention: str = CONVENTION) -> list[dict]:
    """One CSV row per aggregated quantity: column statistics, detection scores and balanced accuracies."""
    rows = [{"convention": convention, "metric": metric, **stats}
            for metric, stats in aggregates.items() if "mean" in stats and "count" in stats]
    for label, entry in aggregates.get("dect_avg", {}).items():
        if "label" in entry:
            rows += [{"convention": convention, "metric": f"Detection_{score}_{entry['label']}", "mean": entry[score],
                      "count": None} for score in ("precision", "recall", "f1_score")]
        else:
            rows.append({"convention": convention, "metric": f"Detection_{label}", **entry})
    for key in ("graph_var_bal_acc", "topo_var_bal_acc"):
        for region, value in aggregates.get(key, {}).items():
            rows.append({"convention": convention, "metric": f"{key}_{region}", "mean": value})
    return rows


def write_topcow_evaluation(result: TopCowEvaluationResult, out_dir: Path, overwrite: bool = False,
                            prefix: str = OUTPUT_PREFIX) -> dict[str, Path]:
    """``{prefix}.json``, ``{prefix}_cases.csv``, ``{prefix}_summary.csv``, never over earlier files."""
    paths = start_evaluation_files(out_dir, prefix, overwrite, result.to_json_dict())
    write_csv(paths["cases_csv"], result.rows, result.columns)
    write_csv(paths["summary_csv"], summary_rows(result.aggregates, result.convention), SUMMARY_COLUMNS)
    return paths
