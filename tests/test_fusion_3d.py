"""3D fusion: the frozen 2D encoder's slice features land at their (z, y, x) in the 3D skips, through nnU-Net's
3D sliding window and mirroring, and are reused exactly wherever the encoder would see the same slice again.

As in ``test_alignment.py``, the image encoder inside the real encoder wrapper is a stub whose features are its
input average-pooled by each stride, so every other step (slice choice, preprocessing, crop, FrequencyLoRA,
depth interpolation, resize, fusion, nnU-Net's predictor) is the package's and nnU-Net's own code.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_medsam_fusion.foundation import FoundationSpec
from nnunet_medsam_fusion.fusion.slices import depth_weights, slice_positions
from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY
from nnunet_medsam_fusion.testing.nnunet_env import load_plans
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny, nnUNetTrainerMedSAMFusionTiny

from .test_alignment import WINDOW, PooledInput, blind_unet, fused_feature_maps

FAMILIES = {"medsam": nnUNetTrainerMedSAMFusionTiny, "medical_sam2": nnUNetTrainerMedSAM2FusionTiny}
CPU = torch.device("cpu")


def test_slice_positions_are_bin_centres_and_symmetric():
    assert slice_positions(8, 1) == list(range(8))
    assert slice_positions(9, 3) == [1, 4, 7]
    for depth, step in ((16, 2), (15, 4), (80, 3), (5, 8)):
        positions = slice_positions(depth, step)
        assert len(positions) == -(-depth // step) and positions == sorted(set(positions))
        # mirrored patches encode the same slices (an odd count on an even depth leaves the middle one alone)
        half = len(positions) // 2
        assert positions[:half] == [depth - 1 - p for p in reversed(positions[len(positions) - half:])]


def test_depth_weights_interpolate_linearly_at_true_positions():
    weights = depth_weights([1, 3, 4, 6], 8, 4)  # cell centres 0.5, 2.5, 4.5, 6.5
    expected = torch.tensor([[1, 0, 0, 0], [0.25, 0.75, 0, 0], [0, 0, 0.75, 0.25], [0, 0, 0, 1.0]])
    assert torch.allclose(weights, expected)
    assert torch.equal(depth_weights(list(range(6)), 6, 6), torch.eye(6))
    assert torch.allclose(depth_weights([0, 2, 4], 6, 6).sum(1), torch.ones(6))


def stub_network_3d(root, family: str, input_size: int, patch_size: tuple[int, int, int], slice_step: int):
    """The fused 3D network built from the 3d_fullres plans, with the stub image encoder."""
    plans = load_plans(root)
    plans["configurations"]["3d_fullres"]["patch_size"] = list(patch_size)
    spec = FoundationSpec(family, "tiny", input_size, intensity_window=WINDOW, slice_step=slice_step)
    plans["configurations"]["3d_fullres"][FOUNDATION_KEY] = spec.to_dict()
    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    torch.manual_seed(0)
    network = FAMILIES[family].build_network_architecture(manager, configuration, 1, 2,
                                                          enable_deep_supervision=False)
    foundation = network.foundation
    foundation.image_encoder = PooledInput(foundation.feature_strides, foundation.feature_channels, spec.is_sam2)
    return network.eval(), manager, configuration


def response_centre_3d(feature_map: torch.Tensor, patch_size: tuple[int, int, int]) -> np.ndarray:
    """Centre of the marker's response in a (1, C, d, h, w) map, in patch voxel coordinates (z, y, x)."""
    response = (feature_map[0, 0] - feature_map[0, 0].median()).clamp_min(0).double()
    weight = response.sum()
    centre = []
    for axis, size in enumerate(patch_size):
        others = tuple(a for a in range(3) if a != axis)
        profile = response.sum(others)
        cell = (profile * torch.arange(len(profile))).sum() / weight
        centre.append(float((cell + 0.5) * size / len(profile) - 0.5))
    return np.array(centre)


def marker_volume(patch_size: tuple[int, int, int], corner: tuple[int, int, int], side: int = 4) -> torch.Tensor:
    x = torch.zeros(1, 1, *patch_size)
    x[..., corner[0]:corner[0] + side, corner[1]:corner[1] + side, corner[2]:corner[2] + side] = 3.0
    return x


def shift_slices_by_one(network) -> None:
    """The control: each encoded slice's features handed to the fusion as the next slice's, as an off-by-one
    slice-order bug would."""
    forward = network.foundation.forward

    def shifted(x, levels=None):
        batch = 1
        return [f.view(batch, -1, *f.shape[1:]).roll(1, dims=1).flatten(0, 1) for f in forward(x, levels)]

    network.foundation.forward = shifted


CASES = [(family, 512, patch, step) for family in FAMILIES for patch in ((16, 64, 64), (16, 64, 96))
         for step in (1, 2)] + [("medsam", 256, (16, 64, 96), 2), ("medical_sam2", 256, (16, 64, 64), 3)]


