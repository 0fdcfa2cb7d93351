"""The model folder is the truth for --val, --c and new folds: its recorded encoder, never the variable's file.

Each test first "trains" fold 0 as nnUNetv2_train leaves it: the trainer's plans written to the model folder
(what ``on_train_start`` does) and a checkpoint of the initialised network.
"""

import json
from pathlib import Path

import pytest
import torch
from batchgenerators.utilities.file_and_folder_operations import join, save_json

from nnunet_medsam_fusion.foundation import build_foundation_encoder, load_foundation_weights, precision
from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY, WEIGHTS_KEY
from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV
from nnunet_medsam_fusion.testing.nnunet_env import load_dataset_json, load_plans
from nnunet_medsam_fusion.testing.tiny_checkpoints import write_tiny_medsam2_checkpoint
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny
from nnunet_medsam_fusion.trainers.foundation_fusion import unwrap

VARIABLE = "nnUNet_MedSAM2_checkpoint"
TRAINER = nnUNetTrainerMedSAM2FusionTiny


def trainer_for(root, fold=0):
    return TRAINER(load_plans(root), "2d", fold, load_dataset_json(root), torch.device("cpu"))


def train_fold_0(root, monkeypatch, checkpoint=None):
    """Fold 0 as a finished training leaves it; returns the model folder's plans.json path."""
    if checkpoint is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, str(checkpoint))
    trainer = trainer_for(root)
    trainer.initialize()
    save_json(trainer.plans_manager.plans, join(trainer.output_folder_base, "plans.json"), sort_keys=False)
    trainer.save_checkpoint(join(trainer.output_folder, "checkpoint_final.pth"))
    return trainer.output_folder_base


@pytest.fixture
def medical_sam2(tmp_path):
    path = tmp_path / "MedSAM2_pretrain.pth"
    write_tiny_medsam2_checkpoint(path, family="medical_sam2", seed=1)
    return path


def test_val_and_continue_use_the_fold_checkpoint_without_a_variable(planned_dataset, results, medical_sam2,
                                                                     monkeypatch):
    folder = train_fold_0(planned_dataset, monkeypatch, medical_sam2)
    monkeypatch.delenv(VARIABLE)
    trainer = trainer_for(planned_dataset)  # as nnUNetv2_train --val / --c builds it
    assert trainer.plans_manager.plans["configurations"]["2d"][FOUNDATION_KEY]["family"] == "medical_sam2"
    trainer.load_checkpoint(join(folder, "fold_0", "checkpoint_final.pth"))
    expected = build_foundation_encoder(unwrap(trainer.network).foundation.spec)
    load_foundation_weights(expected, medical_sam2)
    for key, value in expected.state_dict().items():
        assert torch.equal(unwrap(trainer.network).foundation.state_dict()[key], value)
    assert "come from this fold's checkpoint" in open(trainer.log_file).read()


def test_a_variable_naming_other_weights_is_refused_and_the_plans_stay(planned_dataset, results, medical_sam2,
                                                                       tmp_path, monkeypatch):
    folder = train_fold_0(planned_dataset, monkeypatch, medical_sam2)
    plans_before = open(join(folder, "plans.json")).read()
    bowang = tmp_path / "MedSAM2_latest.pt"  # another family: would switch the network to ImageNet normalisation
    write_tiny_medsam2_checkpoint(bowang, family="bowang_medsam2")
    same_family = tmp_path / "other_medical_sam2.pth"  # same family and size, other weights
    write_tiny_medsam2_checkpoint(same_family, family="medical_sam2", seed=2)
    for other in (bowang, same_family):
        monkeypatch.setenv(VARIABLE, str(other))
        for fold in (0, 1):  # --val / --c of fold 0, and a new fold
            with pytest.raises(ValueError) as error:
                trainer_for(planned_dataset, fold)
            assert str(other) in str(error.value) and str(medical_sam2) in str(error.value)
    assert open(join(folder, "plans.json")).read() == plans_before
    assert not Path(folder, "fold_1").exists()


