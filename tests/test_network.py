"""The fused network keeps nnU-Net's contract for the planner's 2d plans (plain and residual encoders)."""

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_medsam_fusion.foundation import FoundationSpec
from nnunet_medsam_fusion.fusion.network import FoundationFusionUNet, nearest_stage, skip_sizes
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny, nnUNetTrainerMedSAMFusionTiny
from nnunet_medsam_fusion.trainers.foundation_fusion import PLANS_KEY

from .conftest import load_plans

TINY = {
    nnUNetTrainerMedSAMFusionTiny: FoundationSpec("medsam", "tiny", 64),
    nnUNetTrainerMedSAM2FusionTiny: FoundationSpec("medical_sam2", "tiny", 64),
}
CASES = [(trainer, plans) for trainer in TINY for plans in ("nnUNetPlans", "nnUNetResEncUNetMPlans")]


def build(root, trainer, plans_name, deep_supervision=True):
    plans = load_plans(root, plans_name)
    plans["configurations"]["2d"][PLANS_KEY] = TINY[trainer].to_dict()
    manager = PlansManager(plans)
    configuration = manager.get_configuration("2d")
    torch.manual_seed(0)
    fused = trainer.build_network_architecture(manager, configuration, 1, 2, deep_supervision)
    torch.manual_seed(0)
    baseline = nnUNetTrainer.build_network_architecture(manager, configuration, 1, 2, deep_supervision)
    return fused, baseline, configuration


def test_nearest_stage_picks_the_stage_nearest_in_size():
    sizes = [(512, 512), (256, 256), (128, 128), (64, 64), (32, 32), (16, 16), (8, 8)]
    assert nearest_stage(sizes, 1024 / 16) == 3  # MedSAM ViT-B map, 64x64
    assert [nearest_stage(sizes, 1024 / s) for s in (8, 16)] == [2, 3]  # MedSAM2's 128x128 and 64x64
    assert nearest_stage([(8, 8), (4, 4)], 1000) == 0


@pytest.mark.parametrize("trainer,plans_name", CASES)
def test_deep_supervision_outputs_match_nnunet(planned_dataset, trainer, plans_name):
    fused, baseline, configuration = build(planned_dataset, trainer, plans_name)
    x = torch.randn(2, 1, *configuration.patch_size)
    fused_out, base_out = fused(x), baseline(x)
    assert isinstance(fused_out, list | tuple)
    assert [o.shape for o in fused_out] == [o.shape for o in base_out]
    assert fused_out[0].shape == (2, 2, *configuration.patch_size)
    fused.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
    assert fused(x).shape == (2, 2, *configuration.patch_size)


@pytest.mark.parametrize("trainer,plans_name", CASES)
def test_unet_weights_keep_nnunet_names(planned_dataset, trainer, plans_name):
    fused, baseline, _ = build(planned_dataset, trainer, plans_name)
    fused_keys = {k for k in fused.state_dict() if k.startswith(("encoder.", "decoder."))}
    assert fused_keys == set(baseline.state_dict())
    assert all(k.startswith(("encoder.", "decoder.", "foundation.", "fusions.")) for k in fused.state_dict())


@pytest.mark.parametrize("trainer", TINY)
def test_every_trainable_parameter_gets_a_gradient_and_frozen_ones_none(planned_dataset, trainer):
    """What DDP needs: no unused trainable parameter in a training step (find_unused_parameters=False)."""
    fused, _, configuration = build(planned_dataset, trainer, "nnUNetPlans")
    for parameter in fused.fusions.parameters():  # leave the zero inits (LoRA up, gate outputs) behind
        if not parameter.any():
            torch.nn.init.normal_(parameter, std=0.01)
    fused.train()
    assert not fused.foundation.training and not any(m.training for m in fused.foundation.modules())
    outputs = fused(torch.randn(2, 1, *configuration.patch_size))
    sum(o.float().mean() for o in outputs).backward()
    for name, parameter in fused.named_parameters():
        if name.startswith("foundation."):
            assert not parameter.requires_grad and parameter.grad is None, name
        else:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("trainer", TINY)
def test_fusion_changes_the_skips_it_targets(planned_dataset, trainer):
    fused, _, configuration = build(planned_dataset, trainer, "nnUNetPlans")
    sizes = skip_sizes(fused.encoder, configuration.patch_size)
    spec = fused.foundation.spec
    for level, stage in zip(fused.feature_levels, fused.fusion_stages, strict=True):
        assert stage == nearest_stage(sizes, spec.input_size / fused.foundation.feature_strides[level])
    x = torch.randn(1, 1, *configuration.patch_size)
    skips = fused.encoder(x)
    features = fused.foundation(x)
    fused_skip = fused.fusions[0](skips[fused.fusion_stages[0]], features[fused.feature_levels[0]])
    assert fused_skip.shape == skips[fused.fusion_stages[0]].shape
    assert not torch.allclose(fused_skip, skips[fused.fusion_stages[0]])


def test_conv_feature_map_size_adds_the_fusions(planned_dataset):
    fused, baseline, configuration = build(planned_dataset, nnUNetTrainerMedSAM2FusionTiny, "nnUNetPlans")
    extra = fused.compute_conv_feature_map_size(configuration.patch_size) - \
        baseline.compute_conv_feature_map_size(configuration.patch_size)
    sizes = skip_sizes(fused.encoder, configuration.patch_size)
    expected = sum(2 * fused.encoder.output_channels[s] * sizes[s][0] * sizes[s][1] for s in fused.fusion_stages)
    assert extra == expected


def test_refuses_3d_patches_and_unknown_levels(planned_dataset):
    fused, baseline, _ = build(planned_dataset, nnUNetTrainerMedSAMFusionTiny, "nnUNetPlans")
    with pytest.raises(ValueError, match="2d"):
        FoundationFusionUNet(baseline, fused.foundation, (32, 32, 32), (0,))
    with pytest.raises(ValueError, match="levels"):
        FoundationFusionUNet(baseline, fused.foundation, (64, 64), (3,))
