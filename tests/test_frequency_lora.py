import numpy as np
import pytest
import torch

from nnunet_medsam_fusion.fusion.frequency_lora import FrequencyLoRA

SHAPES = [(2, 32, 64, 64), (1, 256, 16, 16), (3, 8, 15, 9), (2, 12, 10, 7)]


def _input(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _reference_filter(x: np.ndarray, quadrant_gain: np.ndarray) -> np.ndarray:
    """Full complex FFT with the gain mirrored to all frequency quadrants: G(f_h, f_w) = g(|f_h|, |f_w|)."""
    height, width = x.shape[-2:]
    rows = np.minimum(np.arange(height), height - np.arange(height))
    cols = np.minimum(np.arange(width), width - np.arange(width))
    full_gain = quadrant_gain[:, rows][:, :, cols]
    return np.fft.ifft2(np.fft.fft2(x) * full_gain).real


@pytest.mark.parametrize("shape", SHAPES)
def test_identity_at_init(shape):
    module = FrequencyLoRA(shape[1])
    x = _input(shape)
    y = module(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y, x)


@pytest.mark.parametrize("shape", SHAPES)
def test_constant_gain_scales_input(shape):
    module = FrequencyLoRA(shape[1], spectral_size=(5, 3))
    with torch.no_grad():
        module.gain.fill_(1.7)
    x = _input(shape)
    torch.testing.assert_close(module(x), 1.7 * x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_spectral_branch_matches_full_fft_reference(shape):
    height, width = shape[-2:]
    module = FrequencyLoRA(shape[1], spectral_size=(height // 2 + 1, width // 2 + 1))  # grid == quadrant
    with torch.no_grad():
        module.gain.uniform_(0.0, 3.0)
    x = _input(shape)
    expected = _reference_filter(x.double().numpy(), module.gain.detach().double().numpy())
    np.testing.assert_allclose(module(x).detach().numpy(), expected, atol=2e-5)


@pytest.mark.parametrize("shape", [(2, 4, 16, 16), (1, 3, 15, 9), (1, 2, 6, 11)])
def test_gain_grid_is_resized_bilinearly_from_dc_to_nyquist(shape):
    height, width = shape[-2:]
    module = FrequencyLoRA(shape[1], rank=1, spectral_size=(2, 2))
    corners = torch.rand(shape[1], 2, 2, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        module.gain.copy_(corners)
    # Hand-written bilinear interpolation: corner [0, 0] sits at DC, [1, 1] at the Nyquist corner.
    u = np.linspace(0, 1, height // 2 + 1)[:, None]
    v = np.linspace(0, 1, width // 2 + 1)[None, :]
    c = corners.double().numpy()[:, :, :, None, None]
    quadrant = (
        (1 - u) * (1 - v) * c[:, 0, 0]
        + (1 - u) * v * c[:, 0, 1]
        + u * (1 - v) * c[:, 1, 0]
        + u * v * c[:, 1, 1]
    )
    x = _input(shape)
    expected = _reference_filter(x.double().numpy(), quadrant)
    np.testing.assert_allclose(module(x).detach().numpy(), expected, atol=2e-5)


def test_low_pass_gain_gives_channel_mean():
    module = FrequencyLoRA(3, rank=1, spectral_size=(4, 4))  # quadrant of a 6x6 map
    with torch.no_grad():
        module.gain.zero_()
        module.gain[:, 0, 0] = 1.0  # keep only DC
    x = _input((2, 3, 6, 6))
    torch.testing.assert_close(module(x), x.mean(dim=(2, 3), keepdim=True).expand_as(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_low_rank_branch_matches_matrix_product(shape):
    channels = shape[1]
    module = FrequencyLoRA(channels, rank=4, alpha=2.0)
    with torch.no_grad():
        module.lora_up.weight.normal_()
    x = _input(shape)
    down = module.lora_down.weight[:, :, 0, 0]
    up = module.lora_up.weight[:, :, 0, 0]
    expected = x + 0.5 * torch.einsum("cr,rk,bkhw->bchw", up, down, x)
    torch.testing.assert_close(module(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_gradients_reach_every_parameter_and_input(shape):
    module = FrequencyLoRA(shape[1])
    with torch.no_grad():
        module.lora_up.weight.normal_()
        module.gain.uniform_(0.5, 1.5)
    x = _input(shape).requires_grad_()
    weights = _input(shape, seed=2)
    (module(x) * weights).sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_at_init_gain_and_up_projection_get_gradients():
    module = FrequencyLoRA(8)
    x = _input((2, 8, 12, 10))
    (module(x) * _input((2, 8, 12, 10), seed=3)).sum().backward()
    assert module.gain.grad.abs().sum() > 0
    assert module.lora_up.weight.grad.abs().sum() > 0
    assert torch.count_nonzero(module.lora_down.weight.grad) == 0  # LoRA: A learns once B has moved


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(2, 16, 15, 9), (1, 8, 16, 16)])
def test_low_precision_module_and_input(dtype, shape):
    module = FrequencyLoRA(shape[1])
    with torch.no_grad():
        module.lora_up.weight.normal_(std=0.1)
        module.gain.uniform_(0.5, 1.5)
    x = _input(shape)
    expected = module(x)
    y = module.to(dtype)(x.to(dtype))
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y.float(), expected, atol=0.1, rtol=0.05)


def test_autocast_bfloat16_keeps_input_dtype():
    module = FrequencyLoRA(8)
    with torch.no_grad():
        module.lora_up.weight.normal_(std=0.1)
        module.gain.uniform_(0.5, 1.5)
    x = _input((2, 8, 15, 9))
    expected = module(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, expected, atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": 0},
        {"channels": 8, "rank": 0},
        {"channels": 8, "rank": 9},
        {"channels": 8, "alpha": 0.0},
        {"channels": 8, "spectral_size": (0, 4)},
        {"channels": 8, "spectral_size": (4,)},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        FrequencyLoRA(**kwargs)


@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (2, 8, 8), (1, 8, 4, 8, 8)])
def test_wrong_input_shape_raises(shape):
    with pytest.raises(ValueError, match="FrequencyLoRA expects"):
        FrequencyLoRA(8)(torch.zeros(shape))
