"""The fused network keeps nnU-Net's contract for the planner's 2d plans (plain and residual encoders)."""

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunet_medsam_fusion.foundation import FoundationSpec, build_foundation_encoder
from nnunet_medsam_fusion.fusion.network import FoundationFusionUNet, nearest_stage, skip_sizes
from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY
from nnunet_medsam_fusion.testing.nnunet_env import load_plans
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny, nnUNetTrainerMedSAMFusionTiny

WINDOW = (-2.0, 4.0)
TINY = {
    nnUNetTrainerMedSAMFusionTiny: FoundationSpec("medsam", "tiny", 64, intensity_window=WINDOW),
    nnUNetTrainerMedSAM2FusionTiny: FoundationSpec("medical_sam2", "tiny", 64, intensity_window=WINDOW),
}
CASES = [(trainer, plans) for trainer in TINY for plans in ("nnUNetPlans", "nnUNetResEncUNetMPlans")]


def build(root, trainer, plans_name, deep_supervision=True):
    plans = load_plans(root, plans_name)
    plans["configurations"]["2d"][FOUNDATION_KEY] = TINY[trainer].to_dict()
    manager = PlansManager(plans)
    configuration = manager.get_configuration("2d")
    torch.manual_seed(0)
    fused = trainer.build_network_architecture(manager, configuration, 1, 2, deep_supervision)
    torch.manual_seed(0)
    baseline = nnUNetTrainer.build_network_architecture(manager, configuration, 1, 2, deep_supervision)
    return fused, baseline, configuration


def test_nearest_stage_picks_the_stage_nearest_in_size():
    sizes = [(512, 512), (256, 256), (128, 128), (64, 64), (32, 32), (16, 16), (8, 8)]
    assert nearest_stage(sizes, (64, 64)) == 3  # MedSAM ViT-B map, 64x64
    assert [nearest_stage(sizes, (g, g)) for g in (128, 64)] == [2, 3]  # MedSAM2's 128x128 and 64x64
    assert nearest_stage([(8, 8), (4, 4)], (1000, 1000)) == 0
    assert nearest_stage([(64, 64), (64, 16)], (64, 32)) == 0  # a tie goes to the higher resolution


def unet_for(patch_size: tuple[int, int], strides: list[tuple[int, int]]) -> PlainConvUNet:
    """nnU-Net's 2D PlainConvUNet for a patch and its per-stage strides, as the planner would write them."""
    n = len(strides)
    return PlainConvUNet(1, n, [min(16 * 2**i, 64) for i in range(n)], nn.Conv2d, 3, strides, [1] * n, 2, [1] * (n - 1),
                         conv_bias=True, norm_op=nn.InstanceNorm2d, nonlin=nn.LeakyReLU)


# (patch, nnU-Net strides): non-square, and anisotropic where the short side stops being downsampled
PATCHES = {
    "512x256": ((512, 256), [(1, 1)] + [(2, 2)] * 6),
    "256x512": ((256, 512), [(1, 1)] + [(2, 2)] * 6),
    "512x128": ((512, 128), [(1, 1), (2, 2), (2, 2), (2, 2), (2, 2), (2, 1), (2, 1)]),
    "448x320": ((448, 320), [(1, 1)] + [(2, 2)] * 5),
}


@pytest.mark.parametrize("family", ["medsam", "medical_sam2"])
@pytest.mark.parametrize("input_size", [512, 1024])
@pytest.mark.parametrize("patch", PATCHES)
def test_each_level_goes_to_the_stage_of_its_feature_grid(family, input_size, patch):
    """The stage is chosen by the grid the cropped features have, axis by axis: for every patch here some stage
    has exactly that grid, and it is the one chosen (the longest side alone chose stage 2 for 512 x 256 at 1024)."""
    patch_size, strides = PATCHES[patch]
    foundation = build_foundation_encoder(FoundationSpec(family, "tiny", input_size, intensity_window=WINDOW))
    levels = (0,) if family == "medsam" else (1, 2)
    fused = FoundationFusionUNet(unet=unet_for(patch_size, strides), foundation=foundation, patch_size=patch_size,
                                 feature_levels=levels)
    sizes = skip_sizes(fused.encoder, patch_size)
    grids = foundation.feature_grids(*patch_size)
    for level, stage in zip(levels, fused.fusion_stages, strict=True):
        if grids[level] in sizes:
            assert sizes[stage] == grids[level], (level, sizes, grids)
        assert stage == nearest_stage(sizes, grids[level])
    with torch.no_grad():
        features = foundation(torch.randn(1, 1, *patch_size), levels)
    assert [tuple(f.shape[-2:]) for f in features] == [grids[level] for level in levels]
    if patch == "512x256" and input_size == 1024 and family == "medsam":
        assert fused.fusion_stages == (3,)


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
def test_fusion_changes_only_its_skips_and_the_features_reach_the_output(planned_dataset, trainer):
    """The skips handed to nnU-Net's decoder: the fused stages change, every other skip is the encoder's own; and
    a change of the foundation features alone moves the logits."""
    fused, _, configuration = build(planned_dataset, trainer, "nnUNetPlans", deep_supervision=False)
    fused.eval()
    sizes = skip_sizes(fused.encoder, configuration.patch_size)
    grids = fused.foundation.feature_grids(*configuration.patch_size)
    for level, stage in zip(fused.feature_levels, fused.fusion_stages, strict=True):
        assert stage == nearest_stage(sizes, grids[level])
    x = torch.randn(1, 1, *configuration.patch_size)
    decoded: list[list[torch.Tensor]] = []
    hook = fused.decoder.register_forward_pre_hook(lambda module, args: decoded.append(list(args[0])))
    with torch.no_grad():
        own = fused.encoder(x)
        logits = fused(x)
        features = fused.foundation.forward
        generator = torch.Generator().manual_seed(0)  # not a constant: instance norm would remove a constant shift
        fused.foundation.forward = lambda batch, levels=None: [f + 0.5 * torch.randn(f.shape, generator=generator)
                                                               for f in features(batch, levels)]
        moved = fused(x)
    hook.remove()
    for stage, (skip, given) in enumerate(zip(own, decoded[0], strict=True)):
        if stage in fused.fusion_stages:
            assert given.shape == skip.shape and not torch.allclose(given, skip), stage
        else:
            assert torch.equal(given, skip), f"stage {stage} is not fused but its skip changed"
    assert (moved - logits).abs().max() > 1e-4


def test_the_network_holds_nothing_but_its_layers(planned_dataset):
    fused, _, _ = build(planned_dataset, nnUNetTrainerMedSAMFusionTiny, "nnUNetPlans")
    own = set(vars(fused)) - set(vars(nn.Module()))
    assert own == {"feature_levels", "fusion_stages"}, own
    assert not fused._forward_hooks and not fused._load_state_dict_post_hooks and not fused._state_dict_hooks


def test_refuses_other_patch_dimensions_unknown_levels_and_positional_arguments(planned_dataset):
    fused, baseline, _ = build(planned_dataset, nnUNetTrainerMedSAMFusionTiny, "nnUNetPlans")
    with pytest.raises(ValueError, match="2D or 3D patch"):
        FoundationFusionUNet(unet=baseline, foundation=fused.foundation, patch_size=(32,), feature_levels=(0,))
    with pytest.raises(ValueError, match="levels"):
        FoundationFusionUNet(unet=baseline, foundation=fused.foundation, patch_size=(64, 64), feature_levels=(3,))
    with pytest.raises(TypeError):
        FoundationFusionUNet(baseline, fused.foundation, (64, 64), (0,))  # keyword-only, as the builders upstream
