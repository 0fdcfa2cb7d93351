"""A convention is one module and one registry line: a convention the package does not know, registered in a
test, is scored, aggregated its own way, written and compared through the interface alone."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_medsam_fusion.cli import main
from nnunet_medsam_fusion.evaluation import conventions
from nnunet_medsam_fusion.evaluation.commands import compare_trainers, evaluate_folders
from nnunet_medsam_fusion.evaluation.conventions.base import Convention
from nnunet_medsam_fusion.text import markdown_table


class Detection(Convention):
    """Per case: label voxel counts and whether label 2 was found; aggregate: an F1 over cases, not a mean."""

    name = "detection"
    text = "a test convention"
    title = "Detection"
    summary_columns = ("metric", "mean")

    def context(self, dataset, dataset_json, options):
        if options.get("per_slice"):
            raise ValueError("detection scores volumes; drop --per-slice")
        return {"track": options.get("track", "mr"), "labels_source": "fixed"}

    def labels_source(self, context):
        return context["labels_source"]

    def score_case(self, pred, ref, spacing, context):
        found, present = bool((pred == 2).any()), bool((ref == 2).any())
        verdict = {(True, True): "TP", (False, True): "FN", (True, False): "FP", (False, False): "TN"}[found, present]
        return [{"track": context["track"], "pred_voxels": int((pred > 0).sum()), "detection": verdict}]

    def aggregate(self, rows, labels):
        counts = {v: sum(row["detection"] == v for row in rows) for v in ("TP", "FP", "FN")}
        f1 = 2 * counts["TP"] / (2 * counts["TP"] + counts["FP"] + counts["FN"])
        return {"pred_voxels": {"mean": float(np.mean([r["pred_voxels"] for r in rows])), "count": len(rows)},
                "detection_f1": f1}

    def case_table(self, rows):
        return markdown_table(["Case", "detection"], [[r["case"], r["detection"]] for r in rows])

    def summary_table(self, aggregates):
        return markdown_table(["F1"], [[f"{aggregates['detection_f1']:.3f}"]])

    def summary_rows(self, aggregates):
        return [{"metric": "detection_f1", "mean": aggregates["detection_f1"]}]

    def comparison_table(self, trainers):
        body = [[trainer, f"{a['detection_f1']:.3f}" if a else "-"] for trainer, _, a in trainers]
        return markdown_table(["Trainer", "F1"], body)


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setitem(conventions.REGISTRY, Detection.name, Detection())
    monkeypatch.delenv("nnUNet_results", raising=False)
    cases = {"a": (2, 2), "b": (0, 2), "c": (2, 0), "d": (2, 2)}  # (predicted, reference) label of one voxel
    for case, (pred_value, ref_value) in cases.items():
        for folder, value in (("pred", pred_value), ("ref", ref_value)):
            array = np.zeros((3, 4, 4), np.uint8)
            array[1, 1, 1], array[0, 0, 0] = value, 1
            (tmp_path / folder).mkdir(exist_ok=True)
            sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / folder / f"{case}.nii.gz"))
    return tmp_path


def test_registered_convention_is_scored_aggregated_its_way_and_written(folders, capsys):
    result = evaluate_folders(folders / "pred", folders / "ref", convention="detection", out_dir=folders / "out",
                              options={"track": "ct"})
    assert [row["detection"] for row in result.rows] == ["TP", "FN", "FP", "TP"]
    assert {row["track"] for row in result.rows} == {"ct"}
    assert result.aggregates["detection_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    report = json.loads((folders / "out" / "nnmsf_metrics.json").read_text())
    assert report["convention"] == "detection" and report["labels_source"] == "fixed"
    with (folders / "out" / "nnmsf_metrics_cases.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["convention", "case", "track", "pred_voxels", "detection"] and rows[1]["detection"] == "FN"
    with (folders / "out" / "nnmsf_metrics_summary.csv").open() as handle:
        assert float(next(csv.DictReader(handle))["mean"]) == pytest.approx(2 / 3)
    assert main(["evaluate", "--pred", str(folders / "pred"), "--ref", str(folders / "ref"), "--convention",
                 "detection", "--out", str(folders / "cli")]) == 0
    assert "| F1 |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="drop --per-slice"):
        evaluate_folders(folders / "pred", folders / "ref", per_slice=True, convention="detection")


def test_registered_convention_compares_trainers(folders):
    result = compare_trainers("901", ["nnUNetTrainer", "nnUNetTrainerFocalDice"], ref_dir=folders / "ref",
                              pred_dirs={"nnUNetTrainer": folders / "pred", "nnUNetTrainerFocalDice": folders / "ref"},
                              convention="detection", out_dir=folders / "cmp")
    assert result.aggregates["nnUNetTrainerFocalDice"]["detection_f1"] == 1.0
    markdown = (folders / "cmp" / "compare.md").read_text()
    assert "convention: detection" in markdown and "| nnUNetTrainer | 0.667 |" in markdown
    with (folders / "cmp" / "compare_summary.csv").open() as handle:
        assert {row["trainer"] for row in csv.DictReader(handle)} == {"nnUNetTrainer", "nnUNetTrainerFocalDice"}
