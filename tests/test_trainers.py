"""Trainers built by hand as nnUNetv2_train builds them: loss wiring, fusion set-up and early, clear errors."""

import copy
import hashlib

import numpy as np
import pytest
import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_medsam_fusion.foundation import (
    CheckpointError,
    FoundationEncoder,
    build_foundation_encoder,
    load_foundation_weights,
)
from nnunet_medsam_fusion.losses import DiceFocalLoss
from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY, WEIGHTS_KEY
from nnunet_medsam_fusion.testing.nnunet_env import load_dataset_json, load_plans, make_trainer, training_batch
from nnunet_medsam_fusion.testing.tiny_checkpoints import (
    write_tiny_medsam2_checkpoint,
    write_tiny_medsam_checkpoint,
)
from nnunet_medsam_fusion.trainers import (
    nnUNetTrainerFocalDice,
    nnUNetTrainerMedSAM2Fusion,
    nnUNetTrainerMedSAM2Fusion_noFocal,
    nnUNetTrainerMedSAM2FusionTiny,
    nnUNetTrainerMedSAMFusion,
    nnUNetTrainerMedSAMFusionTiny,
)
from nnunet_medsam_fusion.trainers.foundation_fusion import unwrap


def test_focal_dice_keeps_nnunet_dice_and_deep_supervision_weights(planned_dataset, results):
    focal = make_trainer(nnUNetTrainerFocalDice, planned_dataset)
    default = make_trainer(nnUNetTrainer, planned_dataset)
    loss, reference = focal._build_loss(), default._build_loss()
    assert isinstance(loss, DeepSupervisionWrapper) and isinstance(loss.loss, DiceFocalLoss)
    assert isinstance(loss.loss.dc, MemoryEfficientSoftDiceLoss) and not loss.loss.dc.do_bg
    assert loss.loss.focal.gamma == 2.0
    np.testing.assert_allclose(loss.weight_factors, reference.weight_factors)
    assert isinstance(reference.loss, DC_and_CE_loss)


@pytest.mark.parametrize("name,schedule", [
    ("nnUNetTrainerFocalDice_5epochs", (5, 250, 50)),
    ("nnUNetTrainerFocalDice_demo", (6, 12, 3)),
    ("nnUNetTrainerMedSAMFusionTiny_demo", (6, 12, 3)),
])
def test_schedule_variants_train_their_schedule_with_their_base_trainer(planned_dataset, results, name, schedule):
    import nnunet_medsam_fusion.trainers as trainers

    trainer = make_trainer(getattr(trainers, name), planned_dataset)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == schedule
    assert trainer.save_every == 1  # a checkpoint_latest.pth after every epoch of these short schedules
    assert type(trainer).__mro__[1].__name__ == name.rsplit("_", 1)[0]
    assert set(trainer.my_init_kwargs) == {"plans", "configuration", "fold", "dataset_json", "device"}


def test_no_focal_ablation_uses_nnunet_dice_ce(planned_dataset, results, monkeypatch):
    monkeypatch.setattr(nnUNetTrainerMedSAM2Fusion_noFocal, "requires_checkpoint", False)
    monkeypatch.setattr(nnUNetTrainerMedSAM2Fusion_noFocal, "foundation_spec",
                        classmethod(lambda cls, checkpoint: nnUNetTrainerMedSAM2FusionTiny.foundation_spec(None)))
    monkeypatch.setattr(nnUNetTrainerMedSAM2Fusion_noFocal, "sizes", ("tiny",))
    trainer = make_trainer(nnUNetTrainerMedSAM2Fusion_noFocal, planned_dataset)
    assert isinstance(trainer._build_loss().loss, DC_and_CE_loss)


