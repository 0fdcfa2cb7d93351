"""Foundation features land where their pixels are: a marker through the real preprocessing, resize, crop, fusion
and nnU-Net's sliding-window + mirroring prediction.

The image encoder inside the real ``MedSAMEncoder`` / ``MedSAM2Encoder`` is replaced by a stub whose features are
a known function of its input (channel 0 average-pooled by each feature stride), so every other step is the
package's and nnU-Net's own code. A transposed, flipped, shifted or wrongly scaled feature map moves the marker;
the controls below misalign the features on purpose and check that the same assertions then fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunet_medsam_fusion.foundation import FoundationSpec
from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY
from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV
from nnunet_medsam_fusion.testing.nnunet_env import load_plans
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny, nnUNetTrainerMedSAMFusionTiny

WINDOW = (-1.0, 3.0)  # background 0 -> 0.25, marker 3 -> 1.0 in the encoder's [0, 1] input
FAMILIES = {
    "medsam": nnUNetTrainerMedSAMFusionTiny,
    "medical_sam2": nnUNetTrainerMedSAM2FusionTiny,
    "bowang_medsam2": nnUNetTrainerMedSAM2FusionTiny,
}


class PooledInput(nn.Module):
    """Stub image encoder: channel 0 of the encoder input, average-pooled by each feature stride."""

    def __init__(self, strides: tuple[int, ...], channels: tuple[int, ...], sam2: bool) -> None:
        super().__init__()
        self.strides, self.channels, self.sam2 = strides, channels, sam2

    def forward(self, images: torch.Tensor):
        maps = [F.avg_pool2d(images[:, :1], s).expand(-1, c, -1, -1)
                for s, c in zip(self.strides, self.channels, strict=True)]
        return {"backbone_fpn": maps} if self.sam2 else maps[0]


def stub_network(root, family: str, input_size: int, patch_size: tuple[int, int]):
    """The fused network nnU-Net builds from the plans (real encoder wrapper and fusion), stub image encoder."""
    trainer = FAMILIES[family]
    plans = load_plans(root)
    plans["configurations"]["2d"]["patch_size"] = list(patch_size)
    spec = FoundationSpec(family, "tiny", input_size, intensity_window=WINDOW)
    plans["configurations"]["2d"][FOUNDATION_KEY] = spec.to_dict()
    manager = PlansManager(plans)
    configuration = manager.get_configuration("2d")
    torch.manual_seed(0)
    network = trainer.build_network_architecture(manager, configuration, 1, 2, enable_deep_supervision=False)
    foundation = network.foundation
    foundation.image_encoder = PooledInput(foundation.feature_strides, foundation.feature_channels, spec.is_sam2)
    return network.eval(), manager, configuration


def fused_feature_maps(network, x: torch.Tensor) -> list[torch.Tensor]:
    """What each fusion receives from the foundation side: the adapted features resized to the skip."""
    captured = []

    def grab(module, args):
        skip_channels = module.all_modules[0].out_channels
        captured.append(args[0][:, skip_channels:].detach())

    hooks = [fusion.project.register_forward_pre_hook(grab) for fusion in network.fusions]
    try:
        with torch.no_grad():
            network(x)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def response_centre(feature_map: torch.Tensor, patch_size: tuple[int, int]) -> np.ndarray:
    """Centre of the marker's response in a (1, C, h, w) map, in patch pixel coordinates (row, column)."""
    response = (feature_map[0, 0] - feature_map[0, 0].median()).clamp_min(0).double()
    rows, cols = response.shape
    weight = response.sum()
    row = (response.sum(1) * torch.arange(rows)).sum() / weight
    col = (response.sum(0) * torch.arange(cols)).sum() / weight
    # cell centre -> pixel coordinate (align_corners=False convention)
    return np.array([(row + 0.5) * patch_size[0] / rows - 0.5, (col + 0.5) * patch_size[1] / cols - 0.5])


def marker_patch(patch_size: tuple[int, int], corner: tuple[int, int], side: int = 4) -> torch.Tensor:
    x = torch.zeros(1, 1, *patch_size)
    x[..., corner[0]:corner[0] + side, corner[1]:corner[1] + side] = 3.0
    return x


def misalign_by_flipping(network) -> None:
    """The control: flip the cropped features left-right before fusion, as a layout bug would."""
    crop = network.foundation.crop_to_patch
    network.foundation.crop_to_patch = lambda features, h, w: [f.flip(-1) for f in crop(features, h, w)]


@pytest.fixture(autouse=True)
def float32_encoder(monkeypatch):
    monkeypatch.setenv(ENCODER_PRECISION_ENV, "fp32")


CASES = [(family, size, patch) for family in FAMILIES for size in (1024, 512)
         for patch in ((64, 64), (48, 96), (96, 48))]