def test_a_new_fold_starts_from_the_recorded_file(planned_dataset, results, medical_sam2, monkeypatch):
    folder = train_fold_0(planned_dataset, monkeypatch, medical_sam2)
    monkeypatch.delenv(VARIABLE)
    with pytest.raises(ValueError, match=f"Fold 1 .* set {VARIABLE} to that file"):
        trainer_for(planned_dataset, fold=1)
    assert not Path(folder, "fold_1").exists()
    monkeypatch.setenv(VARIABLE, str(medical_sam2))
    trainer = trainer_for(planned_dataset, fold=1)
    recorded = trainer.plans_manager.plans["configurations"]["2d"]
    assert recorded[WEIGHTS_KEY]["file"] == str(medical_sam2)


def test_retraining_a_fold_from_scratch_needs_the_recorded_file(planned_dataset, results, medical_sam2,
                                                                monkeypatch):
    """Without --c, nnUNetv2_train restarts the fold from scratch: the encoder must come from the file again."""
    folder = train_fold_0(planned_dataset, monkeypatch, medical_sam2)
    monkeypatch.delenv(VARIABLE)
    plans_before = open(join(folder, "plans.json")).read()
    trainer = trainer_for(planned_dataset)
    with pytest.raises(ValueError, match=str(medical_sam2)):
        trainer.on_train_start()
    assert open(join(folder, "plans.json")).read() == plans_before


def test_random_weight_folder_refuses_a_pretrained_file(planned_dataset, results, medical_sam2, monkeypatch):
    train_fold_0(planned_dataset, monkeypatch)
    assert "RANDOM, UNTRAINED" in "".join(log.read_text() for log in results.rglob("training_log_*.txt"))
    monkeypatch.setenv(VARIABLE, str(medical_sam2))
    with pytest.raises(ValueError, match="RANDOM encoder weights"):
        trainer_for(planned_dataset)
    monkeypatch.delenv(VARIABLE)
    assert trainer_for(planned_dataset, fold=1).plans_manager.plans["configurations"]["2d"][WEIGHTS_KEY] is None


def test_random_encoders_are_the_same_in_every_fold(planned_dataset, results, monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    first, second = trainer_for(planned_dataset, 0), trainer_for(planned_dataset, 1)
    torch.manual_seed(1)
    first.initialize()
    torch.manual_seed(2)
    second.initialize()
    a, b = unwrap(first.network), unwrap(second.network)
    assert all(torch.equal(a.foundation.state_dict()[k], v) for k, v in b.foundation.state_dict().items())
    assert not torch.equal(a.fusions[0].project.conv.weight, b.fusions[0].project.conv.weight)  # nnU-Net's RNG


@pytest.mark.parametrize("flags, recorded", [((), "fp32"), (("avx512_bf16",), "bf16")])
def test_the_first_fold_records_the_precision_it_resolved(planned_dataset, results, monkeypatch, flags, recorded):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
    monkeypatch.delenv(ENCODER_PRECISION_ENV, raising=False)  # auto
    folder = train_fold_0(planned_dataset, monkeypatch)
    plans = json.loads((Path(folder) / "plans.json").read_text())
    assert plans["configurations"]["2d"][FOUNDATION_KEY]["precision"] == recorded


def test_the_recorded_precision_wins_on_another_machine_and_a_contradicting_setting_is_refused(
        planned_dataset, results, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    monkeypatch.delenv(ENCODER_PRECISION_ENV, raising=False)
    folder = train_fold_0(planned_dataset, monkeypatch)
    plans_file = Path(folder) / "plans.json"
    before = plans_file.read_bytes()
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ())  # a machine without native bf16
    trainer = trainer_for(planned_dataset)  # --val / --c, auto: the recorded bf16, run in float32 here
    assert trainer.plans_manager.plans["configurations"]["2d"][FOUNDATION_KEY]["precision"] == "bf16"
    monkeypatch.setenv(ENCODER_PRECISION_ENV, "fp32")
    with pytest.raises(ValueError, match=f"{ENCODER_PRECISION_ENV}=fp32.*runs in bf16"):
        trainer_for(planned_dataset)
    assert plans_file.read_bytes() == before