def test_fusion_trainer_loads_the_checkpoint_and_keeps_it_frozen(planned_dataset, results, tmp_path,
                                                                  monkeypatch):
    spec = write_tiny_medsam2_checkpoint(tmp_path / "MedSAM2_latest.pt", family="bowang_medsam2")
    monkeypatch.setenv("nnUNet_MedSAM2_checkpoint", str(tmp_path / "MedSAM2_latest.pt"))
    trainer = make_trainer(nnUNetTrainerMedSAM2FusionTiny, planned_dataset)
    recorded = trainer.plans_manager.plans["configurations"]["2d"]
    assert {key: recorded[FOUNDATION_KEY][key] for key in ("family", "size", "input_size")} == \
        {"family": spec.family, "size": spec.size, "input_size": spec.input_size}
    assert recorded[FOUNDATION_KEY]["precision"] in ("fp32", "bf16")
    assert len(recorded[FOUNDATION_KEY]["intensity_window"]) == 2
    assert recorded[WEIGHTS_KEY]["sha256"] == hashlib.sha256((tmp_path / "MedSAM2_latest.pt").read_bytes()).hexdigest()
    trainer.initialize()
    network = unwrap(trainer.network)
    expected = build_foundation_encoder(network.foundation.spec)
    load_foundation_weights(expected, tmp_path / "MedSAM2_latest.pt")
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(network.foundation.state_dict()[key], value)
    # nnU-Net's own SGD: the frozen encoder gets no gradient, so a step leaves it bit-identical
    before = {key: value.clone() for key, value in network.foundation.state_dict().items()}
    trainer.train_step(training_batch(trainer))
    assert all(torch.equal(before[key], value) for key, value in network.foundation.state_dict().items())
    assert all(p.grad is None for p in network.foundation.parameters())
    # the trainer holds one encoder: the network's
    encoders = [value for value in vars(trainer).values() if isinstance(value, FoundationEncoder)]
    assert encoders == []
    log = open(trainer.log_file).read()
    assert "loaded from" in log and "frozen" in log


@pytest.mark.parametrize("trainer,write,message", [
    (nnUNetTrainerMedSAM2Fusion, write_tiny_medsam2_checkpoint,
     r"tiny\); supported MedSAM2 trunks are hiera_t \(embed_dim 96, 12 blocks\), "
     r"hiera_s \(embed_dim 96, 16 blocks\)\.$"),
    (nnUNetTrainerMedSAMFusion, write_tiny_medsam_checkpoint, r"does not fit the medsam encoder of size 'vit_b'"),
])
def test_full_size_trainers_refuse_tiny_checkpoints(planned_dataset, results, tmp_path, monkeypatch, trainer,
                                                    write, message):
    """The paper's rows run the published encoder sizes only; tiny encoders belong to the Tiny trainers."""
    write(tmp_path / "tiny.pt")
    monkeypatch.setenv(trainer.checkpoint_env, str(tmp_path / "tiny.pt"))
    with pytest.raises(CheckpointError, match=message):
        make_trainer(trainer, planned_dataset)
    assert not results.exists()


def test_tiny_trainer_without_checkpoint_says_its_features_are_untrained(planned_dataset, results):
    trainer = make_trainer(nnUNetTrainerMedSAMFusionTiny, planned_dataset)
    trainer.initialize()
    assert "RANDOM, UNTRAINED" in open(trainer.log_file).read()


def test_missing_checkpoint_variable_fails_before_any_output(planned_dataset, results):
    with pytest.raises(ValueError, match="nnUNet_MedSAM_checkpoint"):
        make_trainer(nnUNetTrainerMedSAMFusion, planned_dataset)
    assert not results.exists()


def test_wrong_family_checkpoint_fails_before_any_output(planned_dataset, results, tmp_path, monkeypatch):
    write_tiny_medsam2_checkpoint(tmp_path / "sam2.pt")
    monkeypatch.setenv("nnUNet_MedSAM_checkpoint", str(tmp_path / "sam2.pt"))
    with pytest.raises(CheckpointError, match="nnUNet_MedSAM2_checkpoint"):
        make_trainer(nnUNetTrainerMedSAMFusion, planned_dataset)
    write_tiny_medsam_checkpoint(tmp_path / "medsam.pth")
    monkeypatch.setenv("nnUNet_MedSAM2_checkpoint", str(tmp_path / "medsam.pth"))
    with pytest.raises(CheckpointError, match="nnUNet_MedSAM_checkpoint"):
        make_trainer(nnUNetTrainerMedSAM2Fusion, planned_dataset)
    assert not results.exists()


