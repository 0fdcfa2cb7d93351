"""Writing results: JSON and CSV files of ``nnmsf evaluate`` and ``nnmsf compare``, never over earlier ones.

``ours`` has its own file layout (fixed metric columns, per-label summaries, p-values); every other convention is
written in one common layout from its interface (``columns``, ``flat_row``, ``summary_rows``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from nnunet_medsam_fusion.evaluation.comparison import ComparisonResult
from nnunet_medsam_fusion.evaluation.comparison_tables import comparison_markdown
from nnunet_medsam_fusion.evaluation.conventions import DEFAULT, get_convention
from nnunet_medsam_fusion.evaluation.conventions.ours import CONVENTIONS, METRICS, TOPOLOGY_COUNTS, metric_unit
from nnunet_medsam_fusion.evaluation.folders import FolderEvaluation

OUTPUT_PREFIX = "nnmsf_metrics"
OURS = DEFAULT  # the convention of the native layout; named in a column of every CSV
COUNT_COLUMNS = ("tp", "fp", "fn", "pred_voxels", "ref_voxels") + TOPOLOGY_COUNTS
RUN_COLUMNS = ("trainer", "paper_row", "encoder", "fold")
COMPARE_SUMMARY_COLUMNS = ("trainer", "paper_row", "label", "metric", "unit", "mean", "std", "n", "n_undefined",
                           "fold_mean", "fold_std", "n_folds", "reference", "p_value", "p_caveat", "n_pairs")


def json_safe(value):
    """NaN is not JSON; undefined values are written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def refuse_to_overwrite(paths: Iterable[Path], overwrite: bool) -> None:
    """Raise before anything is written if an output exists, so earlier results are never destroyed."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"output file(s) already exist: {', '.join(existing)}; pass --overwrite "
                              "or choose another output folder (--out)")


def write_csv(path: Path, rows: Sequence[Mapping], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if json_safe(v) is None else v) for k, v in row.items()})


def evaluation_json(result: FolderEvaluation) -> dict:
    """What ``{prefix}.json`` holds: the folders, labels, conventions, notes, aggregates and every row."""
    if result.convention == OURS:
        return {"prediction_folder": str(result.pred_dir), "reference_folder": str(result.ref_dir),
                "convention": OURS, "mode": result.mode,
                "labels": {name: list(values) for name, values in result.labels.items()},
                "labels_source": result.labels_source, "distance_unit": result.distance_unit,
                "conventions": CONVENTIONS, "seconds_per_case": result.seconds_per_case, "notes": result.notes,
                "summary": result.aggregates, "cases": result.rows}
    return {"convention": result.convention, "convention_text": get_convention(result.convention).text,
            "prediction_folder": str(result.pred_dir), "reference_folder": str(result.ref_dir),
            "roi_folder": None if result.roi_dir is None else str(result.roi_dir),
            "labels_source": result.labels_source, "distance_unit": result.distance_unit,
            "seconds_per_case": result.seconds_per_case, "notes": result.notes, "aggregates": result.aggregates,
            "cases": result.rows}


def write_evaluation(result: FolderEvaluation, out_dir: Path, overwrite: bool = False,
                     prefix: str = OUTPUT_PREFIX) -> dict[str, Path]:
    """Write ``{prefix}.json``, ``{prefix}_cases.csv`` and ``{prefix}_summary.csv`` into ``out_dir``."""
    paths = {"json": out_dir / f"{prefix}.json", "cases_csv": out_dir / f"{prefix}_cases.csv",
             "summary_csv": out_dir / f"{prefix}_summary.csv"}
    refuse_to_overwrite(paths.values(), overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(json.dumps(json_safe(evaluation_json(result)), indent=2))
    if result.convention != OURS:
        rules = get_convention(result.convention)
        write_csv(paths["cases_csv"], [{"convention": rules.name, **rules.flat_row(row)} for row in result.rows],
                  ["convention", *rules.columns(result.rows)])
        summary = [{"convention": rules.name, **row} for row in rules.summary_rows(result.aggregates)]
        write_csv(paths["summary_csv"], summary, ("convention", *rules.summary_columns))
        return paths
    case_columns = ["convention", "case"] + (["slice"] if result.mode == "per-slice" else []) + ["label", "status"]
    write_csv(paths["cases_csv"], [{"convention": OURS, **row} for row in result.rows],
              case_columns + list(METRICS) + list(COUNT_COLUMNS))
    summary_rows = [{"convention": OURS, "label": label, "metric": metric,
                     "unit": metric_unit(metric, result.distance_unit), **stats["metrics"][metric]}
                    for label, stats in result.aggregates.items() for metric in METRICS]
    write_csv(paths["summary_csv"], summary_rows,
              ["convention", "label", "metric", "unit", "mean", "std", "n", "n_undefined"])
    return paths


def write_comparison(result: ComparisonResult, out_dir: Path, overwrite: bool = False) -> dict[str, Path]:
    """``compare.md`` (tables), ``compare_cases.csv`` (every scored case) and ``compare_summary.csv``."""
    paths = {"markdown": out_dir / "compare.md", "cases_csv": out_dir / "compare_cases.csv",
             "summary_csv": out_dir / "compare_summary.csv"}
    refuse_to_overwrite(paths.values(), overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths["markdown"].write_text(comparison_markdown(result))
    if result.convention != OURS:
        rules = get_convention(result.convention)
        rows = [{**run.head(fold), "convention": rules.name, **rules.flat_row(row)}
                for run in result.runs.values() for fold, scored in run.evaluations.items() for row in scored.rows]
        columns = list(RUN_COLUMNS) + ["convention", "case"]
        for row in rows:
            columns += [key for key in row if key not in columns]
        write_csv(paths["cases_csv"], rows, columns)
        stats = [{"trainer": trainer, "paper_row": result.runs[trainer].row_label, "convention": rules.name, **row}
                 for trainer, aggregates in result.aggregates.items() for row in rules.summary_rows(aggregates)]
        write_csv(paths["summary_csv"], stats, ("trainer", "paper_row", "convention", *rules.summary_columns))
        return paths
    case_columns = [*RUN_COLUMNS, "convention", "case", "slice", "label", "status"]
    write_csv(paths["cases_csv"], [{"convention": OURS, **row} for row in result.rows],
              case_columns + list(METRICS) + list(COUNT_COLUMNS))
    write_csv(paths["summary_csv"], [{"convention": OURS, **row} for row in result.stats],
              ("convention",) + COMPARE_SUMMARY_COLUMNS)
    return paths
