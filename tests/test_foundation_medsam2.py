"""MedSAM2 (SAM2 Hiera + FPN) encoder: builder vs sam2's configs, tiny checkpoints of both families."""

import dataclasses
from pathlib import Path

import pytest
import sam2
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nnunet_medsam_fusion.foundation import FoundationSpec, build_foundation_encoder, load_foundation_weights
from nnunet_medsam_fusion.foundation.encoder import IMAGENET_MEAN, IMAGENET_STD
from nnunet_medsam_fusion.foundation.medsam2 import MedSAM2Encoder, build_sam2_image_encoder
from nnunet_medsam_fusion.testing.tiny_checkpoints import tiny_sam2, write_tiny_medsam2_checkpoint

SAM2_CONFIGS = Path(sam2.__file__).parent / "configs"


WINDOW = (-2.0, 4.0)  # nnU-Net-normalised units mapped to [0, 1]

def reference_backbone_fpn(image_encoder, x: torch.Tensor, side: int, imagenet: bool) -> list[torch.Tensor]:
    """The families' conventions written out: grey [0, 1] (then ImageNet mean/std for bowang) as RGB."""
    low, high = WINDOW
    rgb = ((x[:, :1] - low) / (high - low)).clamp(0, 1).repeat(1, 3, 1, 1)
    if imagenet:
        rgb = (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
            1, 3, 1, 1
        )
    rgb = F.interpolate(rgb, size=(side, side), mode="bilinear", align_corners=False, antialias=side < x.shape[-1])
    with torch.no_grad():
        return image_encoder(rgb)["backbone_fpn"]


@pytest.mark.parametrize(
    "size, config",
    [
        ("hiera_t", "sam2/sam2_hiera_t.yaml"),
        ("hiera_s", "sam2/sam2_hiera_s.yaml"),
        ("hiera_t", "sam2.1/sam2.1_hiera_t.yaml"),
    ],
)
def test_builder_matches_the_config_shipped_with_sam2(size, config):
    """Our Hydra-free build equals instantiating the image_encoder node of sam2's own yaml."""
    reference = instantiate(OmegaConf.load(SAM2_CONFIGS / config).model.image_encoder, _convert_="all")
    ours = build_sam2_image_encoder(size)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    assert ours.scalp == reference.scalp == 1
    assert [b.window_size for b in ours.trunk.blocks] == [b.window_size for b in reference.trunk.blocks]
    assert ours.neck.fpn_top_down_levels == reference.neck.fpn_top_down_levels
    assert ours.neck.fpn_interp_model == reference.neck.fpn_interp_model


def test_position_encoding_allocates_nothing_at_construction():
    # sam2's default warms a CUDA cache at construction when CUDA exists; ours must not.
    assert build_sam2_image_encoder("tiny").neck.position_encoding.cache == {}


@pytest.mark.parametrize("family", ["medical_sam2", "bowang_medsam2"])
def test_tiny_checkpoint_reproduces_the_original_encoder(tmp_path, family):
    path = tmp_path / "medsam2.pt"
    spec = write_tiny_medsam2_checkpoint(path, family=family, seed=5)
    # A square patch: the longest-side resize is the families' own square resize the references write out.
    encoder = build_foundation_encoder(dataclasses.replace(spec, intensity_window=WINDOW))
    x = torch.randn(2, 1, 48, 48)
    load_foundation_weights(encoder, path)
    features = encoder(x)
    expected = reference_backbone_fpn(
        tiny_sam2(family, seed=5).image_encoder, x, 64, imagenet=family == "bowang_medsam2"
    )
    assert [tuple(f.shape) for f in features] == [(2, 32, 16, 16), (2, 32, 8, 8), (2, 32, 4, 4)]
    for got, want in zip(features, expected, strict=True):
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("input_size", [32, 96, 160])
def test_other_input_sizes_run_with_the_same_weights(tmp_path, input_size):
    path = tmp_path / "medsam2.pt"
    write_tiny_medsam2_checkpoint(path, seed=6)
    encoder = build_foundation_encoder(FoundationSpec("medical_sam2", "tiny", input_size, WINDOW))
    load_foundation_weights(encoder, path)
    x = torch.randn(1, 1, 64, 64)
    features = encoder(x)
    expected = reference_backbone_fpn(tiny_sam2(seed=6).image_encoder, x, input_size, imagenet=False)
    for got, want, stride in zip(features, expected, (4, 8, 16), strict=True):
        assert got.shape == (1, 32, input_size // stride, input_size // stride)
        assert torch.allclose(got, want, atol=1e-5)


def test_medsam2_encoder_rejects_medsam_spec():
    with pytest.raises(ValueError, match="SAM2 family spec"):
        MedSAM2Encoder(FoundationSpec("medsam", "tiny", 64))
