"""Folder evaluation: pairing, reading spacing, JSON/CSV outputs, CLI exit codes and bad input."""

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_medsam_fusion.cli import main
from nnunet_medsam_fusion.evaluation.commands import evaluate_folders
from nnunet_medsam_fusion.evaluation.conventions.ours import binary_metrics
from nnunet_medsam_fusion.evaluation.tables import case_table, summary_table

SPACING = (2.0, 0.5, 0.4)  # array order (z, y, x)
SHAPE = (8, 20, 24)


def write_nifti(path, array, spacing=SPACING, origin=None, direction=None):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(tuple(reversed(spacing)))
    if origin is not None:
        image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


def write_dataset_json(folder, labels=None):
    labels = labels or {"background": 0, "vessel": 1}
    path = folder / "dataset.json"
    path.write_text(json.dumps({"labels": labels, "file_ending": ".nii.gz", "channel_names": {"0": "MRA"}}))
    return path


def make_cases(root, n=3):
    """Reference vessels and predictions: one shifted, one perfect, one empty prediction."""
    pred_dir, ref_dir = root / "pred", root / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    refs, preds = {}, {}
    for i in range(n):
        ref = np.zeros(SHAPE, dtype=np.uint8)
        ref[:, 8 + i, 5:20] = 1
        pred = np.roll(ref, 1, axis=1) if i == 0 else ref.copy()
        if i == 2:
            pred[:] = 0
        refs[f"case_{i:03d}"], preds[f"case_{i:03d}"] = ref, pred
        write_nifti(ref_dir / f"case_{i:03d}.nii.gz", ref)
        write_nifti(pred_dir / f"case_{i:03d}.nii.gz", pred)
    return pred_dir, ref_dir, preds, refs


def test_scores_every_case_with_file_spacing(tmp_path):
    pred_dir, ref_dir, preds, refs = make_cases(tmp_path)
    dataset_json = write_dataset_json(tmp_path)
    result = evaluate_folders(pred_dir, ref_dir, dataset_json)
    assert [row["case"] for row in result.rows] == ["case_000", "case_001", "case_002"]
    for row in result.rows:
        expected = binary_metrics(preds[row["case"]] == 1, refs[row["case"]] == 1, SPACING)
        assert row["dice"] == pytest.approx(expected["dice"])
        assert (math.isnan(row["hd95"]) and math.isnan(expected["hd95"])) or row["hd95"] == expected["hd95"]
    # case_000 is shifted by one voxel along y (0.5 mm)
    assert result.rows[0]["hd95"] == pytest.approx(0.5)
    assert result.rows[2]["status"] == "empty prediction"
    dice = result.summary["vessel"]["metrics"]["dice"]
    assert dice["mean"] == pytest.approx(np.mean([r["dice"] for r in result.rows]))
    hd = result.summary["vessel"]["metrics"]["hd95"]
    assert (hd["n"], hd["n_undefined"]) == (2, 1)
    assert hd["mean"] == pytest.approx(0.25)