@pytest.mark.parametrize("family, input_size, patch_size", CASES)
def test_marker_lands_at_its_position_in_every_fused_skip(planned_dataset, family, input_size, patch_size):
    network, _, _ = stub_network(planned_dataset, family, input_size, patch_size)
    corner = (patch_size[0] * 5 // 8, patch_size[1] // 5)  # off-centre and off-diagonal
    centre = np.array(corner) + 1.5
    maps = fused_feature_maps(network, marker_patch(patch_size, corner))
    assert len(maps) == len(network.fusion_stages)
    for feature_map in maps:
        error = np.abs(response_centre(feature_map, patch_size) - centre).max()
        assert error <= 0.5, (feature_map.shape, error)  # measured: at most 0.2 pixel


@pytest.mark.parametrize("family", ["medsam", "medical_sam2"])
@pytest.mark.parametrize("control", ["flip", "no_crop"])
def test_misaligned_features_are_caught(planned_dataset, family, control):
    """The controls: features flipped left-right, or the padded square map fused without cropping it back to the
    patch, move the marker far beyond the tolerance of the test above."""
    patch_size = (48, 96)
    network, _, _ = stub_network(planned_dataset, family, 1024, patch_size)
    if control == "flip":
        misalign_by_flipping(network)
    else:
        network.foundation.crop_to_patch = lambda features, h, w: features
    corner = (patch_size[0] * 5 // 8, patch_size[1] // 5)
    centre = np.array(corner) + 1.5
    for feature_map in fused_feature_maps(network, marker_patch(patch_size, corner)):
        error = np.abs(response_centre(feature_map, patch_size) - centre).max()
        assert error > 8, error


def predicted_response(network, manager, configuration, volume: torch.Tensor) -> torch.Tensor:
    """nnU-Net's sliding-window prediction with mirroring of ``volume`` (C, 2, Y, X), whose slice 0 is blank:
    the change of slice 1's logits from slice 0's (a 2D network predicts every slice on its own)."""
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                allow_tqdm=False)
    labels = {"labels": {"background": 0, "vessel": 1}}
    predictor.manual_initialization(network, manager, configuration, None, labels, "stub", (0, 1))
    with torch.no_grad():
        logits = predictor.predict_sliding_window_return_logits(volume)
    return (logits[:, 1] - logits[:, 0]).abs().sum(0)  # (Y, X)


def blind_unet(network) -> None:
    """Zero nnU-Net's first convolution: the output then depends on the input only through the foundation."""
    with torch.no_grad():
        network.encoder.stages[0][0].convs[0].conv.weight.zero_()


@pytest.mark.parametrize("family, input_size, patch_size, misaligned", [
    ("medsam", 1024, (48, 96), False), ("medical_sam2", 512, (64, 64), False),
    ("bowang_medsam2", 512, (96, 48), False), ("medsam", 1024, (48, 96), True)])
def test_sliding_window_and_mirroring_keep_the_marker_in_place(planned_dataset, family, input_size, patch_size,
                                                               misaligned):
    """nnU-Net's predictor over overlapping tiles (2 x 2 per slice) and all four mirrorings: the prediction
    changes around the marker; with flipped features (the control) the change sits elsewhere."""
    network, manager, configuration = stub_network(planned_dataset, family, input_size, patch_size)
    blind_unet(network)
    if misaligned:
        misalign_by_flipping(network)
    shape = (patch_size[0] * 3 // 2, patch_size[1] * 3 // 2)
    volume = torch.zeros(1, 2, *shape)
    corner = (shape[0] * 5 // 8, shape[1] // 5)
    volume[0, 1, corner[0]:corner[0] + 4, corner[1]:corner[1] + 4] = 3.0
    response = predicted_response(network, manager, configuration, volume)
    # The peak of the change (the decoder's random weights spread it, so its centroid is not a fair measure).
    peak = np.array(np.unravel_index(int(response.argmax()), response.shape))
    error = np.abs(peak - (np.array(corner) + 1.5)).max()
    if misaligned:
        assert error > 8, error
    else:
        # The peak of a random decoder's response: within 4 pixels (3.5 measured where a level goes to a stage
        # coarser than its features); the direct check of the fused skips above holds each centre to 0.5 pixel.
        assert error <= 4, error


def averaging_encoder(network) -> None:
    """nnU-Net's encoder made a fixed smoother: every convolution averages its input channels over its kernel, so a
    stage's skip shows the marker where nnU-Net's own strided convolutions put it (not where our cell-centre
    convention says they should)."""
    with torch.no_grad():
        for module in network.encoder.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()


def response_cell(feature_map: torch.Tensor) -> np.ndarray:
    """Centroid of the marker's response in a (1, C, *grid) map, in cells of that grid."""
    response = (feature_map[0, 0] - feature_map[0, 0].median()).clamp_min(0).double()
    return np.array([float((response.sum(tuple(a for a in range(response.ndim) if a != axis))
                            * torch.arange(size)).sum() / response.sum())
                     for axis, size in enumerate(response.shape)])


@pytest.mark.parametrize("family, input_size, patch_size", [("medsam", 1024, (64, 64)), ("medsam", 512, (48, 96)),
                                                            ("medical_sam2", 1024, (64, 64)),
                                                            ("medical_sam2", 512, (96, 48))])
def test_fused_features_sit_where_nnunets_strided_skips_put_the_marker(planned_dataset, family, input_size,
                                                                      patch_size):
    """Measured against nnU-Net's own encoder rather than against our cell-centre convention: at each fused stage the
    foundation features and nnU-Net's skip see the marker within half a cell of each other. nnU-Net's stride-2
    convolutions (kernel 3, padding 1) centre a cell of stride S on pixel S * j, our resize on S * j + (S - 1) / 2, so
    the features sit (S - 1) / (2 S) cells before the skip, under half a cell (a learnable sub-cell shift: the
    fusion's 1x1 projection sees both, and nnU-Net's decoder convolutions reach a cell further); one more half-cell
    shift fails."""
    network, _, _ = stub_network(planned_dataset, family, input_size, patch_size)
    averaging_encoder(network)
    corner = (patch_size[0] * 5 // 8, patch_size[1] // 5)
    x = marker_patch(patch_size, corner)
    with torch.no_grad():
        skips = network.encoder(x)
    for stage, feature_map in zip(network.fusion_stages, fused_feature_maps(network, x), strict=True):
        stride = np.array(patch_size) / np.array(skips[stage].shape[-2:])
        offset = response_cell(feature_map) - response_cell(skips[stage])
        assert np.allclose(offset, -(stride - 1) / (2 * stride), atol=0.1), (stage, offset, stride)
        assert np.abs(offset).max() < 0.5, (stage, offset)
