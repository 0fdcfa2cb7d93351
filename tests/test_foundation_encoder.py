"""FoundationSpec, preprocessing and freezing of the foundation encoder wrapper (tiny encoders, CPU)."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnunet_medsam_fusion.foundation import FoundationEncoder, FoundationSpec, build_foundation_encoder
from nnunet_medsam_fusion.foundation.encoder import IMAGENET_MEAN, IMAGENET_STD, min_max_scale

TINY_SPECS = [
    FoundationSpec("medsam", "tiny", 64),
    FoundationSpec("medical_sam2", "tiny", 64),
    FoundationSpec("bowang_medsam2", "tiny", 64),
]


@pytest.fixture(scope="module", params=TINY_SPECS, ids=lambda s: s.family)
def encoder(request) -> FoundationEncoder:
    torch.manual_seed(0)
    return build_foundation_encoder(request.param)


@pytest.mark.parametrize("spec", [*TINY_SPECS, FoundationSpec("medsam", "vit_b", 512)], ids=str)
def test_spec_round_trips_through_json(spec):
    assert FoundationSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"family": "sam3", "size": "tiny", "input_size": 64}, "Unknown foundation family"),
        ({"family": "medsam", "size": "hiera_t", "input_size": 64}, "Unknown size"),
        ({"family": "medsam", "size": "tiny", "input_size": 72}, "multiple of 16"),
        ({"family": "medical_sam2", "size": "tiny", "input_size": 80}, "multiple of 32"),
        ({"family": "bowang_medsam2", "size": "tiny", "input_size": 0}, "positive multiple"),
        ({"family": "medsam", "size": "tiny", "input_size": 64.0}, "must be an int"),
    ],
)
def test_spec_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FoundationSpec(**kwargs)


def test_spec_from_dict_needs_exact_keys():
    with pytest.raises(ValueError, match="exactly the keys"):
        FoundationSpec.from_dict({"family": "medsam", "size": "tiny"})


def test_native_input_sizes():
    assert FoundationSpec("medsam", "vit_b", 1024).native_input_size == 1024
    assert FoundationSpec("medical_sam2", "hiera_s", 1024).native_input_size == 1024
    assert FoundationSpec("bowang_medsam2", "hiera_t", 1024).native_input_size == 512


def test_min_max_scale_matches_formula_and_handles_constant_images():
    images = torch.stack([torch.arange(12.0).view(1, 3, 4) * 2 - 5, torch.full((1, 3, 4), 7.0)])
    scaled = min_max_scale(images)
    assert torch.allclose(scaled[0], torch.arange(12.0).view(1, 3, 4) / 11)
    assert torch.equal(scaled[1], torch.zeros(1, 3, 4))


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 3, 40, 90), (3, 2, 128, 17)])
def test_preprocess_uses_channel_zero_scales_and_resizes(encoder, shape):
    torch.manual_seed(1)
    x = torch.randn(shape) * 3 + 1
    images = encoder.preprocess(x)
    side = encoder.spec.input_size
    assert images.shape == (shape[0], 3, side, side)
    # Reference in the documented order: min-max, normalise, replicate, then resize.
    low = x[:, :1].amin(dim=(1, 2, 3), keepdim=True)
    high = x[:, :1].amax(dim=(1, 2, 3), keepdim=True)
    unit = (x[:, :1] - low) / (high - low)
    if encoder.spec.family == "bowang_medsam2":
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    else:
        mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    expected = F.interpolate(
        (unit.repeat(1, 3, 1, 1) - mean) / std, size=(side, side), mode="bilinear", align_corners=False
    )
    assert torch.allclose(images, expected, atol=1e-5)
    if shape[-2:] == (side, side) and encoder.spec.family != "bowang_medsam2":
        assert images.amin() == 0 and images.amax() == 1


def test_other_channels_do_not_change_features(encoder):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 48, 48)
    y = x.clone()
    y[:, 1:] = torch.randn(2, 2, 48, 48) * 10
    for a, b in zip(encoder(x), encoder(y), strict=True):
        assert torch.equal(a, b)


def test_constant_image_gives_finite_features(encoder):
    features = encoder(torch.full((2, 1, 64, 64), 3.5))
    assert all(torch.isfinite(f).all() for f in features)


@pytest.mark.parametrize("height, width", [(64, 64), (37, 101), (128, 96)])
def test_output_shapes_follow_strides(encoder, height, width):
    features = encoder(torch.randn(2, 1, height, width))
    side = encoder.spec.input_size
    assert len(features) == len(encoder.feature_channels) == len(encoder.feature_strides)
    for feature, channels, stride in zip(
        features, encoder.feature_channels, encoder.feature_strides, strict=True
    ):
        assert feature.shape == (2, channels, side // stride, side // stride)


def test_output_dtype_follows_input(encoder):
    features = encoder(torch.randn(1, 1, 64, 64, dtype=torch.float64))
    assert all(f.dtype == torch.float64 for f in features)


def test_encoder_is_frozen_and_stays_in_eval_mode(encoder):
    parent = nn.Sequential(encoder, nn.Dropout())
    parent.train()
    assert not any(m.training for m in encoder.modules())  # frozen: never follows its parent into train mode
    assert not any(p.requires_grad for p in encoder.parameters())
    x = torch.randn(2, 1, 64, 64, requires_grad=True)
    features = encoder(x)
    assert not any(f.requires_grad for f in features)
    assert all(f.grad_fn is None for f in features)
    parent.eval()
    assert not encoder.training


def test_forward_rejects_non_4d_input(encoder):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        encoder(torch.randn(1, 64, 64))


def test_feature_layout_per_family():
    medsam = build_foundation_encoder(FoundationSpec("medsam", "tiny", 64))
    medsam2 = build_foundation_encoder(FoundationSpec("medical_sam2", "tiny", 64))
    assert medsam.feature_strides == (16,) and medsam.feature_channels == (32,)
    assert medsam2.feature_strides == (4, 8, 16) and medsam2.feature_channels == (32, 32, 32)


def test_normalisation_buffers_are_not_saved(encoder):
    assert not any(key.startswith("pixel_") for key in encoder.state_dict())