def test_size_mismatch_names_the_problem(planned_dataset, results, tmp_path, monkeypatch):
    write_tiny_medsam_checkpoint(tmp_path / "medsam_vit_b.pth")  # tiny ViT where ViT-B is expected
    monkeypatch.setenv("nnUNet_MedSAM_checkpoint", str(tmp_path / "medsam_vit_b.pth"))
    with pytest.raises(CheckpointError, match="shape"):
        make_trainer(nnUNetTrainerMedSAMFusion, planned_dataset)
    assert not results.exists()


@pytest.mark.parametrize("trainer", [nnUNetTrainerMedSAMFusionTiny, nnUNetTrainerMedSAM2FusionTiny])
def test_3d_configuration_trains_the_3d_fused_network(planned_dataset, results, trainer):
    fused = make_trainer(trainer, planned_dataset, "3d_fullres")
    recorded = fused.plans_manager.plans["configurations"]["3d_fullres"][FOUNDATION_KEY]
    assert (recorded["depth_image"], recorded["cells_per_image"]) == (trainer.volume_depth_image,
                                                                      trainer.volume_cells_per_image)
    assert recorded["input_size"] == min(trainer.foundation_spec(None).input_size, trainer.volume_input_size)
    fused.initialize()
    network = unwrap(fused.network)
    assert network.encoder.conv_op is torch.nn.Conv3d
    assert network.foundation.spec.depth_image == trainer.volume_depth_image
    assert all(fusion.gate.dims == 3 for fusion in network.fusions)
    losses = [fused.train_step(training_batch(fused, seed=0, batch_size=2))["loss"] for _ in range(3)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.parametrize("configuration", ["3d_lowres", "3d_cascade_fullres"])
def test_cascade_configurations_train_the_3d_fused_network(planned_dataset, results, configuration):
    """nnU-Net's cascade: 3d_cascade_fullres inherits everything from 3d_fullres and its input adds the one-hot
    low-resolution segmentation after the image (channel 0, the one the foundation encoder sees)."""
    plans = load_plans(planned_dataset)
    full = plans["configurations"]["3d_fullres"]  # the set is too small for a lower resolution: the same data
    plans["configurations"]["3d_lowres"] = dict(copy.deepcopy(full), next_stage="3d_cascade_fullres")
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    fused = nnUNetTrainerMedSAMFusionTiny(plans, configuration, 0, load_dataset_json(planned_dataset),
                                          torch.device("cpu"))
    fused.initialize()
    cascaded = configuration == "3d_cascade_fullres"
    assert fused.is_cascaded == cascaded and fused.num_input_channels == 1 + cascaded
    batch = training_batch(fused, seed=0, batch_size=2)
    if cascaded:  # as nnU-Net's loader gives it: the previous stage's foreground one-hot after the image
        batch["data"] = torch.cat([batch["data"], (batch["target"][0] > 0).float()], dim=1)
    assert np.isfinite(fused.train_step(batch)["loss"])


@pytest.mark.parametrize("name", ["nnUNetTrainerMedSAMFusionTiny_NoMirroring",
                                  "nnUNetTrainerMedSAM2FusionTiny_SkelRecall_NoMirroring_demo"])
def test_no_mirroring_variants_mirror_neither_in_training_nor_in_prediction(planned_dataset, results, name):
    import nnunet_medsam_fusion.trainers as trainers

    trainer = make_trainer(getattr(trainers, name), planned_dataset)
    *_, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert mirror_axes is None and trainer.inference_allowed_mirroring_axes is None  # the checkpoint carries it
    plain = make_trainer(nnUNetTrainerMedSAMFusionTiny, planned_dataset)
    assert plain.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[-1] == (0, 1)


def test_prediction_needs_the_recorded_spec(planned_dataset, results):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(load_plans(planned_dataset))
    with pytest.raises(ValueError, match="plans.json"):
        nnUNetTrainerMedSAMFusionTiny.build_network_architecture(manager, manager.get_configuration("2d"), 1, 2)
