"""Figures for people who would rather look than read: MIP overlays and metric distributions (PNG).

Vessels are judged on maximum-intensity projections (MIPs), as radiologists read TOF-MRA. An overlay
panel projects true positives (green), false negatives (blue) and false positives (red) separately along
the projection axis and draws errors on top, so a miss or a spurious branch anywhere on the ray shows.
Topology errors are drawn over those: false islands (predicted components far from the reference, magenta)
and gaps (reference centreline voxels the prediction misses: breaks and missed branches, cyan).
Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg rendering), leaving pyplot's global backend
alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from nnunet_medsam_fusion.evaluation.comparison import ComparisonResult
from nnunet_medsam_fusion.evaluation.conventions.ours import METRICS
from nnunet_medsam_fusion.evaluation.folders import FolderEvaluation
from nnunet_medsam_fusion.evaluation.formatting import metric_scale, metric_title
from nnunet_medsam_fusion.evaluation.kernels.skeletons import centreline
from nnunet_medsam_fusion.evaluation.kernels.topology import false_islands
from nnunet_medsam_fusion.evaluation.reading import read_array, read_segmentation
from nnunet_medsam_fusion.settings import nnunet_folder

COLOURS = {
    "true positive": (0.1, 0.8, 0.2),
    "false negative": (0.2, 0.4, 1.0),
    "false positive": (1.0, 0.15, 0.1),
    "false island": (1.0, 0.0, 1.0),
    "gap": (0.0, 0.9, 0.9),
    "reference": (1.0, 0.85, 0.0),
}
MIN_BOX_CASES = 5  # ours: a box over fewer values hides the few points it summarises (one value: a flat line)


def _project(volume: np.ndarray, axis: int) -> np.ndarray:
    return volume.max(axis=axis) if volume.ndim == 3 else volume


def _grey(image: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Image MIP scaled to [0, 1] between its 0.5th and 99.5th percentiles (black without an image)."""
    if image is None:
        return np.zeros(shape)
    low, high = np.percentile(image, [0.5, 99.5])
    return np.clip((image - low) / (high - low if high > low else 1.0), 0, 1)


def _paint(grey: np.ndarray, layers: Sequence[tuple[np.ndarray, tuple[float, float, float]]]) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for mask, colour in layers:
        rgb[mask] = colour
    return rgb


def save_mip_overlay(out_path: Path | str, reference: np.ndarray, predictions: Mapping[str, np.ndarray],
                     image: np.ndarray | None = None, spacing: Sequence[float] | None = None, axis: int = 0,
                     title: str = "") -> Path:
    """One PNG: the reference MIP, then one TP/FP/FN panel per prediction (false islands and gaps on top).

    Masks and image are arrays in the same axis order as ``spacing``; 3D arrays are projected along
    ``axis`` (0 = z for SimpleITK arrays: an axial MIP), 2D arrays are shown as they are. Without ``spacing``
    false islands are found with unit spacing.
    """
    reference = np.asarray(reference, dtype=bool)
    for name, mask in predictions.items():
        if np.shape(mask) != reference.shape:
            raise ValueError(f"prediction '{name}' has shape {np.shape(mask)}, reference {reference.shape}")
    kept_axes = [a for a in range(reference.ndim) if reference.ndim == 2 or a != axis]
    aspect = 1.0 if spacing is None else spacing[kept_axes[0]] / spacing[kept_axes[1]]
    grey = _grey(None if image is None else _project(np.asarray(image, dtype=np.float32), axis),
                 _project(reference, axis).shape)

    panels = [("reference", _paint(grey, [(_project(reference, axis), COLOURS["reference"])]))]
    reference_centreline = centreline(reference)
    for name, mask in predictions.items():
        mask = np.asarray(mask, dtype=bool)
        islands = false_islands(mask, reference, spacing or (1.0,) * reference.ndim)[0]
        gaps = reference_centreline & ~mask  # breaks in a vessel and wholly missed branches
        layers = [(_project(mask & reference, axis), COLOURS["true positive"]),
                  (_project(reference & ~mask, axis), COLOURS["false negative"]),
                  (_project(mask & ~reference, axis), COLOURS["false positive"]),
                  (_project(gaps, axis), COLOURS["gap"]),
                  (_project(islands, axis), COLOURS["false island"])]
        panels.append((name, _paint(grey, layers)))

    # wide enough for long trainer names; the constrained layout keeps the title above multi-line panel titles
    figure = Figure(figsize=(3.8 * len(panels), 3.8), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, rgb) in zip(axes, panels, strict=True):
        ax.imshow(rgb, aspect=aspect, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    handles = [Patch(color=colour, label=name) for name, colour in COLOURS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=10)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path)
    return out_path