def test_writes_json_and_csv(tmp_path):
    pred_dir, ref_dir, _, _ = make_cases(tmp_path)
    out = tmp_path / "out"
    evaluate_folders(pred_dir, ref_dir, write_dataset_json(tmp_path), out_dir=out)
    report = json.loads((out / "nnmsf_metrics.json").read_text())
    assert "hd95" in report["conventions"] and "one_empty" in report["conventions"]
    assert report["cases"][2]["hd95"] is None  # NaN written as null
    assert report["summary"]["vessel"]["metrics"]["hd95"]["n_undefined"] == 1
    with (out / "nnmsf_metrics_cases.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and rows[2]["hd95"] == "" and rows[1]["dice"] == "1.0"
    with (out / "nnmsf_metrics_summary.csv").open() as handle:
        assert {r["metric"] for r in csv.DictReader(handle)} >= {"dice", "iou", "hd95", "asd", "cldice"}


def test_refuses_to_overwrite_earlier_results(tmp_path):
    pred_dir, ref_dir, _, _ = make_cases(tmp_path)
    out = tmp_path / "out"
    evaluate_folders(pred_dir, ref_dir, out_dir=out)
    before = (out / "nnmsf_metrics.json").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate_folders(pred_dir, ref_dir, out_dir=out)
    assert (out / "nnmsf_metrics.json").read_text() == before
    evaluate_folders(pred_dir, ref_dir, out_dir=out, overwrite=True)


def test_cli_overwrite_refusal_names_only_cli_options(tmp_path, capsys):
    pred_dir, ref_dir, _, _ = make_cases(tmp_path)
    args = ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite or choose another output folder (--out)" in err and "overwrite=True" not in err
    assert main(args + ["--overwrite"]) == 0


def test_only_predicted_narrows_a_case_list_and_keeps_the_unpredicted(tmp_path):
    pred_dir, ref_dir, _, _ = make_cases(tmp_path)
    (pred_dir / "case_001.nii.gz").unlink()
    with pytest.raises(ValueError, match="missing prediction.*case_001"):
        evaluate_folders(pred_dir, ref_dir, cases=["case_001", "case_002"])
    result = evaluate_folders(pred_dir, ref_dir, cases=["case_001", "case_002"], only_predicted=True)
    assert [r["case"] for r in result.rows] == ["case_002"] and result.unpredicted == ["case_001"]
    assert result.notes[0] == "1 listed case(s) (of 2) have no prediction and were not scored: case_001"


def test_cli_prints_table_and_exits_zero(tmp_path, capsys):
    pred_dir, ref_dir, _, _ = make_cases(tmp_path)
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir),
                 "--dataset-json", str(write_dataset_json(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    assert "| Label | n | Dice (%) |" in out and "| case_002 |" in out and "(1 undef.)" in out
    assert (pred_dir / "nnmsf_metrics.json").is_file()


def test_cli_missing_case_exits_2_naming_it(tmp_path, capsys):
    pred_dir, ref_dir, _, _ = make_cases(tmp_path)
    (pred_dir / "case_001.nii.gz").unlink()
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "case_001" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_only_predicted_scores_the_subset(tmp_path):
    pred_dir, ref_dir, _, _ = make_cases(tmp_path)
    (pred_dir / "case_001.nii.gz").unlink()
    result = evaluate_folders(pred_dir, ref_dir, only_predicted=True)
    assert [r["case"] for r in result.rows] == ["case_000", "case_002"]
    assert any("1 reference case" in note for note in result.notes)


def test_extra_prediction_is_an_error(tmp_path):
    pred_dir, ref_dir, preds, _ = make_cases(tmp_path)
    write_nifti(pred_dir / "stray.nii.gz", preds["case_000"])
    with pytest.raises(ValueError, match="stray"):
        evaluate_folders(pred_dir, ref_dir)


def test_spacing_mismatch_is_an_error(tmp_path, capsys):
    pred_dir, ref_dir, preds, _ = make_cases(tmp_path)
    write_nifti(pred_dir / "case_001.nii.gz", preds["case_001"], spacing=(1.0, 0.5, 0.4))
    with pytest.raises(ValueError, match="case_001.*spacing"):
        evaluate_folders(pred_dir, ref_dir)
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir)]) == 2
    assert "spacing" in capsys.readouterr().err


FLIPPED_X = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("geometry, what", [
    ({"direction": FLIPPED_X}, "direction"),
    ({"origin": (0.0, 5.0, 0.0)}, "origin"),
])
def test_geometry_mismatch_is_an_error_naming_case_and_both_geometries(tmp_path, capsys, geometry, what):
    pred_dir, ref_dir, preds, _ = make_cases(tmp_path)
    write_nifti(pred_dir / "case_001.nii.gz", preds["case_001"], **geometry)
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "case_001" in err and what in err
    assert "origin (0, 5, 0)" in err or "direction (-1, 0, 0" in err  # the prediction's geometry
    assert "reference spacing (0.4, 0.5, 2), origin (0, 0, 0), direction (1, 0, 0" in err
    assert not out.exists()


