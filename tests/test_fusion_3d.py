"""3D fusion: the frozen 2D encoder sees one image per depth cell of the finest fused stage, each image's features
land at their (z, y, x) in the 3D skips through nnU-Net's 3D sliding window and mirroring, every computed image
reaches the output, and features are reused exactly wherever the encoder would see the same image again.

As in ``test_alignment.py``, the image encoder inside the real encoder wrapper is a stub whose features are its
input average-pooled by each stride, so every other step (slabs, preprocessing, crop, FrequencyLoRA, depth cells,
resize, fusion, nnU-Net's predictor) is the package's and nnU-Net's own code.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_medsam_fusion.foundation import FoundationSpec
from nnunet_medsam_fusion.fusion.depth_cells import depth_plan, slab_edges
from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY
from nnunet_medsam_fusion.testing.nnunet_env import load_plans
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny, nnUNetTrainerMedSAMFusionTiny

from .test_alignment import WINDOW, PooledInput, blind_unet, fused_feature_maps

FAMILIES = {"medsam": nnUNetTrainerMedSAMFusionTiny, "medical_sam2": nnUNetTrainerMedSAM2FusionTiny}
CPU = torch.device("cpu")


def test_slabs_are_equal_and_mirror_symmetric():
    assert slab_edges(56, 7) == [0, 8, 16, 24, 32, 40, 48, 56]
    assert slab_edges(16, 3) == [0, 5, 11, 16]
    for depth, slabs in ((16, 16), (15, 4), (80, 3), (5, 1), (24, 6)):
        edges = slab_edges(depth, slabs)
        assert edges[0] == 0 and edges[-1] == depth and len(edges) == slabs + 1
        sizes = np.diff(edges)
        assert sizes.max() - sizes.min() <= 1 + (depth % 2) * (slabs % 2 == 0)
        if not (depth % 2 and slabs % 2 == 0):  # an even count on an odd depth leaves the middle edge alone
            assert edges == [depth - e for e in reversed(edges)]


@pytest.mark.parametrize("representation", ["mip", "mean", "centre", "slices3"])
def test_depth_plan_images_and_weights_follow_their_formulas(representation):
    """CAS2023's 3d_fullres plan: depth 56 fused into stages of depth 14 and 7 (MedSAM2's two levels)."""
    plan = depth_plan(56, [14, 7], representation, 1)
    assert plan.slabs == tuple((4 * i, 4 * i + 4) for i in range(14))
    x = torch.randn(2, 3, 56, 5, 6)
    images = plan.images(x).view(2, -1, 5, 6)
    assert images.shape[1] == plan.images_per_patch == {"slices3": 42}.get(representation, 14)
    slab = x[:, 0, 8:12]  # the third slab
    expected = {"mip": slab.amax(1), "mean": slab.mean(1), "centre": slab[:, 2]}.get(representation)
    if expected is not None:
        assert torch.allclose(images[:, 2], expected, atol=1e-6)
    else:
        assert plan.slices[2] == (8, 10, 11)  # slab positions 8.17, 9.5, 10.83; halves towards the patch centre
        assert torch.equal(images[:, 6:9], x[:, 0, [8, 10, 11]])
    fine, coarse = plan.weights
    per_slab = 3 if representation == "slices3" else 1
    assert torch.allclose(fine, torch.kron(torch.eye(14), torch.full((1, per_slab), 1 / per_slab)))
    assert torch.allclose(coarse, torch.kron(torch.eye(7), torch.full((1, 2 * per_slab), 1 / (2 * per_slab))))
    assert (fine.sum(0) > 0).all(), "every image the encoder computes is used by a cell"


@pytest.mark.parametrize("depth, cells", [(16, 8), (56, 7), (56, 14)])
def test_depth_plan_is_the_same_for_a_patch_mirrored_along_depth(depth, cells):
    """Bit for bit (the feature cache reuses mirrored images only then), except the documented case: centre or an
    odd slicesK on a middle slab of even length (an odd count of slabs on an even depth: CAS2023's ViT-B plan)."""
    x = torch.randn(2, 1, depth, 8, 8)
    for representation in ("mip", "mean", "centre", "slices2", "slices3"):
        plan = depth_plan(depth, [cells], representation, 1)
        images = plan.images(x).view(2, len(plan.slabs), -1, 8, 8) if representation != "slices3" else None
        mirrored = plan.images(x.flip(2))
        if representation in ("mip", "mean", "slices2"):
            assert torch.equal(mirrored, plan.images(x).view(2, -1, 8, 8).flip(1).reshape(-1, 1, 8, 8))
        elif representation == "centre":
            same = (mirrored.view(2, -1, 8, 8) == images[:, :, 0].flip(1)).all(dim=(0, 2, 3))
            middle = len(plan.slabs) // 2
            tie = len(plan.slabs) % 2 == 1 and (plan.slabs[middle][1] - plan.slabs[middle][0]) % 2 == 0
            assert same.tolist() == [not (tie and slab == middle) for slab in range(len(plan.slabs))]
    grouped = depth_plan(16, [8], "mip", 2)  # two cells per image: 4 slabs of 4 slices, each cell half of one
    assert grouped.slabs == ((0, 4), (4, 8), (8, 12), (12, 16))
    assert torch.equal(grouped.weights[0], torch.kron(torch.eye(4), torch.ones(2, 1)))


def stub_network_3d(root, family: str, input_size: int, patch_size: tuple[int, int, int],
                    depth_image: str = "mip", cells_per_image: int = 1):
    """The fused 3D network built from the 3d_fullres plans, with the stub image encoder."""
    plans = load_plans(root)
    plans["configurations"]["3d_fullres"]["patch_size"] = list(patch_size)
    spec = FoundationSpec(family, "tiny", input_size, intensity_window=WINDOW, depth_image=depth_image,
                          cells_per_image=cells_per_image)
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


CASES = [(family, 512, patch, image) for family in FAMILIES for patch in ((16, 64, 64), (16, 64, 96))
         for image in ("mip", "centre")] + [("medsam", 256, (16, 64, 96), "mean"),
                                            ("medical_sam2", 256, (16, 64, 64), "slices2")]


def slab_thickness(network, patch_size) -> int:
    return max(b - a for a, b in network.depth_plan(patch_size).slabs)


@pytest.mark.parametrize("family, input_size, patch_size, depth_image", CASES)
def test_marker_lands_at_its_voxel_in_every_fused_3d_skip(planned_dataset, family, input_size, patch_size,
                                                          depth_image):
    """A 4-voxel marker slab-aligned along depth: its response sits at its voxel in every fused skip, along depth
    too (a shift of half a cell of the finest fused stage would fail)."""
    network, _, _ = stub_network_3d(planned_dataset, family, input_size, patch_size, depth_image)
    corner = (patch_size[0] // 2, patch_size[1] * 5 // 8, patch_size[2] // 5)
    centre = np.array(corner) + 1.5
    maps = fused_feature_maps(network, marker_volume(patch_size, corner))
    assert len(maps) == len(network.fusion_stages)
    for feature_map in maps:
        error = np.abs(response_centre_3d(feature_map, patch_size) - centre)
        assert error[1:].max() <= 0.5, (feature_map.shape, error)
        assert error[0] <= 0.25 * slab_thickness(network, patch_size), (feature_map.shape, error)


@pytest.mark.parametrize("family", FAMILIES)
def test_features_shifted_by_one_image_move_the_marker(planned_dataset, family):
    patch_size = (16, 64, 64)  # input 512: the finest fused stage keeps every slice (depth stride 1)
    network, _, _ = stub_network_3d(planned_dataset, family, 512, patch_size)
    assert slab_thickness(network, patch_size) == 1
    corner = (8, 40, 12)
    aligned = [response_centre_3d(m, patch_size) for m in fused_feature_maps(network, marker_volume(patch_size,
                                                                                                     corner))]
    shift_slices_by_one(network)
    shifted = [response_centre_3d(m, patch_size) for m in fused_feature_maps(network, marker_volume(patch_size,
                                                                                                     corner))]
    for a, b in zip(aligned, shifted, strict=True):
        assert abs(a[0] - (corner[0] + 1.5)) <= 0.5 and b[0] - a[0] >= 0.75


@pytest.mark.parametrize("depth_image, covers", [("mip", True), ("mean", True), ("centre", False)])
def test_a_thin_vessel_in_any_slice_of_a_cell_reaches_that_cell(planned_dataset, depth_image, covers):
    """Depth coverage: a one-slice bright line in each slice of a slab in turn changes the fused features of the
    cells of that slab (mip, mean), while a centre slice sees only its own slice (the representation's claim)."""
    patch_size = (16, 64, 64)
    network, _, _ = stub_network_3d(planned_dataset, "medsam", 256, patch_size, depth_image)
    plan = network.depth_plan(patch_size)
    (start, stop), centre_slice = plan.slabs[1], plan.slices[1]
    assert stop - start >= 2, "the test needs slabs of several slices"
    background = fused_feature_maps(network, torch.zeros(1, 1, *patch_size))[0]
    cells = background.shape[2]
    for z in range(start, stop):
        vessel = torch.zeros(1, 1, *patch_size)
        vessel[0, 0, z, 30:34, 8:56] = 3.0  # a thin bright vessel along x in slice z
        changed = (fused_feature_maps(network, vessel)[0] - background).abs().amax(dim=(0, 1, 3, 4))
        cell = z * cells // patch_size[0]
        reached = bool(changed[cell] > 1e-4)
        assert reached == (covers or z in centre_slice), (z, changed)


@pytest.mark.parametrize("trainer", FAMILIES.values())
def test_every_image_the_encoder_computes_changes_the_output(planned_dataset, trainer):
    """At the trainer's 3D defaults, perturbing the features of any one encoder image moves the logits: nothing is
    computed that no depth cell uses."""
    plans = load_plans(planned_dataset)
    family = "medsam" if trainer is nnUNetTrainerMedSAMFusionTiny else "medical_sam2"
    input_size = min(trainer.encoder_input_size or 64, trainer.volume_input_size)
    spec = FoundationSpec(family, "tiny", input_size, intensity_window=WINDOW, depth_image=trainer.volume_depth_image,
                          cells_per_image=trainer.volume_cells_per_image)
    plans["configurations"]["3d_fullres"][FOUNDATION_KEY] = spec.to_dict()
    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    torch.manual_seed(0)
    network = trainer.build_network_architecture(manager, configuration, 1, 2, False).eval()
    x = torch.randn(1, 1, *configuration.patch_size)
    images = network.depth_plan(configuration.patch_size).images_per_patch
    forward = network.foundation.forward
    with torch.no_grad():
        reference = network(x)
        for image in range(images):
            def perturbed(batch, levels=None, image=image):
                features = forward(batch, levels)
                for level in features:
                    level[image] += 1.0
                return features

            network.foundation.forward = perturbed
            moved = (network(x) - reference).abs().max()
            network.foundation.forward = forward
            assert moved > 1e-5, f"encoder image {image} of {images} does not reach the output"


def predicted_response_3d(network, manager, configuration, volume: torch.Tensor, mirroring: bool = True):
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=False, device=CPU, verbose=False, allow_tqdm=False)
    labels = {"labels": {"background": 0, "vessel": 1}}
    predictor.manual_initialization(network, manager, configuration, None, labels, "stub", (0, 1, 2))
    with torch.no_grad():
        logits = predictor.predict_sliding_window_return_logits(volume)
    return (logits[1] - logits[0]).abs()  # (Z, Y, X)


@pytest.mark.parametrize("family, control", [("medsam", False), ("medsam", True)])
def test_sliding_window_and_mirroring_keep_the_3d_marker_in_place(planned_dataset, family, control):
    """nnU-Net's 3D predictor over overlapping tiles and all eight mirrorings: the prediction changes around the
    marker; with the slice order of the features reversed (the control) the change sits elsewhere."""
    patch_size = (16, 64, 64)
    network, manager, configuration = stub_network_3d(planned_dataset, family, 512, patch_size)
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


def tiny_3d_network(root):
    plans = load_plans(root)
    spec = FoundationSpec("medsam", "tiny", 64, intensity_window=WINDOW, depth_image="mip")
    plans["configurations"]["3d_fullres"][FOUNDATION_KEY] = spec.to_dict()
    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    torch.manual_seed(0)
    network = nnUNetTrainerMedSAMFusionTiny.build_network_architecture(manager, configuration, 1, 2, False)
    return network.eval(), manager, configuration


def test_reuse_across_z_overlap_mirrors_and_folds_is_exact(planned_dataset):
    """Two folds with the same frozen encoder, tiles overlapping by half along z, all eight mirrorings: the logits
    equal those computed without reuse, and the encoder computes each distinct slab image once."""
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

    plan = network.depth_plan(configuration.patch_size)
    [thickness] = {b - a for a, b in plan.slabs}
    assert 8 % thickness == 0  # the second tile starts a whole number of slabs deeper
    slabs = {(z0 + a, z0 + b) for z0 in (0, 8) for a, b in plan.slabs}  # the tile at z=8 repeats half the slabs
    reference_network = copy.deepcopy(network)
    reference_network.foundation.feature_cache.budget_bytes = 0
    reused, reused_calls = predict(network)
    reference, reference_calls = predict(reference_network)
    assert torch.equal(reused, reference)
    assert reference_calls == 2 * 2 * 8 * len(plan.slabs)  # folds x z-tiles x mirrorings x images per tile
    assert len(slabs) < 2 * len(plan.slabs)
    assert reused_calls == len(slabs) * 4  # each distinct slab once per in-plane mirroring (z-flips reverse them)


def test_a_model_folder_trained_with_per_slice_encoding_is_refused_in_3d_and_read_in_2d(planned_dataset):
    """Specs recorded before per-cell encoding carry ``slice_step``: a 3D one is refused, naming why and what to
    do, so that a trained model never predicts differently without a word; a 2D one (slice_step 1) reads as before."""
    recorded = {"family": "medsam", "size": "tiny", "input_size": 64, "intensity_window": list(WINDOW),
                "precision": "fp32", "slice_step": 2}
    with pytest.raises(ValueError, match=r"slice_step 2.*train it again"):
        FoundationSpec.from_dict(recorded)
    two_d = FoundationSpec.from_dict({**recorded, "slice_step": 1})
    assert two_d.depth_image is None and two_d == FoundationSpec("medsam", "tiny", 64, intensity_window=WINDOW)
    plans = load_plans(planned_dataset)
    plans["configurations"]["3d_fullres"][FOUNDATION_KEY] = {**recorded, "slice_step": 1}
    manager = PlansManager(plans)
    with pytest.raises(ValueError, match=r"per-slice encoding.*train it again"):
        nnUNetTrainerMedSAMFusionTiny.build_network_architecture(manager, manager.get_configuration("3d_fullres"),
                                                                 1, 2, False)
    plans["configurations"]["2d"][FOUNDATION_KEY] = {**recorded, "slice_step": 1}
    network = nnUNetTrainerMedSAMFusionTiny.build_network_architecture(manager, manager.get_configuration("2d"),
                                                                       1, 2, False)
    assert network.foundation.spec == two_d
