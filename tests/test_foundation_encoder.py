"""FoundationSpec, preprocessing and freezing of the foundation encoder wrapper (tiny encoders, CPU)."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnunet_medsam_fusion.foundation import FoundationEncoder, FoundationSpec, build_foundation_encoder
from nnunet_medsam_fusion.foundation.encoder import IMAGENET_MEAN, IMAGENET_STD

WINDOW = (-2.0, 4.0)
TINY_SPECS = [  # precision fp32 (the default of a spec): reference comparisons at float32 tolerance
    FoundationSpec("medsam", "tiny", 64, intensity_window=WINDOW),
    FoundationSpec("medical_sam2", "tiny", 64, intensity_window=WINDOW),
    FoundationSpec("bowang_medsam2", "tiny", 64, intensity_window=WINDOW),
]


@pytest.fixture(scope="module", params=TINY_SPECS, ids=lambda s: s.family)
def encoder(request) -> FoundationEncoder:
    torch.manual_seed(0)
    return build_foundation_encoder(request.param)


@pytest.mark.parametrize("spec", [*TINY_SPECS, FoundationSpec("medsam", "vit_b", 512, WINDOW, "bf16")], ids=str)
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
        ({"family": "medsam", "size": "tiny", "input_size": 64, "precision": "fp16"}, "precision must be one of"),
    ],
)
def test_spec_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FoundationSpec(**kwargs)


def test_spec_from_dict_needs_exact_keys_and_a_window():
    with pytest.raises(ValueError, match="exactly the keys"):
        FoundationSpec.from_dict({"family": "medsam", "size": "tiny"})
    with pytest.raises(ValueError, match="exactly the keys"):  # three keys: a format that was never released
        FoundationSpec.from_dict({"family": "medsam", "size": "tiny", "input_size": 64})
    recorded = FoundationSpec("medsam", "tiny", 64).to_dict()
    with pytest.raises(ValueError, match="with an intensity window"):
        FoundationSpec.from_dict(recorded)


def test_an_encoder_without_a_window_refuses_to_run():
    encoder = build_foundation_encoder(FoundationSpec("medsam", "tiny", 64))
    with pytest.raises(ValueError, match="no intensity window.*with_plans_window"):
        encoder(torch.randn(1, 1, 64, 64))


@pytest.mark.parametrize("window", [(1.0, 1.0), (2.0, 1.0), (0.0, float("nan")), (0.0,)])
def test_spec_rejects_bad_windows(window):
    with pytest.raises(ValueError, match="intensity_window"):
        FoundationSpec("medsam", "tiny", 64, intensity_window=window)


def test_native_input_sizes():
    assert FoundationSpec("medsam", "vit_b", 1024).native_input_size == 1024
    assert FoundationSpec("medical_sam2", "hiera_s", 1024).native_input_size == 1024
    assert FoundationSpec("bowang_medsam2", "hiera_t", 1024).native_input_size == 512


def family_normalisation(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    if family == "bowang_medsam2":
        return torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)


@pytest.mark.parametrize("shape, extent", [((2, 1, 64, 64), (64, 64)), ((1, 3, 40, 96), (32, 64)),
                                           ((1, 1, 128, 24), (64, 16)), ((1, 1, 32, 48), (48, 64))])
def test_windowed_preprocess_keeps_aspect_and_pads(encoder, shape, extent):
    """Fixed window -> [0, 1] clipped, longest side to input_size (short side a multiple of 16), black padding."""
    spec = dataclasses.replace(encoder.spec, intensity_window=(-1.0, 3.0))
    windowed = build_foundation_encoder(spec)
    torch.manual_seed(1)
    x = torch.randn(shape) * 3 + 1
    images = windowed.preprocess(x)
    assert windowed.valid_extent(*shape[-2:]) == extent
    unit = ((x[:, :1] + 1.0) / 4.0).clamp(0, 1)
    if unit.shape[-2:] != extent:
        shrinks = extent[0] < shape[-2] or extent[1] < shape[-1]
        unit = F.interpolate(unit, size=extent, mode="bilinear", align_corners=False, antialias=shrinks).clamp(0, 1)
    padded = torch.zeros(shape[0], 1, 64, 64)
    padded[..., : extent[0], : extent[1]] = unit
    mean, std = family_normalisation(spec.family)
    assert torch.allclose(images, (padded.repeat(1, 3, 1, 1) - mean) / std, atol=1e-5)


def test_window_is_the_same_mapping_for_every_tile():
    """Two tiles sharing pixels give those pixels the same encoder input (a per-patch min-max would not)."""
    torch.manual_seed(4)
    image = torch.randn(1, 1, 64, 96)
    image[..., 70:] += 5  # a bright region only the right tile sees
    left, right = image[..., :64], image[..., 32:]
    windowed = build_foundation_encoder(FoundationSpec("medsam", "tiny", 64, intensity_window=(-2.0, 6.0)))
    a, b = windowed.preprocess(left), windowed.preprocess(right)
    assert torch.allclose(a[..., 32:64], b[..., 0:32], atol=1e-6)

    def min_max(tile: torch.Tensor) -> torch.Tensor:
        return (tile - tile.min()) / (tile.max() - tile.min())

    assert not torch.allclose(min_max(left)[..., 32:64], min_max(right)[..., 0:32], atol=1e-6)


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


@pytest.mark.parametrize("height, width, extent", [(64, 64, (64, 64)), (37, 101, (16, 64)), (128, 96, (64, 48))])
def test_output_shapes_follow_strides_and_cover_the_patch(encoder, height, width, extent):
    features = encoder(torch.randn(2, 1, height, width))
    assert len(features) == len(encoder.feature_channels) == len(encoder.feature_strides)
    for feature, channels, stride in zip(
        features, encoder.feature_channels, encoder.feature_strides, strict=True
    ):
        assert feature.shape == (2, channels, extent[0] // stride, extent[1] // stride)


def test_features_of_the_padding_are_cropped(encoder):
    """Cropped features equal the first rows of the whole padded map: the crop drops only padding cells."""
    x = torch.randn(1, 1, 32, 64)
    images = encoder.preprocess(x)
    with torch.no_grad():
        whole = encoder.encode_images(images)
    for cropped, full, stride in zip(encoder(x), whole, encoder.feature_strides, strict=True):
        assert torch.equal(cropped, full[..., : 32 // stride, :].to(cropped.dtype))


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
    medsam = build_foundation_encoder(TINY_SPECS[0])
    medsam2 = build_foundation_encoder(TINY_SPECS[1])
    assert medsam.feature_strides == (16,) and medsam.feature_channels == (32,)
    assert medsam2.feature_strides == (4, 8, 16) and medsam2.feature_channels == (32, 32, 32)


def test_normalisation_buffers_are_not_saved(encoder):
    assert not any(key.startswith("pixel_") for key in encoder.state_dict())