def save_metric_distributions(out_path: Path | str, values: Mapping[str, Mapping[str, Sequence[float]]],
                              title: str = "", distance_unit: str = "mm") -> Path:
    """One PNG with a box plot per metric: ``values[metric][group]`` are the per-case values of a group.

    Undefined values (NaN, e.g. HD95 of an empty prediction) are left out; their count is in the tick label.
    Every value is drawn as a point; a box only over at least ``MIN_BOX_CASES`` of them.
    """
    metrics = list(values)
    if not metrics:
        raise ValueError("no metric values to plot")
    columns, rows = min(len(metrics), 4), int(np.ceil(len(metrics) / 4))
    panel_width = max(3.0, 1.2 * max(len(groups) for groups in values.values()) + 1.5)
    figure = Figure(figsize=(panel_width * columns, 3.8 * rows), dpi=100)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes, metrics, strict=False):
        scale = metric_scale(metric)
        groups, data, ticks = values[metric], [], []
        for group, group_values in groups.items():
            array = scale * np.asarray(group_values, dtype=np.float64)
            defined = array[~np.isnan(array)]
            data.append(defined)
            undefined = array.size - defined.size
            ticks.append(group + (f"\n({undefined} undef.)" if undefined else ""))
        boxed = [position for position, defined in enumerate(data, start=1) if defined.size >= MIN_BOX_CASES]
        if boxed:
            ax.boxplot([data[position - 1] for position in boxed], positions=boxed, showfliers=False)
        for position, defined in enumerate(data, start=1):
            ax.plot(position + rng.uniform(-0.12, 0.12, defined.size), defined, ".", alpha=0.6,
                    markersize=4 if defined.size >= MIN_BOX_CASES else 8)
        if not any(defined.size for defined in data):
            ax.text(0.5, 0.5, "undefined in every case", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlim(0.5, len(data) + 0.5)
        ax.set_xticks(range(1, len(ticks) + 1), ticks, rotation=30, ha="right", fontsize=7)
        ax.set_title(metric_title(metric, distance_unit), fontsize=9)
    for ax in axes[len(metrics):]:
        ax.set_axis_off()
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path)
    return out_path


def _image_file(image_dir: Path | None, case: str, file_ending: str) -> Path | None:
    """nnU-Net names channel 0 of a case ``CASE_0000{ending}``; None when there is no such file."""
    if image_dir is None:
        return None
    path = Path(image_dir) / f"{case}_0000{file_ending}"
    return path if path.is_file() else None


def _case_overlay(out_path: Path, case: str, label: str, values: Sequence[int], reference_file: Path,
                  prediction_files: Mapping[str, Path], image_file: Path | None) -> Path:
    reference, geometry = read_segmentation(reference_file)
    predictions = {name: np.isin(read_segmentation(path)[0], values)
                   for name, path in prediction_files.items()}
    image = read_array(image_file)[0] if image_file is not None else None
    if image is not None and image.shape != reference.shape:
        image = None
    note = "" if image is not None else " (no image found: masks on black)"
    return save_mip_overlay(out_path, np.isin(reference, values), predictions, image, geometry.array_spacing,
                            title=f"{case} [{label}] MIP{note}")


def write_evaluation_figures(result: FolderEvaluation, out_dir: Path | str,
                             image_dir: Path | str | None = None, max_cases: int | None = None) -> list[Path]:
    """``mip_{case}_{label}.png`` per case (prediction vs reference) and ``distributions_{label}.png``."""
    out_dir = Path(out_dir)
    image_dir = Path(image_dir) if image_dir is not None else None
    cases = list(dict.fromkeys(row["case"] for row in result.rows))[:max_cases]
    written = []
    for label, values in result.labels.items():
        for case in cases:
            rows = [r for r in result.rows if r["case"] == case and r["label"] == label and "slice" not in r]
            dice = f" Dice {100 * rows[0]['dice']:.1f}%" if rows else ""
            written.append(_case_overlay(out_dir / f"mip_{case}_{label}.png", case, label, values,
                                         result.reference_file(case),
                                         {f"prediction{dice}": result.prediction_file(case)},
                                         _image_file(image_dir, case, result.file_ending)))
        per_metric = {m: {result.pred_dir.name: [r[m] for r in result.rows if r["label"] == label]}
                      for m in METRICS}
        written.append(save_metric_distributions(out_dir / f"distributions_{label}.png", per_metric,
                                                 title=f"{label}: per-{result.mode} metrics",
                                                 distance_unit=result.distance_unit))
    return written


def default_image_dir(result: ComparisonResult) -> Path | None:
    """``$nnUNet_raw/DatasetXXX/imagesTr`` for validation predictions, when it exists."""
    raw = nnunet_folder("nnUNet_raw")
    if result.mode != "validation" or raw is None:
        return None
    folder = raw / result.dataset / "imagesTr"
    return folder if folder.is_dir() else None


def write_comparison_figures(result: ComparisonResult, out_dir: Path | str,
                             image_dir: Path | str | None = None, max_cases: int = 3) -> list[Path]:
    """Per label: ``distributions_{label}.png`` (one box per trainer) and, for the first ``max_cases`` cases
    every scored trainer predicted, ``mip_{case}_{label}.png`` with the trainers side by side."""
    out_dir = Path(out_dir)
    image_dir = Path(image_dir) if image_dir is not None else default_image_dir(result)
    runs = [run for run in result.runs.values() if run.evaluations]
    if not runs:
        raise ValueError("no trainer has scored predictions; nothing to plot (see the Problems list)")
    where = {run.trainer: {row["case"]: run.evaluations[row["fold"]] for row in run.rows} for run in runs}
    common = sorted(set.intersection(*(set(cases) for cases in where.values())))
    written = []
    for label in result.labels:
        for case in common[:max_cases]:
            any_result = where[runs[0].trainer][case]
            values = any_result.labels[label]
            predictions = {}
            for run in runs:
                rows = [r for r in run.rows if r["case"] == case and r["label"] == label]
                dice = f"\nDice {100 * rows[0]['dice']:.1f}%" if rows else ""
                predictions[f"{run.display_name}{dice}"] = where[run.trainer][case].prediction_file(case)
            written.append(_case_overlay(out_dir / f"mip_{case}_{label}.png", case, label, values,
                                         any_result.reference_file(case), predictions,
                                         _image_file(image_dir, case, any_result.file_ending)))
        per_metric = {m: {run.display_name: [r[m] for r in run.rows if r["label"] == label] for run in runs}
                      for m in METRICS}
        written.append(save_metric_distributions(out_dir / f"distributions_{label}.png", per_metric,
                                                 title=f"{result.dataset} [{label}]: per-case metrics",
                                                 distance_unit=result.distance_unit))
    return written
