"""Score a folder of predicted label maps against a folder of references (``nnmsf evaluate``).

Cases are paired by file name, as nnU-Net names them (``CASE.nii.gz`` in both folders). Every problem that
would make a table silently wrong (missing or extra cases, shape or geometry mismatch, labels unknown to
dataset.json, empty folders) raises a ValueError/FileNotFoundError naming the case and the fix.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
from tqdm import tqdm

from nnunet_medsam_fusion.evaluation.metrics import (
    CONVENTIONS,
    DISTANCE_METRICS,
    METRICS,
    STATUS_BOTH_EMPTY,
    TOPOLOGY_COUNTS,
    TOPOLOGY_METRICS,
    binary_metrics,
)

DEFAULT_FILE_ENDING = ".nii.gz"
OUTPUT_PREFIX = "nnmsf_metrics"
METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "asd": "ASD", "precision": "Precision",
                "recall": "Recall", "f1": "F1", "cldice": "clDice", "betti0_error": "β0 error",
                "betti1_error": "β1 error", "false_islands": "False islands",
                "false_island_voxels": "False-island voxels"}
COUNT_COLUMNS = ("tp", "fp", "fn", "pred_voxels", "ref_voxels") + TOPOLOGY_COUNTS
# nnU-Net reads these 2D formats without physical spacing (NaturalImage2DIO reports 1 per pixel, SimpleITK too).
PIXEL_FILE_ENDINGS = tuple(NaturalImage2DIO.supported_file_endings) + (".tiff",)
# Tolerances under which a prediction counts as lying on the reference grid (docs/evaluation.md).
SPACING_RTOL = 1e-4
ORIGIN_TOL_VOXELS = 0.01  # fraction of the smallest voxel side
DIRECTION_ATOL = 1e-3


def distance_unit(file_ending: str) -> str:
    """'px' for 2D image formats without physical spacing, else 'mm'."""
    return "px" if file_ending.lower() in PIXEL_FILE_ENDINGS else "mm"


def metric_unit(metric: str, unit: str = "mm") -> str:
    """The unit a table shows a metric in: % for overlaps, the distance unit for distances, else a count."""
    if metric in DISTANCE_METRICS:
        return unit
    return "count" if metric in TOPOLOGY_METRICS else "%"


def metric_title(metric: str, unit: str = "mm") -> str:
    """Column header, e.g. 'Dice (%)', 'HD95 (mm)', 'HD95 (px)', 'β0 error'."""
    shown = metric_unit(metric, unit)
    return METRIC_NAMES[metric] + ("" if shown == "count" else f" ({shown})")


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


# ----------------------------------------------------------------------------------------------- formatting
def format_value(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    if metric in TOPOLOGY_METRICS:
        return str(int(value))
    return f"{value:.2f}" if metric in DISTANCE_METRICS else f"{100 * value:.2f}"


def metric_scale(metric: str) -> float:
    """Factor from stored value to table value: 100 for overlaps (shown in %), else 1."""
    return 1.0 if metric in DISTANCE_METRICS or metric in TOPOLOGY_METRICS else 100.0


def format_mean_std(stats: Mapping, metric: str) -> str:
    """``mean ± std`` in the paper's units, with the count of undefined cases when there are any."""
    if stats["n"] == 0:
        text = "undefined"
    else:
        scale = metric_scale(metric)
        text = f"{scale * stats['mean']:.2f} ± {scale * stats['std']:.2f}"
    if stats["n_undefined"]:
        text += f" ({stats['n_undefined']} undef.)"
    return text


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: Iterable[float]) -> dict:
    """Mean and population std of the defined values; NaNs are counted as ``n_undefined``."""
    array = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    defined = array[~np.isnan(array)]
    return {
        "mean": float(defined.mean()) if defined.size else float("nan"),
        "std": float(defined.std()) if defined.size else float("nan"),
        "n": int(defined.size),
        "n_undefined": int(array.size - defined.size),
    }


def summarise(rows: Sequence[Mapping], labels: Iterable[str]) -> dict[str, dict]:
    """Per label: mean ± std of each metric, the row count and how often each empty-mask rule applied."""
    summary = {}
    for label in labels:
        selected = [row for row in rows if row["label"] == label]
        statuses: dict[str, int] = {}
        for row in selected:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        summary[label] = {
            "n_rows": len(selected),
            "status_counts": statuses,
            "metrics": {m: mean_std(row[m] for row in selected) for m in METRICS},
        }
    return summary