def test_geometry_within_tolerance_is_accepted(tmp_path):
    pred_dir, ref_dir, preds, _ = make_cases(tmp_path)
    # float32 header rounding: far below 1% of a voxel and 1e-3 in the direction cosines
    write_nifti(pred_dir / "case_001.nii.gz", preds["case_001"], origin=(1e-4, 0.0, -1e-4),
                direction=(1.0, 1e-5, 0.0, -1e-5, 1.0, 0.0, 0.0, 0.0, 1.0))
    assert len(evaluate_folders(pred_dir, ref_dir).rows) == 3

def test_shape_mismatch_is_an_error(tmp_path):
    pred_dir, ref_dir, _, _ = make_cases(tmp_path)
    write_nifti(pred_dir / "case_000.nii.gz", np.zeros((8, 20, 25), dtype=np.uint8))
    with pytest.raises(ValueError, match="case_000.*shape"):
        evaluate_folders(pred_dir, ref_dir)


def test_label_absent_from_dataset_json_is_an_error(tmp_path):
    pred_dir, ref_dir, preds, _ = make_cases(tmp_path)
    bad = preds["case_001"].copy()
    bad[0, 0, 0] = 3
    write_nifti(pred_dir / "case_001.nii.gz", bad)
    with pytest.raises(ValueError, match=r"case_001.*\[3\]"):
        evaluate_folders(pred_dir, ref_dir, write_dataset_json(tmp_path))


def test_labels_of_the_raw_dataset_json_beside_the_references_are_enforced(tmp_path):
    # nnU-Net's raw layout: labelsTs/ next to dataset.json; predictions from elsewhere carry no dataset.json.
    pred_dir, _, preds, refs = make_cases(tmp_path)
    raw = tmp_path / "Dataset001_X"
    (raw / "labelsTs").mkdir(parents=True)
    write_dataset_json(raw)
    for case, ref in refs.items():
        write_nifti(raw / "labelsTs" / f"{case}.nii.gz", ref)
    bad = preds["case_001"].copy()
    bad[0, 0, 0] = 3
    write_nifti(pred_dir / "case_001.nii.gz", bad)
    with pytest.raises(ValueError, match=r"case_001.*\[3\]"):
        evaluate_folders(pred_dir, raw / "labelsTs")


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(path))


def test_png_distances_are_in_pixels(tmp_path, capsys):
    ref = np.zeros((32, 40), dtype=np.uint8)
    ref[10:14, 5:35] = 1
    write_png(tmp_path / "ref" / "slice_000.png", ref)
    write_png(tmp_path / "pred" / "slice_000.png", np.roll(ref, 3, axis=0))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "vessel": 1},
                                                       "file_ending": ".png", "channel_names": {"0": "R"}}))
    out = tmp_path / "out"
    code = main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                 "--dataset-json", str(tmp_path / "dataset.json"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "HD95 (px)" in printed and "ASD (px)" in printed and "(mm)" not in printed
    report = json.loads((out / "nnmsf_metrics.json").read_text())
    assert report["distance_unit"] == "px"
    assert report["cases"][0]["hd95"] == pytest.approx(3.0)  # shifted by 3 pixels
    with (out / "nnmsf_metrics_summary.csv").open() as handle:
        units = {r["metric"]: r["unit"] for r in csv.DictReader(handle)}
    assert units["hd95"] == "px" and units["dice"] == "%" and units["betti0_error"] == "count"


def test_rgb_label_image_is_an_error(tmp_path):
    rgb = sitk.GetImageFromArray(np.zeros((8, 8, 3), dtype=np.uint8), isVector=True)
    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
        sitk.WriteImage(rgb, str(tmp_path / folder / "a.png"))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "vessel": 1},
                                                       "file_ending": ".png"}))
    with pytest.raises(ValueError, match="3 values per pixel"):
        evaluate_folders(tmp_path / "pred", tmp_path / "ref", tmp_path / "dataset.json")


