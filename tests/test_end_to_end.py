"""nnU-Net's own CLI, end to end on CPU: train, predict in a fresh process, evaluate, find_best_configuration."""

import json
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_medsam_fusion.evaluation.commands import evaluate_folders
from nnunet_medsam_fusion.testing.nnunet_env import BIN, DATASET, DATASET_ID, nnunet_env, run_cli
from nnunet_medsam_fusion.testing.tiny_checkpoints import write_tiny_medsam2_checkpoint

pytestmark = pytest.mark.slow
CHANCE_DICE = 0.1  # vessels are ~1% of voxels: a random or empty prediction scores far below this


def read_labels(folder):
    return {case.name: sitk.GetArrayFromImage(sitk.ReadImage(str(case))) for case in folder.glob("*.nii.gz")}


def train(trainer, env):
    run_cli(["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", trainer, "-device", "cpu"],
            dict(env, nnUNet_n_proc_DA="0"))


def predict_and_evaluate(root, trainer, env, out):
    """nnUNetv2_predict in a fresh process, then our evaluation against labelsTs."""
    run_cli(["nnUNetv2_predict", "-i", str(root / "raw" / DATASET / "imagesTs"), "-o", str(out), "-d",
             str(DATASET_ID), "-c", "2d", "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1", "-nps", "1"],
            env)
    return evaluate_folders(out, root / "raw" / DATASET / "labelsTs", root / "raw" / DATASET / "dataset.json")


def test_focal_dice_trains_predicts_and_evaluates_through_nnunet(planned_dataset, tmp_path):
    env = nnunet_env(planned_dataset)
    trainer = "nnUNetTrainerFocalDice_demo"
    train(trainer, env)
    result = predict_and_evaluate(planned_dataset, trainer, env, tmp_path / "pred")
    ours = result.summary["vessel"]["metrics"]["dice"]["mean"]
    assert ours > CHANCE_DICE

    model = planned_dataset / "results" / DATASET / f"{trainer}__nnUNetPlans__2d"
    run_cli(["nnUNetv2_evaluate_folder", str(planned_dataset / "raw" / DATASET / "labelsTs"), str(tmp_path / "pred"),
             "-djfile", str(model / "dataset.json"), "-pfile", str(model / "plans.json")], env)
    nnunet_summary = json.loads((tmp_path / "pred" / "summary.json").read_text())
    assert nnunet_summary["mean"]["1"]["Dice"] == pytest.approx(ours, abs=1e-6)

    run_cli(["nnUNetv2_find_best_configuration", str(DATASET_ID), "-c", "2d", "-tr", trainer, "-f", "0"], env)
    best = json.loads((planned_dataset / "results" / DATASET / "inference_information.json").read_text())
    assert best["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] == trainer


def test_fusion_predicts_and_validates_without_the_foundation_checkpoint(planned_dataset, tmp_path):
    """Through nnU-Net's commands with one family (MedSAM2): the model-folder rules belong to the base class that
    both families share (test_model_folder.py checks them in-process)."""
    trainer, variable, write = ("nnUNetTrainerMedSAM2FusionTiny_demo", "nnUNet_MedSAM2_checkpoint",
                                write_tiny_medsam2_checkpoint)
    write(tmp_path / "foundation.pt")
    train(trainer, nnunet_env(planned_dataset, **{variable: str(tmp_path / "foundation.pt")}))
    (tmp_path / "foundation.pt").unlink()  # prediction needs only the model folder: no file, no variable
    result = predict_and_evaluate(planned_dataset, trainer, nnunet_env(planned_dataset), tmp_path / "pred")
    model = planned_dataset / "results" / DATASET / f"{trainer}__nnUNetPlans__2d"
    assert "loaded from" in next((model / "fold_0").glob("training_log*")).read_text()
    assert result.summary["vessel"]["metrics"]["dice"]["mean"] > CHANCE_DICE

    # --val needs no variable either; a variable naming another file is refused and changes nothing
    validation = model / "fold_0" / "validation"
    first_validation = read_labels(validation)
    plans = (model / "plans.json").read_text()
    write(tmp_path / "other.pt", seed=7)
    val = ["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", trainer, "-device", "cpu", "--val"]
    refused = subprocess.run([str(BIN / val[0]), *val[1:]], capture_output=True, text=True,
                             env=nnunet_env(planned_dataset, **{variable: str(tmp_path / "other.pt")}))
    assert refused.returncode != 0 and "is not the file this" in refused.stderr + refused.stdout
    assert (model / "plans.json").read_text() == plans
    run_cli(val, nnunet_env(planned_dataset))
    again = read_labels(validation)
    assert again.keys() == first_validation.keys() and first_validation
    assert all(np.array_equal(again[case], first_validation[case]) for case in again)


def test_3d_fusion_trains_predicts_validates_and_continues_through_nnunet(planned_dataset, tmp_path):
    """The same trainer names on 3d_fullres, through nnU-Net's own commands: train, predict in a fresh process
    without the foundation file, --val, --c, and a variable naming another file refused."""
    trainer, variable = "nnUNetTrainerMedSAM2FusionTiny_smoke", "nnUNet_MedSAM2_checkpoint"
    write_tiny_medsam2_checkpoint(tmp_path / "foundation.pt")
    command = ["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", trainer, "-device", "cpu"]
    run_cli(command, nnunet_env(planned_dataset, nnUNet_n_proc_DA="0", **{variable: str(tmp_path / "foundation.pt")}))
    (tmp_path / "foundation.pt").unlink()
    model = planned_dataset / "results" / DATASET / f"{trainer}__nnUNetPlans__3d_fullres"
    recorded = json.loads((model / "plans.json").read_text())["configurations"]["3d_fullres"]["foundation"]
    assert recorded["depth_image"] is not None and recorded["input_size"] <= 512
    assert "3D fusion: the 2D encoder sees" in next((model / "fold_0").glob("training_log*")).read_text()

    images = planned_dataset / "raw" / DATASET / "imagesTs"
    run_cli(["nnUNetv2_predict", "-i", str(images), "-o", str(tmp_path / "pred"), "-d", str(DATASET_ID),
             "-c", "3d_fullres", "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1", "-nps", "1"],
            nnunet_env(planned_dataset))
    predictions = read_labels(tmp_path / "pred")
    references = read_labels(planned_dataset / "raw" / DATASET / "labelsTs")
    assert predictions.keys() == references.keys()
    assert all(predictions[case].shape == references[case].shape for case in predictions)

    write_tiny_medsam2_checkpoint(tmp_path / "other.pt", seed=7)
    plans = (model / "plans.json").read_text()
    val = command + ["--val"]
    refused = subprocess.run([str(BIN / val[0]), *val[1:]], capture_output=True, text=True,
                             env=nnunet_env(planned_dataset, **{variable: str(tmp_path / "other.pt")}))
    assert refused.returncode != 0 and "is not the file this" in refused.stderr + refused.stdout
    assert (model / "plans.json").read_text() == plans
    run_cli(val, nnunet_env(planned_dataset))
    run_cli(command + ["--c"], nnunet_env(planned_dataset, nnUNet_n_proc_DA="0"))
    assert (model / "fold_0" / "checkpoint_final.pth").exists()