# ----------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Geometry:
    """Where an image's voxels lie: spacing, origin and direction as SimpleITK reports them ((x, y, z) order)."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))

    @property
    def array_spacing(self) -> tuple[float, ...]:
        """Spacing in numpy array axis order (z first), the order the metrics take."""
        return tuple(float(s) for s in reversed(self.spacing))

    def differences(self, other: Geometry) -> list[str]:
        """What disagrees beyond the tolerances (empty when both describe the same grid)."""
        found = []  # shapes were compared first, so both have the same number of axes
        if not np.allclose(self.spacing, other.spacing, rtol=SPACING_RTOL, atol=0):
            found.append("spacing")
        if not np.allclose(self.origin, other.origin, rtol=0, atol=ORIGIN_TOL_VOXELS * min(self.spacing)):
            found.append("origin")
        if not np.allclose(self.direction, other.direction, rtol=0, atol=DIRECTION_ATOL):
            found.append("direction")
        return found

    def __str__(self) -> str:
        def numbers(values):
            return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"

        return (f"spacing {numbers(self.spacing)}, origin {numbers(self.origin)}, "
                f"direction {numbers(self.direction)}")


def read_array(path: Path) -> tuple[np.ndarray, Geometry]:
    """Image as a numpy array (SimpleITK axis order, z first) and its geometry."""
    image = sitk.ReadImage(str(path))
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path} has {image.GetNumberOfComponentsPerPixel()} values per pixel (RGB?); "
                         "label maps hold one integer per pixel: save it as a greyscale image")
    return sitk.GetArrayFromImage(image), Geometry.of(image)


def read_segmentation(path: Path) -> tuple[np.ndarray, Geometry]:
    """Integer label map and its geometry; rejects non-integer values so a probability map is not scored."""
    array, geometry = read_array(path)
    if array.ndim not in (2, 3):
        raise ValueError(f"{path} has {array.ndim} dimensions; expected a 2D or 3D label map")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{path} holds non-integer values; pass label maps, not probabilities")
        array = array.astype(np.int64)
    return array, geometry


def list_cases(folder: Path, file_ending: str = DEFAULT_FILE_ENDING) -> dict[str, Path]:
    """Case id -> file for every file in ``folder`` that ends in ``file_ending``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist; check the path")
    cases = {p.name[: -len(file_ending)]: p for p in sorted(folder.iterdir())
             if p.is_file() and p.name.endswith(file_ending)}
    if not cases:
        raise ValueError(f"no '*{file_ending}' files in {folder}; check the folder or the file ending "
                         "(dataset.json 'file_ending')")
    return cases


def load_dataset_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset.json not found at {path}; pass the dataset's dataset.json")
    return json.loads(path.read_text())


def labels_from_dataset_json(dataset: Mapping) -> tuple[dict[str, tuple[int, ...]], int | None]:
    """Foreground labels (name -> label values, several for nnU-Net regions) and the ignore label value."""
    if "labels" not in dataset:
        raise ValueError("dataset.json has no 'labels' entry; it is not an nnU-Net v2 dataset.json")
    labels, ignore = {}, None
    for name, value in dataset["labels"].items():
        values = tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
        if name == "background":
            continue
        if name == "ignore":
            ignore = values[0]
            continue
        labels[name] = tuple(v for v in values if v != 0)
    if not labels:
        raise ValueError("dataset.json lists no foreground label; add one to 'labels'")
    return labels, ignore


# ----------------------------------------------------------------------------------------------- scoring
def _check_known_values(case: str, array: np.ndarray, allowed: set[int], what: str) -> None:
    unknown = sorted(set(np.unique(array).tolist()) - allowed)
    if unknown:
        raise ValueError(f"case {case}: {what} holds label value(s) {unknown} that dataset.json does not "
                         f"list (known: {sorted(allowed)}); pass the right --dataset-json or fix the labels")


