"""``compare`` on a fake nnU-Net results tree: tables, statistics, p-values, missing trainers and folds."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.stats import wilcoxon

from nnunet_medsam_fusion.cli import main
from nnunet_medsam_fusion.evaluation.commands import compare_trainers
from nnunet_medsam_fusion.evaluation.comparison_tables import comparison_markdown, comparison_tables
from nnunet_medsam_fusion.evaluation.statistics import NO_DIFFERENCE, TIES, TOO_FEW_PAIRS, paired_wilcoxon
from nnunet_medsam_fusion.trainer_table import paper_row

MEDSAM_SPEC = {"family": "medsam", "size": "vit_b", "input_size": 1024}
TINY_SPEC = {"family": "medsam", "size": "tiny", "input_size": 64}
PRETRAINED = {"file": "/weights/medsam_vit_b.pth", "sha256": "ab" * 32}

DATASET = "Dataset901_Fake"
SPACING = (1.5, 0.5, 0.5)
CASES = [f"case_{i}" for i in range(6)]
SPLITS = [{"train": CASES[3:], "val": CASES[:3]}, {"train": CASES[:3], "val": CASES[3:]}]
# trainer -> how many reference voxels per case its predictions drop (differs per case for the tests)
TRAINERS = {"nnUNetTrainer": 6, "nnUNetTrainerMedSAMFusion_demo": 2, "nnUNetTrainerFocalDice": 4}


def write_nifti(path, array):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(tuple(reversed(SPACING)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def reference(index):
    ref = np.zeros((6, 16, 16), dtype=np.uint8)
    ref[:, 4 + index % 3, 2:14] = 1
    ref[2, 3:12, 8] = 1
    return ref


def prediction(index, drop):
    pred = reference(index).copy()
    pred[:, 4 + index % 3, 2:2 + drop + index] = 0  # shorter vessel: worse for larger drop
    return pred


def write_plans(model, foundation=None, **weights):
    """The model folder's plans.json as training writes it: the encoder spec and its weights record."""
    configuration = {} if foundation is None else {"foundation": foundation, **weights}
    (model / "plans.json").write_text(json.dumps({"configurations": {"2d": configuration}}))


@pytest.fixture
def nnunet_tree(tmp_path, monkeypatch):
    results, preprocessed, raw = tmp_path / "results", tmp_path / "preprocessed", tmp_path / "raw"
    labels = {"labels": {"background": 0, "vessel": 1}, "file_ending": ".nii.gz",
              "channel_names": {"0": "MRA"}}
    (preprocessed / DATASET).mkdir(parents=True)
    (preprocessed / DATASET / "splits_final.json").write_text(json.dumps(SPLITS))
    (preprocessed / DATASET / "dataset.json").write_text(json.dumps(labels))
    for i, case in enumerate(CASES):
        write_nifti(preprocessed / DATASET / "gt_segmentations" / f"{case}.nii.gz", reference(i))
    for trainer, drop in TRAINERS.items():
        model = results / DATASET / f"{trainer}__nnUNetPlans__2d"
        model.mkdir(parents=True)
        (model / "dataset.json").write_text(json.dumps(labels))
        if "Fusion" in trainer:
            write_plans(model, MEDSAM_SPEC, foundation_weights=PRETRAINED)
        else:
            write_plans(model)
        for fold, split in enumerate(SPLITS):
            for case in split["val"]:
                write_nifti(model / f"fold_{fold}" / "validation" / f"{case}.nii.gz",
                            prediction(CASES.index(case), drop))
    folders = {"nnUNet_results": results, "nnUNet_preprocessed": preprocessed, "nnUNet_raw": raw}
    for name, path in folders.items():
        monkeypatch.setenv(name, str(path))
    return results / DATASET


