"""MedSAM (SAM ViT) encoder: builder, position-embedding resize, tiny checkpoints in the official layouts."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry

from nnunet_medsam_fusion.foundation import FoundationSpec, build_foundation_encoder, load_foundation_weights
from nnunet_medsam_fusion.foundation.medsam import MedSAMEncoder, build_vit_image_encoder, resize_pos_embed
from nnunet_medsam_fusion.testing.tiny_checkpoints import tiny_sam, write_tiny_medsam_checkpoint

VIT_B_IMAGE_ENCODER_PARAMETERS = 89_670_912


WINDOW = (-2.0, 4.0)  # nnU-Net-normalised units mapped to [0, 1]

def reference_features(image_encoder, x: torch.Tensor, side: int) -> torch.Tensor:
    """MedSAM's own convention written out: grey [0, 1] replicated to RGB at side x side, no SAM mean/std."""
    low, high = WINDOW
    rgb = ((x[:, :1] - low) / (high - low)).clamp(0, 1).repeat(1, 3, 1, 1)
    rgb = F.interpolate(rgb, size=(side, side), mode="bilinear", align_corners=False, antialias=side < x.shape[-1])
    with torch.no_grad():
        return image_encoder(rgb)


def test_vit_b_matches_segment_anything_builder():
    ours = build_vit_image_encoder("vit_b")
    theirs = sam_model_registry["vit_b"]().image_encoder
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    assert [b.window_size for b in ours.blocks] == [b.window_size for b in theirs.blocks]
    assert sum(p.numel() for p in ours.parameters()) == VIT_B_IMAGE_ENCODER_PARAMETERS


@pytest.mark.parametrize("layout", ["medsam", "sam", "medsam_training"])
def test_tiny_checkpoint_reproduces_the_original_encoder(tmp_path, layout):
    path = tmp_path / "medsam.pth"
    spec = write_tiny_medsam_checkpoint(path, layout=layout, seed=3)
    # A square patch: the longest-side resize is the families' own square resize the references write out.
    encoder = build_foundation_encoder(dataclasses.replace(spec, intensity_window=WINDOW))
    x = torch.randn(2, 1, 56, 56)
    before = encoder(x)[0]
    load_foundation_weights(encoder, path)
    features = encoder(x)[0]
    expected = reference_features(tiny_sam(seed=3).image_encoder, x, spec.input_size)
    assert features.shape == (2, 32, 4, 4)
    assert torch.allclose(features, expected, atol=1e-5)
    assert not torch.allclose(before, features, atol=1e-3)  # loading really changed the weights


def test_tiny_checkpoint_at_larger_input_size_uses_resized_pos_embed(tmp_path):
    path = tmp_path / "medsam.pth"
    write_tiny_medsam_checkpoint(path, seed=4)
    encoder = build_foundation_encoder(FoundationSpec("medsam", "tiny", 128, WINDOW))
    load_foundation_weights(encoder, path)
    reference = tiny_sam(seed=4).image_encoder
    grid_first = reference.pos_embed.detach().permute(0, 3, 1, 2)
    resized = F.interpolate(grid_first, size=(8, 8), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    reference.pos_embed = torch.nn.Parameter(resized)
    x = torch.randn(2, 1, 96, 96)
    features = encoder(x)[0]
    assert features.shape == (2, 32, 8, 8)
    assert torch.allclose(features, reference_features(reference, x, 128), atol=1e-5)


def test_resize_pos_embed():
    pos_embed = torch.randn(1, 4, 4, 6)
    assert resize_pos_embed(pos_embed, 4) is pos_embed
    assert torch.allclose(resize_pos_embed(torch.full((1, 4, 4, 3), 2.5), 7), torch.full((1, 7, 7, 3), 2.5))
    resized = resize_pos_embed(pos_embed, 8)
    expected = F.interpolate(pos_embed.permute(0, 3, 1, 2), size=(8, 8), mode="bicubic", align_corners=False)
    assert torch.allclose(resized, expected.permute(0, 2, 3, 1))


@pytest.mark.parametrize("input_size, grid", [(64, 4), (32, 2), (160, 10)])
def test_build_at_any_multiple_of_16_keeps_checkpoint_shapes(input_size, grid):
    encoder = MedSAMEncoder(FoundationSpec("medsam", "tiny", input_size))
    assert encoder.image_encoder.pos_embed.shape == (1, grid, grid, 32)
    shapes = encoder.checkpoint_shapes()
    assert shapes["pos_embed"] == (1, 4, 4, 32)  # a checkpoint always holds the native grid
    # every other parameter keeps the native shape, so prediction-time builds match training-time builds
    native = build_vit_image_encoder("tiny").state_dict()
    assert all(shapes[k] == v.shape for k, v in native.items())


def test_medsam_encoder_rejects_sam2_spec():
    with pytest.raises(ValueError, match="needs a 'medsam' spec"):
        MedSAMEncoder(FoundationSpec("medical_sam2", "tiny", 64))