def score_case(case: str, pred_path: Path, ref_path: Path, labels: Mapping[str, tuple[int, ...]] | None,
               ignore_value: int | None = None, per_slice: bool = False) -> list[dict]:
    """Rows for one case. ``labels=None`` scores every value found in the pair (each its own label)."""
    pred, pred_geometry = read_segmentation(pred_path)
    ref, ref_geometry = read_segmentation(ref_path)
    if pred.shape != ref.shape:
        raise ValueError(f"case {case}: prediction shape {pred.shape} != reference shape {ref.shape}; "
                         "predictions must be on the reference grid (nnUNetv2_predict writes them so)")
    mismatch = pred_geometry.differences(ref_geometry)
    if mismatch:
        raise ValueError(f"case {case}: prediction and reference {' and '.join(mismatch)} disagree: prediction "
                         f"{pred_geometry}; reference {ref_geometry}. Predictions must lie on the reference "
                         "grid (nnUNetv2_predict writes them so); resample the prediction onto the reference")
    ref_spacing = ref_geometry.array_spacing
    if labels is None:
        found = sorted((set(np.unique(pred).tolist()) | set(np.unique(ref).tolist())) - {0})
        labels = {f"label_{v}": (v,) for v in found}
    else:
        allowed = {0} | {v for values in labels.values() for v in values}
        allowed |= set() if ignore_value is None else {ignore_value}
        _check_known_values(case, pred, allowed, "the prediction")
        _check_known_values(case, ref, allowed, "the reference")
    valid = None if ignore_value is None else ref != ignore_value

    rows = []
    for name, values in labels.items():
        pred_mask, ref_mask = np.isin(pred, values), np.isin(ref, values)
        if valid is not None:
            pred_mask &= valid
        base = {"case": case, "label": name, "label_values": list(values)}
        if not per_slice:
            rows.append({**base, **binary_metrics(pred_mask, ref_mask, ref_spacing)})
            continue
        if ref.ndim != 3:
            raise ValueError(f"case {case}: per-slice mode needs 3D volumes, got shape {ref.shape}")
        for index in np.flatnonzero(pred_mask.any(axis=(1, 2)) | ref_mask.any(axis=(1, 2))):
            metrics = binary_metrics(pred_mask[index], ref_mask[index], ref_spacing[1:])
            rows.append({**base, "slice": int(index), **metrics})
    return rows


def _score_case_star(arguments: tuple) -> tuple[list[dict], float]:
    start = time.perf_counter()
    rows = score_case(*arguments)
    return rows, time.perf_counter() - start


def _both_empty_row(case: str, label: str, values: tuple[int, ...]) -> dict:
    zeros = np.zeros((1, 1, 1), dtype=bool)  # every metric and count of two empty masks
    metrics = binary_metrics(zeros, zeros, (1, 1, 1))
    return {"case": case, "label": label, "label_values": list(values), **metrics}


def pair_cases(pred_cases: Mapping[str, Path], ref_cases: Mapping[str, Path],
               cases: Sequence[str] | None = None,
               only_predicted: bool = False) -> tuple[list[str], list[str]]:
    """The case ids to score and notes; raises on a prediction without reference or a missing prediction."""
    notes = []
    extra = sorted(set(pred_cases) - set(ref_cases))
    if extra:
        raise ValueError(f"{len(extra)} prediction(s) have no reference: {short_list(extra)}; remove them or "
                         "pass the reference folder that holds them")
    if cases is not None:
        wanted = list(cases)
    elif only_predicted:
        wanted = sorted(pred_cases)
        unscored = len(ref_cases) - len(wanted)
        if unscored:
            notes.append(f"{unscored} reference case(s) have no prediction and were not scored "
                         "(only predicted cases requested)")
    else:
        wanted = sorted(ref_cases)
    missing = [c for c in wanted if c not in pred_cases]
    if missing:
        raise ValueError(f"missing prediction(s) for {len(missing)} case(s): {short_list(missing)}; predict them "
                         "or evaluate only the predicted cases (--only-predicted)")
    no_reference = [c for c in wanted if c not in ref_cases]
    if no_reference:
        raise ValueError(f"no reference for case(s) {short_list(no_reference)}; check the reference folder")
    return wanted, notes


