"""nnU-Net's own CLI, end to end on CPU: train, predict in a fresh process, evaluate, find_best_configuration."""

import json

import pytest

from nnunet_medsam_fusion.evaluation.evaluate import evaluate_folders
from nnunet_medsam_fusion.foundation.testing import (
    write_tiny_medsam2_checkpoint,
    write_tiny_medsam_checkpoint,
)

from .conftest import DATASET, DATASET_ID, nnunet_env, run_cli

pytestmark = pytest.mark.slow
CHANCE_DICE = 0.1  # vessels are ~1% of voxels: a random or empty prediction scores far below this


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


@pytest.mark.parametrize("trainer,variable,write", [
    ("nnUNetTrainerMedSAMFusionTiny_demo", "nnUNet_MedSAM_checkpoint", write_tiny_medsam_checkpoint),
    ("nnUNetTrainerMedSAM2FusionTiny_demo", "nnUNet_MedSAM2_checkpoint", write_tiny_medsam2_checkpoint),
])
def test_fusion_predicts_without_the_foundation_checkpoint(planned_dataset, tmp_path, trainer, variable, write):
    write(tmp_path / "foundation.pt")
    train(trainer, nnunet_env(planned_dataset, **{variable: str(tmp_path / "foundation.pt")}))
    (tmp_path / "foundation.pt").unlink()  # prediction needs only the model folder: no file, no variable
    result = predict_and_evaluate(planned_dataset, trainer, nnunet_env(planned_dataset), tmp_path / "pred")
    log = next((planned_dataset / "results" / DATASET / f"{trainer}__nnUNetPlans__2d" / "fold_0").glob("training_log*"))
    assert "loaded from" in log.read_text()
    assert result.summary["vessel"]["metrics"]["dice"]["mean"] > CHANCE_DICE