@pytest.mark.parametrize("family, input_size, patch_size, slice_step", CASES)
def test_marker_lands_at_its_voxel_in_every_fused_3d_skip(planned_dataset, family, input_size, patch_size,
                                                          slice_step):
    network, _, _ = stub_network_3d(planned_dataset, family, input_size, patch_size, slice_step)
    corner = (patch_size[0] * 5 // 8 - 2, patch_size[1] * 5 // 8, patch_size[2] // 5)
    centre = np.array(corner) + 1.5
    maps = fused_feature_maps(network, marker_volume(patch_size, corner))
    assert len(maps) == len(network.fusion_stages)
    for feature_map in maps:
        error = np.abs(response_centre_3d(feature_map, patch_size) - centre)
        assert error[1:].max() <= 0.5, (feature_map.shape, error)
        assert error[0] <= 0.5 * slice_step + 0.25, (feature_map.shape, error)


@pytest.mark.parametrize("family", FAMILIES)
def test_features_shifted_by_one_slice_move_the_marker(planned_dataset, family):
    patch_size, step = (16, 64, 64), 1  # input 512: the fused stages keep every slice (depth stride 1)
    network, _, _ = stub_network_3d(planned_dataset, family, 512, patch_size, step)
    corner = (8, 40, 12)
    aligned = [response_centre_3d(m, patch_size) for m in fused_feature_maps(network, marker_volume(patch_size,
                                                                                                     corner))]
    shift_slices_by_one(network)
    shifted = [response_centre_3d(m, patch_size) for m in fused_feature_maps(network, marker_volume(patch_size,
                                                                                                     corner))]
    for a, b in zip(aligned, shifted, strict=True):
        assert abs(a[0] - (corner[0] + 1.5)) <= 0.5 and b[0] - a[0] >= 0.75


def predicted_response_3d(network, manager, configuration, volume: torch.Tensor, mirroring: bool = True):
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=False, device=CPU, verbose=False, allow_tqdm=False)
    labels = {"labels": {"background": 0, "vessel": 1}}
    predictor.manual_initialization(network, manager, configuration, None, labels, "stub", (0, 1, 2))
    with torch.no_grad():
        logits = predictor.predict_sliding_window_return_logits(volume)
    return (logits[1] - logits[0]).abs()  # (Z, Y, X)


@pytest.mark.parametrize("family, slice_step, control", [("medsam", 2, False), ("medsam", 2, True)])
def test_sliding_window_and_mirroring_keep_the_3d_marker_in_place(planned_dataset, family, slice_step, control):
    """nnU-Net's 3D predictor over overlapping tiles and all eight mirrorings: the prediction changes around the
    marker; with the slice order of the features reversed (the control) the change sits elsewhere."""
    patch_size = (16, 64, 64)
    network, manager, configuration = stub_network_3d(planned_dataset, family, 512, patch_size, slice_step)
    blind_unet(network)
    if control:
        forward = network.foundation.forward
        network.foundation.forward = lambda x, levels=None: [f.flip(0) for f in forward(x, levels)]
    shape = (24, 80, 80)  # 2 x 2 x 2 overlapping tiles
    volume = torch.zeros(1, *shape)
    corner = (1, 60, 20)  # far from the tile's depth centre, so that reversing the slices moves it far
    volume[0, corner[0]:corner[0] + 4, corner[1]:corner[1] + 4, corner[2]:corner[2] + 4] = 3.0
    response = predicted_response_3d(network, manager, configuration, volume)
    peak = np.array(np.unravel_index(int(response.argmax()), response.shape))
    error = np.abs(peak - (np.array(corner) + 1.5)).max()
    if control:
        assert error > 6, error
    else:
        assert error <= 3, error


def tiny_3d_network(root, slice_step: int = 1):
    plans = load_plans(root)
    spec = FoundationSpec("medsam", "tiny", 64, intensity_window=WINDOW, slice_step=slice_step)
    plans["configurations"]["3d_fullres"][FOUNDATION_KEY] = spec.to_dict()
    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    torch.manual_seed(0)
    network = nnUNetTrainerMedSAMFusionTiny.build_network_architecture(manager, configuration, 1, 2, False)
    return network.eval(), manager, configuration


def test_reuse_across_z_overlap_mirrors_and_folds_is_exact(planned_dataset):
    """Two folds with the same frozen encoder, tiles overlapping by half along z, all eight mirrorings: the logits
    equal those computed without reuse, and the encoder computes each distinct slice image once."""
    network, manager, configuration = tiny_3d_network(planned_dataset)
    assert list(configuration.patch_size) == [16, 64, 64]
    folds = []
    for fold in range(2):
        state = {k: v.clone() for k, v in network.state_dict().items()}
        generator = torch.Generator().manual_seed(fold)
        for key, value in state.items():
            if value.is_floating_point() and not key.startswith("foundation."):
                state[key] = value + 0.05 * torch.randn(value.shape, generator=generator)
        folds.append(state)
    volume = torch.randn(1, 24, 64, 64)  # two z-tiles (0 and 8), one in-plane tile

    def predict(net):
        predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=True, perform_everything_on_device=False,
                                    device=CPU, verbose=False, allow_tqdm=False)
        predictor.manual_initialization(net, manager, configuration, folds, {"labels": {"background": 0,
                                                                                        "vessel": 1}},
                                        "nnUNetTrainerMedSAMFusionTiny", (0, 1, 2))
        calls: list[int] = []
        hook = net.foundation.image_encoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
        try:
            return predictor.predict_logits_from_preprocessed_data(volume), sum(calls)
        finally:
            hook.remove()

    reference_network = copy.deepcopy(network)
    reference_network.foundation.feature_cache.budget_bytes = 0
    reused, reused_calls = predict(network)
    reference, reference_calls = predict(reference_network)
    assert torch.equal(reused, reference)
    assert reference_calls == 2 * 2 * 8 * 16  # folds x z-tiles x mirrorings x slices per tile
    assert reused_calls == 24 * 4  # each of the 24 slices once per in-plane mirroring (z-flips reverse the order)