def short_list(cases: Sequence[str], limit: int = 10) -> str:
    """At most ``limit`` names, then how many more, for error messages."""
    shown = ", ".join(cases[:limit])
    return shown + (f" ... (+{len(cases) - limit} more)" if len(cases) > limit else "")


def evaluate_folders(pred_dir: Path | str, ref_dir: Path | str, dataset_json: Path | str | None = None,
                     per_slice: bool = False, out_dir: Path | str | None = None, *,
                     cases: Sequence[str] | None = None, only_predicted: bool = False,
                     num_workers: int = 1, overwrite: bool = False) -> EvaluationResult:
    """Score every reference case (or ``cases``) and optionally write JSON/CSV into ``out_dir``.

    Labels come from ``dataset_json``, else from ``pred_dir/dataset.json`` (nnUNetv2_predict writes one), else
    from the ``dataset.json`` beside the reference folder (nnU-Net's raw layout: ``labelsTr``/``labelsTs`` next
    to it), else from the values found in the files.
    """
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
    wanted, notes = pair_cases(pred_cases, ref_cases, cases, only_predicted)
    if not wanted:
        raise ValueError(f"no case to score between {pred_dir} and {ref_dir}; check the case list")
    jobs = [(c, pred_cases[c], ref_cases[c], labels, ignore_value, per_slice) for c in wanted]
    progress = {"total": len(jobs), "desc": f"scoring {pred_dir.name}", "unit": "case", "disable": None,
                "leave": False}  # disable=None: no bar when not writing to a terminal
    if num_workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            outcomes = list(tqdm(pool.map(_score_case_star, jobs), **progress))
    else:
        outcomes = [_score_case_star(job) for job in tqdm(jobs, **progress)]
    rows = [row for case_rows, _ in outcomes for row in case_rows]
    seconds = float(np.mean([duration for _, duration in outcomes]))

    if labels is None:
        found = sorted({row["label"] for row in rows}, key=lambda n: int(n.split("_")[1]))
        labels = {name: (int(name.split("_")[1]),) for name in found}
        if not labels:
            notes.append("no foreground label in any prediction or reference; nothing to score")
        if not per_slice:  # a label absent from both masks of a case is a "both empty" row there
            present = {(row["case"], row["label"]) for row in rows}
            rows += [_both_empty_row(c, n, v) for c in wanted for n, v in labels.items()
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
                              summary=summarise(rows, labels), notes=notes, seconds_per_case=seconds,
                              file_ending=file_ending)
    if out_dir is not None:
        write_evaluation(result, Path(out_dir), overwrite=overwrite)
    return result


# ----------------------------------------------------------------------------------------------- writing
def _json_safe(value):
    """NaN is not JSON; undefined values are written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def refuse_to_overwrite(paths: Iterable[Path], overwrite: bool) -> None:
    """Raise before anything is written if an output exists, so earlier results are never destroyed."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"output file(s) already exist: {', '.join(existing)}; pass --overwrite "
                              "(overwrite=True) or choose another output folder")


def write_csv(path: Path, rows: Sequence[Mapping], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if _json_safe(v) is None else v) for k, v in row.items()})


def write_evaluation(result: EvaluationResult, out_dir: Path, overwrite: bool = False,
                     prefix: str = OUTPUT_PREFIX) -> dict[str, Path]:
    """Write ``{prefix}.json``, ``{prefix}_cases.csv`` and ``{prefix}_summary.csv`` into ``out_dir``."""
    paths = {"json": out_dir / f"{prefix}.json", "cases_csv": out_dir / f"{prefix}_cases.csv",
             "summary_csv": out_dir / f"{prefix}_summary.csv"}
    refuse_to_overwrite(paths.values(), overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(json.dumps(_json_safe(result.to_json_dict()), indent=2))
    case_columns = ["case"] + (["slice"] if result.mode == "per-slice" else []) + ["label", "status"]
    write_csv(paths["cases_csv"], result.rows, case_columns + list(METRICS) + list(COUNT_COLUMNS))
    summary_rows = [{"label": label, "metric": metric, "unit": metric_unit(metric, result.distance_unit),
                     **stats["metrics"][metric]}
                    for label, stats in result.summary.items() for metric in METRICS]
    write_csv(paths["summary_csv"], summary_rows, ["label", "metric", "unit", "mean", "std", "n", "n_undefined"])
    return paths