def test_tables_statistics_and_outputs(nnunet_tree, tmp_path):
    trainers = list(TRAINERS) + ["nnUNetTrainerMedSAM2Fusion"]
    result = compare_trainers("901", trainers, folds=[0, 1], out_dir=tmp_path / "cmp", allow_partial=True)
    assert result.dataset == DATASET and result.reference == "nnUNetTrainer"
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| nnUNetTrainerMedSAMFusion_demo | Full (MS) | 0,1 | 6 |" in markdown
    assert "| nnUNetTrainerFocalDice | w/o FF | 0,1 | 6 |" in markdown
    assert "| nnUNetTrainerMedSAM2Fusion | Full (MS2), encoder not verified | MISSING | 0 |" in markdown
    assert "sha256 " + "ab" * 32 in markdown  # the fusion model's recorded weights
    assert "## Topology (not in the paper)" in markdown and "β1 error" in markdown
    assert "(ref.)" in markdown and "p=" in markdown and " ± " in markdown
    assert "## Ablation: loss function (focal loss)" in markdown and "## Across folds" in markdown
    assert any("nnUNetTrainerMedSAM2Fusion: not trained" in p for p in result.problems)
    assert any("nnUNetTrainerMedSAM2Fusion lacks 6 of the 6 case(s)" in p for p in result.problems)

    # statistics: across cases, across folds and the paired Wilcoxon test
    rows = {t: [r for r in result.rows if r["trainer"] == t] for t in TRAINERS}
    ours, base = rows["nnUNetTrainerMedSAMFusion_demo"], rows["nnUNetTrainer"]
    entry = result.stat("nnUNetTrainerMedSAMFusion_demo", "vessel", "dice")
    dice = np.array([r["dice"] for r in ours])
    assert entry["mean"] == pytest.approx(dice.mean()) and entry["std"] == pytest.approx(dice.std())
    fold_means = [np.mean([r["dice"] for r in ours if r["fold"] == f]) for f in ("0", "1")]
    assert entry["fold_mean"] == pytest.approx(np.mean(fold_means))
    assert entry["fold_std"] == pytest.approx(np.std(fold_means))
    by_case = {r["case"]: r["dice"] for r in base}
    expected_p = wilcoxon(dice, [by_case[r["case"]] for r in ours]).pvalue
    assert entry["p_value"] == pytest.approx(expected_p) and entry["n_pairs"] == 6
    assert entry["mean"] > result.stat("nnUNetTrainer", "vessel", "dice")["mean"]

    with (tmp_path / "cmp" / "compare_summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    ours_dice = [s for s in summary
                 if s["trainer"] == "nnUNetTrainerMedSAMFusion_demo" and s["metric"] == "dice"]
    assert float(ours_dice[0]["p_value"]) == pytest.approx(expected_p)
    with (tmp_path / "cmp" / "compare_cases.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 18


def test_missing_fold_and_incomplete_validation_are_flagged_with_allow_partial(nnunet_tree, tmp_path):
    fold_1 = nnunet_tree / "nnUNetTrainerFocalDice__nnUNetPlans__2d" / "fold_1"
    (fold_1 / "validation" / "case_4.nii.gz").unlink()
    result = compare_trainers(DATASET, list(TRAINERS), folds=[0, 1, 2], allow_partial=True)
    problems = "\n".join(result.problems)
    assert "nnUNetTrainer fold 2: not trained" in problems
    assert "nnUNetTrainerFocalDice lacks 1 of the 6 case(s) (fold 1: case_4)" in problems
    assert list(result.runs["nnUNetTrainerFocalDice"].evaluations) == ["0", "1"]  # the predicted cases count
    assert "| nnUNetTrainerFocalDice | w/o FF | 0,1 | 5 |" in comparison_markdown(result)
    assert "| nnUNetTrainer | nnUNet | 0,1 | 6 |" in comparison_markdown(result)  # every row shows its own n


def test_different_case_sets_are_refused_naming_the_missing_cases(nnunet_tree, tmp_path, capsys):
    fold_1 = nnunet_tree / "nnUNetTrainerFocalDice__nnUNetPlans__2d" / "fold_1"
    (fold_1 / "validation" / "case_4.nii.gz").unlink()
    out = tmp_path / "cmp"
    code = main(["compare", DATASET, "--trainers", *TRAINERS, "--folds", "0", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "trainers were scored on different case sets" in err and "--allow-partial" in err
    assert "nnUNetTrainerFocalDice lacks 1 of the 6 case(s) (fold 1: case_4)" in err
    assert "--only-predicted" not in err and "allow_partial" not in err  # only options compare has
    assert not out.exists()


def test_fold_missing_for_every_trainer_is_refused_naming_it_and_where(nnunet_tree, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", DATASET, "--trainers", *TRAINERS, "--folds", "0", "1", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "fold(s) 2 of the requested 0, 1, 2 have no scored case for any trainer" in err
    assert str(nnunet_tree / "nnUNetTrainer__nnUNetPlans__2d" / "fold_2" / "validation") in err
    assert "leave them out of --folds" in err and "--allow-partial" in err


def test_fold_missing_for_every_trainer_is_a_warning_and_a_note_with_allow_partial(nnunet_tree, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", DATASET, "--trainers", *TRAINERS, "--folds", "0", "1", "2", "--out", str(out),
                 "--allow-partial"])
    err = capsys.readouterr().err
    assert code == 0
    assert "warning: fold(s) 2 of --folds have no scored case for any trainer" in err
    markdown = (out / "compare.md").read_text()
    assert "**Missing folds: 2** were requested but have no scored case for any trainer; the tables hold " \
           "fold(s) 0, 1 only" in markdown
    assert "| nnUNetTrainer | nnUNet | 0,1 | 6 |" in markdown


def write_test_predictions(tmp_path, trainers, cases, missing=()):
    """Test-set predictions per trainer; ``missing``: (trainer, case) pairs left out."""
    pred_dirs = {}
    for trainer in trainers:
        for i, case in enumerate(cases):
            if (trainer, case) not in missing:
                write_nifti(tmp_path / "test" / trainer / f"{case}.nii.gz", prediction(i, TRAINERS[trainer]))
        pred_dirs[trainer] = tmp_path / "test" / trainer
    return pred_dirs


def test_test_set_gap_names_only_the_missing_case_and_options_compare_has(tmp_path, capsys):
    cases = ["101", "102", "103"]
    for i, case in enumerate(cases):
        write_nifti(tmp_path / "ref" / f"{case}.nii.gz", reference(i))
    pred_dirs = write_test_predictions(tmp_path, list(TRAINERS)[:2], cases,
                                       missing={("nnUNetTrainerMedSAMFusion_demo", "103")})
    args = ["compare", "901", "--trainers", *list(TRAINERS)[:2], "--ref", str(tmp_path / "ref"),
            "--pred-dirs", *[f"{t}={d}" for t, d in pred_dirs.items()], "--out", str(tmp_path / "cmp")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "nnUNetTrainerMedSAMFusion_demo lacks 1 of the 3 case(s) (fold test: 103)" in err
    assert "nnUNetTrainer lacks" not in err
    assert "--only-predicted" not in err and "allow_partial" not in err and "--allow-partial" in err
    assert main(args + ["--allow-partial"]) == 0
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| nnUNetTrainerMedSAMFusion_demo | Full (MS), encoder not verified | test | 2 |" in markdown


def test_case_missing_for_every_trainer_is_a_gap(tmp_path):
    """A case no trainer predicted does not silently shrink the tables: the reference folder lists it."""
    for i, case in enumerate(CASES):
        write_nifti(tmp_path / "ref" / f"{case}.nii.gz", reference(i))
    trainers = list(TRAINERS)[:2]
    pred_dirs = write_test_predictions(tmp_path, trainers, CASES, missing={(t, "case_5") for t in trainers})
    with pytest.raises(ValueError, match=r"nnUNetTrainer lacks 1 of the 6 case\(s\) \(fold test: case_5\)"):
        compare_trainers("901", trainers, pred_dirs=pred_dirs, ref_dir=tmp_path / "ref")
    result = compare_trainers("901", trainers, pred_dirs=pred_dirs, ref_dir=tmp_path / "ref", allow_partial=True)
    assert sum("lacks 1 of the 6 case(s) (fold test: case_5)" in p for p in result.problems) == 2


@pytest.mark.parametrize("options", ["none", "ref", "dataset_json", "both"])
def test_fold_missing_a_case_for_every_trainer_is_found_whichever_options_are_given(nnunet_tree, options):
    """splits_final.json says what fold 1 must hold, also when --ref and --dataset-json are both given."""
    preprocessed = nnunet_tree.parent.parent / "preprocessed" / DATASET
    for trainer in TRAINERS:  # a validation that stopped part-way, the same for every trainer
        (nnunet_tree / f"{trainer}__nnUNetPlans__2d" / "fold_1" / "validation" / "case_4.nii.gz").unlink()
    given = {"ref_dir": preprocessed / "gt_segmentations", "dataset_json": preprocessed / "dataset.json"}
    kwargs = {key: value for key, value in given.items() if options in ("both", key.split("_dir")[0])}
    with pytest.raises(ValueError, match=r"nnUNetTrainer lacks 1 of the 6 case\(s\) \(fold 1: case_4\)"):
        compare_trainers(DATASET, list(TRAINERS), folds=[0, 1], **kwargs)


def test_validation_cases_unknown_without_nnunet_preprocessed_is_a_problem(nnunet_tree, monkeypatch):
    preprocessed = nnunet_tree.parent.parent / "preprocessed" / DATASET
    monkeypatch.delenv("nnUNet_preprocessed")
    result = compare_trainers(DATASET, ["nnUNetTrainer"], folds=[0], ref_dir=preprocessed / "gt_segmentations",
                              dataset_json=preprocessed / "dataset.json")
    assert any("validation cases are unknown" in p and "export nnUNet_preprocessed" in p for p in result.problems)


def test_validation_without_splits_compares_the_predicted_cases(nnunet_tree):
    """Without splits_final.json each fold is scored against gt_segmentations: its other cases are no gap."""
    (nnunet_tree.parent.parent / "preprocessed" / DATASET / "splits_final.json").unlink()
    result = compare_trainers(DATASET, list(TRAINERS), folds=[0, 1])
    assert not [p for p in result.problems if "lacks" in p]
    assert "| nnUNetTrainer | nnUNet | 0,1 | 6 |" in comparison_markdown(result)


def test_nothing_scored_is_an_error(nnunet_tree, tmp_path, capsys):
    out = tmp_path / "nope"
    code = main(["compare", "Dataset999_Nope", "--trainers", "nnUNetTrainer", "--folds", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "nothing was scored" in err and "Dataset999_Nope" in err
    assert not out.exists()


def test_wrong_configuration_names_the_existing_folders(nnunet_tree):
    with pytest.raises(ValueError, match="nothing was scored.*nnUNetTrainer__nnUNetPlans__2d"):
        compare_trainers(DATASET, ["nnUNetTrainer"], configuration="3d_fullres")


def test_cli_validation_mode(nnunet_tree, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["compare", "901", "--trainers", *TRAINERS, "nnUNetTrainerMedSAM2Fusion", "--folds", "0", "1",
                 "--out", str(out), "--allow-partial"])
    captured = capsys.readouterr()
    assert code == 0
    assert "| nnUNetTrainerFocalDice | w/o FF |" in captured.out
    assert "problem" in captured.err
    assert (out / "compare.md").is_file() and (out / "compare_cases.csv").is_file()
    # a second run does not overwrite the first
    assert main(["compare", "901", "--trainers", "nnUNetTrainer", "--out", str(out)]) == 2


def test_cli_test_set_mode(nnunet_tree, tmp_path, capsys):
    ref = nnunet_tree.parent.parent / "preprocessed" / DATASET / "gt_segmentations"
    pred_dirs = []
    for trainer, drop in list(TRAINERS.items())[:2]:
        for i, case in enumerate(CASES):
            write_nifti(tmp_path / "test" / trainer / f"{case}.nii.gz", prediction(i, drop))
        pred_dirs.append(f"{trainer}={tmp_path / 'test' / trainer}")
    code = main(["compare", "901", "--trainers", *list(TRAINERS)[:2], "--pred-dirs", *pred_dirs,
                 "--ref", str(ref), "--out", str(tmp_path / "t")])
    assert code == 0
    markdown = (tmp_path / "t" / "compare.md").read_text()
    assert "(test predictions)" in markdown
    assert "| nnUNetTrainerMedSAMFusion_demo | Full (MS) | test | 6 |" in markdown
    assert "Across folds" not in markdown


def test_test_mode_needs_references(tmp_path):
    with pytest.raises(ValueError, match="--ref"):
        compare_trainers("1", ["nnUNetTrainer"], test_pred_root=tmp_path)


def test_unknown_dataset_is_a_usage_error(nnunet_tree, capsys):
    assert main(["compare", "999", "--trainers", "nnUNetTrainer"]) == 2
    assert "999" in capsys.readouterr().err


def write_test_set(results, tmp_path, trainers):
    """Model folders with the given plans.json records and each trainer's test predictions."""
    pred_dirs = {}
    for trainer, (spec, weights, log) in trainers.items():
        model = results / DATASET / f"{trainer}__nnUNetPlans__2d"
        (model / "fold_0").mkdir(parents=True, exist_ok=True)
        write_plans(model, spec, **weights)
        if log:
            (model / "fold_0" / "training_log_2025_1_1_00_00_00.txt").write_text(log)
        for i, case in enumerate(CASES):
            write_nifti(tmp_path / "test" / trainer / f"{case}.nii.gz", prediction(i, 3))
        pred_dirs[trainer] = tmp_path / "test" / trainer
    return pred_dirs


def test_encoder_weights_mark_every_table_csv_and_figure(nnunet_tree, tmp_path, monkeypatch):
    """Random, tiny and pretrained encoders, read from plans.json of model folders found through results_dir;
    training logs are not read."""
    results = nnunet_tree.parent
    monkeypatch.delenv("nnUNet_results")  # as in the demo: the folder is passed, not in the environment
    loaded_line = "Foundation encoder medsam loaded from /weights/medsam_vit_b.pth"
    trainers = {
        "nnUNetTrainerMedSAMFusionTiny_demo": (TINY_SPEC, {"foundation_weights": None}, None),
        "nnUNetTrainerMedSAM2Fusion": (MEDSAM_SPEC | {"precision": "bf16"}, {"foundation_weights": None},
                                       loaded_line),
        "nnUNetTrainerMedSAMFusion_noFocal": (TINY_SPEC, {"foundation_weights": PRETRAINED}, None),
        "nnUNetTrainerMedSAMFusion": (MEDSAM_SPEC, {"foundation_weights": PRETRAINED},
                                      "...has RANDOM, UNTRAINED weights (no x)..."),
        "nnUNetTrainer": (None, {}, None),
    }
    pred_dirs = write_test_set(results, tmp_path, trainers)
    ref = results.parent / "preprocessed" / DATASET / "gt_segmentations"
    result = compare_trainers(DATASET, list(trainers), pred_dirs=pred_dirs, ref_dir=ref, results_dir=results,
                              out_dir=tmp_path / "cmp")
    labels = {t: run.row_label for t, run in result.runs.items()}
    assert labels == {"nnUNetTrainerMedSAMFusionTiny_demo": "Full (MS), random tiny encoder",
                      "nnUNetTrainerMedSAM2Fusion": "Full (MS2), random encoder",
                      "nnUNetTrainerMedSAMFusion_noFocal": "w/o FL (MS), tiny encoder",
                      "nnUNetTrainerMedSAMFusion": "Full (MS)", "nnUNetTrainer": "nnUNet"}
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    tiny_rows = [line for line in markdown.splitlines() if line.startswith("| nnUNetTrainerMedSAMFusionTiny_demo |")]
    assert len(tiny_rows) == 5  # both comparison tables, both ablations, the topology table
    assert all("| Full (MS), random tiny encoder |" in line for line in tiny_rows)
    assert "RANDOM weights" in markdown and "sha256 " + "ab" * 32 in markdown and "unknown" not in markdown
    for name in ("compare_cases.csv", "compare_summary.csv"):
        with (tmp_path / "cmp" / name).open() as handle:
            rows = [r for r in csv.DictReader(handle) if r["trainer"] == "nnUNetTrainerMedSAMFusionTiny_demo"]
        assert rows and all(r["paper_row"] == "Full (MS), random tiny encoder" for r in rows)

    from nnunet_medsam_fusion.evaluation import figures

    drawn = []
    monkeypatch.setattr(figures, "save_mip_overlay", lambda path, ref, predictions, *a, **k: drawn.append(
        list(predictions)) or path)
    monkeypatch.setattr(figures, "save_metric_distributions", lambda path, values, **k: drawn.append(
        list(values["dice"])) or path)
    figures.write_comparison_figures(result, tmp_path / "fig", max_cases=1)
    for names in drawn:
        tiny = [n for n in names if n.startswith("nnUNetTrainerMedSAMFusionTiny_demo")]
        assert len(tiny) == 1 and "[random tiny encoder]" in tiny[0]


def test_foundation_spec_without_weights_record_is_refused_not_read_from_logs(nnunet_tree, tmp_path):
    results = nnunet_tree.parent
    trainers = {"nnUNetTrainerMedSAMFusion": (MEDSAM_SPEC, {}, "...has RANDOM, UNTRAINED weights (no x)..."),
                "nnUNetTrainer": (None, {}, None)}
    pred_dirs = write_test_set(results, tmp_path, trainers)
    ref = results.parent / "preprocessed" / DATASET / "gt_segmentations"
    with pytest.raises(ValueError, match=r"nnUNetTrainerMedSAMFusion__nnUNetPlans__2d/plans.json.*"
                                         r"no 'foundation_weights' entry.*train the model again"):
        compare_trainers(DATASET, list(trainers), pred_dirs=pred_dirs, ref_dir=ref, results_dir=results)


def test_table_1_follows_the_papers_order(nnunet_tree, tmp_path):
    order = ["nnUNetTrainerMedSAM2Fusion", "nnUNetTrainerFocalDice", "nnUNetTrainerTransUNet", "nnUNetTrainer",
             "nnUNetTrainerUNet", "nnUNetTrainerSkelRecall", "nnUNetTrainerSwinUNet", "nnUNetTrainerMedSAMFusion"]
    pred_dirs = {}
    for trainer in order:
        for i, case in enumerate(CASES):
            write_nifti(tmp_path / "test" / trainer / f"{case}.nii.gz", prediction(i, 2))
        pred_dirs[trainer] = tmp_path / "test" / trainer
    ref = nnunet_tree.parent.parent / "preprocessed" / DATASET / "gt_segmentations"
    result = compare_trainers(DATASET, order, pred_dirs=pred_dirs, ref_dir=ref)
    table = comparison_tables(result)["Comparison: Dice / IoU / HD95 / ASD"]
    rows = [line.split(" | ")[1] for line in table.splitlines()[2:]]
    assert rows == ["UNet", "SwinUNet", "TransUNet", "nnUNet", "w/o FF", "Full (MS), encoder not verified",
                    "Full (MS2), encoder not verified", ""]


@pytest.mark.parametrize("trainer, row", [
    ("nnUNetTrainerUNet", "UNet"),
    ("nnUNetTrainerSwinUNet_demo", "SwinUNet"),
    ("nnUNetTrainerTransUNet", "TransUNet"),
    ("nnUNetTrainerMedSAMFusionTiny_demo", "Full (MS)"),
    ("nnUNetTrainerMedSAM2FusionTiny", "Full (MS2)"),
    ("nnUNetTrainerMedSAMFusion_512", None),
    ("nnUNetTrainerMedSAMFusion_SkelRecall", None),
    ("nnUNetTrainerFocalDice_SkelRecall", None),
    ("nnUNetTrainerMedSAMFusionTiny_SkelRecall_smoke", None),
    ("nnUNetTrainerMedSAM2FusionTiny_smoke", "Full (MS2)"),
    ("nnUNetTrainerSkelRecall", None),
    ("nnUNetTrainer", "nnUNet"),
    ("nnUNetTrainer_250epochs", "nnUNet"),
    ("nnUNetTrainerFocalDice_demo", "w/o FF"),
    ("nnUNetTrainerMedSAMFusion", "Full (MS)"),
    ("nnUNetTrainerMedSAMFusion_noFocal_demo", "w/o FL (MS)"),
    ("nnUNetTrainerMedSAM2Fusion_noFocal", "w/o FL (MS2)"),
    ("nnUNetTrainerMedSAM2Fusion_demo", "Full (MS2)"),
    ("nnUNetTrainerDA5", None),
])
def test_paper_rows(trainer, row):
    assert paper_row(trainer) == row


def paired(differences):
    """Values and reference values whose paired differences are ``differences``."""
    return {i: 1.0 + d for i, d in enumerate(differences)}, {i: 1.0 for i in range(len(differences))}


@pytest.mark.parametrize("differences, caveats, p_value", [
    ([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5], (), 2 / 2 ** 8),  # exact test, smallest p for 8 pairs
    ([0.5, 1.5, 2.5, 3.5], (TOO_FEW_PAIRS,), 2 / 2 ** 4),  # 4 pairs: p cannot go below 0.125
    ([0.5, 1.5, 2.5, 3.5, 4.5, 0.0, 0.0, 0.0], (TOO_FEW_PAIRS, TIES), None),  # zeros are dropped: 5 pairs left
    ([0.5, 0.5, 2.5, 3.5, -4.5, 5.5, 6.5, 7.5], (TIES,), None),
    ([0.0] * 7, (NO_DIFFERENCE,), 1.0),
])
def test_paired_wilcoxon_says_when_p_is_not_meaningful(differences, caveats, p_value):
    values, reference_values = paired(differences)
    test = paired_wilcoxon(values, reference_values)
    assert test.caveats == caveats and test.n_pairs == len(differences)
    expected = p_value if p_value is not None else wilcoxon(np.array(differences)).pvalue
    assert test.p_value == pytest.approx(expected)


def test_paired_wilcoxon_pairs_only_defined_values():
    values, reference_values = paired([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5])
    values[0], reference_values[7] = float("nan"), 1.0
    test = paired_wilcoxon(values, reference_values)
    assert test.n_pairs == 6 and test.caveats == () and test.p_value == pytest.approx(2 / 2 ** 6)


def test_tables_and_csv_mark_p_values_that_are_not_meaningful(nnunet_tree, tmp_path):
    """One fold: three paired cases, too few for p < 0.05; identical false-island counts: no difference."""
    result = compare_trainers(DATASET, list(TRAINERS), folds=[0], out_dir=tmp_path / "cmp")
    entry = result.stat("nnUNetTrainerMedSAMFusion_demo", "vessel", "dice")
    assert entry["n_pairs"] == 3 and entry["p_caveat"] == TOO_FEW_PAIRS
    assert result.stat("nnUNetTrainerFocalDice", "vessel", "false_islands")["p_caveat"] == NO_DIFFERENCE
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert f"(p={entry['p_value']:.3g}†)" in markdown and "(p=1§)" in markdown
    assert "† too few pairs with a non-zero difference" in markdown
    assert "§ every paired difference is zero" in markdown
    with (tmp_path / "cmp" / "compare_summary.csv").open() as handle:
        summary = {(r["trainer"], r["metric"]): r for r in csv.DictReader(handle)}
    assert summary["nnUNetTrainerMedSAMFusion_demo", "dice"]["p_caveat"] == TOO_FEW_PAIRS
    assert summary["nnUNetTrainerFocalDice", "false_islands"]["p_caveat"] == NO_DIFFERENCE
    assert summary["nnUNetTrainer", "dice"]["p_caveat"] == ""  # the reference itself is not tested