def test_topology_columns_in_rows_and_csv(tmp_path):
    pred_dir, ref_dir, preds, refs = make_cases(tmp_path, n=1)
    pred = refs["case_000"].copy()
    pred[0, 18, 5:7] = 1  # an island 10 voxels (5 mm) beside the vessel: not far (within 5 mm)
    pred[7, 19, 22:24] = 1  # an island 11 voxels (5.5 mm) away: far
    write_nifti(pred_dir / "case_000.nii.gz", pred)
    result = evaluate_folders(pred_dir, ref_dir, out_dir=tmp_path / "o")
    row = result.rows[0]
    assert (row["betti0_error"], row["betti1_error"], row["false_islands"], row["false_island_voxels"]) == \
        (2, 0, 1, 2)
    assert "β0 error" in case_table(result) and "False islands" in summary_table(result)
    with (tmp_path / "o" / "nnmsf_metrics_cases.csv").open() as handle:
        written = next(csv.DictReader(handle))
    assert (written["betti0_error"], written["pred_betti0"], written["ref_betti0"]) == ("2", "3", "1")


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    with pytest.raises(ValueError, match="no '\\*.nii.gz' files"):
        evaluate_folders(tmp_path / "pred", tmp_path / "ref")
    with pytest.raises(FileNotFoundError):
        evaluate_folders(tmp_path / "nowhere", tmp_path / "ref")


def test_labels_inferred_without_dataset_json(tmp_path):
    pred_dir, ref_dir, preds, refs = make_cases(tmp_path, n=2)
    second = refs["case_001"].copy()
    second[2, 2:5, 2:5] = 2  # label 2 exists only in case_001
    write_nifti(ref_dir / "case_001.nii.gz", second)
    write_nifti(pred_dir / "case_001.nii.gz", second)
    result = evaluate_folders(pred_dir, ref_dir)
    assert set(result.labels) == {"label_1", "label_2"}
    absent = [r for r in result.rows if r["case"] == "case_000" and r["label"] == "label_2"]
    assert len(absent) == 1 and absent[0]["status"] == "both empty"


def test_ignore_label_voxels_are_not_scored(tmp_path):
    pred_dir, ref_dir, preds, refs = make_cases(tmp_path, n=1)
    ref = refs["case_000"].copy()
    pred = ref.copy()
    ref[0, 0:4, 0:4] = 2  # ignore region, predicted as vessel
    pred[0, 0:4, 0:4] = 1
    write_nifti(ref_dir / "case_000.nii.gz", ref)
    write_nifti(pred_dir / "case_000.nii.gz", pred)
    labels = {"background": 0, "vessel": 1, "ignore": 2}
    result = evaluate_folders(pred_dir, ref_dir, write_dataset_json(tmp_path, labels))
    assert result.rows[0]["dice"] == pytest.approx(1.0) and result.rows[0]["fp"] == 0


def test_per_slice_mode_scores_foreground_slices(tmp_path):
    pred_dir, ref_dir, preds, refs = make_cases(tmp_path, n=1)
    ref = refs["case_000"].copy()
    ref[:3] = 0  # three background-only slices in both
    pred = np.roll(ref, 1, axis=1)
    write_nifti(ref_dir / "case_000.nii.gz", ref)
    write_nifti(pred_dir / "case_000.nii.gz", pred)
    result = evaluate_folders(pred_dir, ref_dir, per_slice=True, out_dir=tmp_path / "o")
    assert [r["slice"] for r in result.rows] == [3, 4, 5, 6, 7]
    assert all(r["hd95"] == pytest.approx(0.5) for r in result.rows)  # in-plane spacing only
    with (tmp_path / "o" / "nnmsf_metrics_cases.csv").open() as handle:
        assert next(csv.DictReader(handle))["slice"] == "3"


def test_parallel_workers_give_the_same_rows(tmp_path):
    pred_dir, ref_dir, _, _ = make_cases(tmp_path)
    serial = evaluate_folders(pred_dir, ref_dir)
    parallel = evaluate_folders(pred_dir, ref_dir, num_workers=2)
    assert [r["dice"] for r in serial.rows] == [r["dice"] for r in parallel.rows]
