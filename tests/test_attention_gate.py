import pytest
import torch
import torch.nn.functional as F

from nnunet_medsam_fusion.fusion.attention_gate import AttentionGate

SHAPES = [(2, 32, 64, 64), (1, 256, 16, 16), (3, 8, 15, 9), (2, 4, 7, 12)]


def _input(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _gate(shape, reduction=4, kernel=7, seed=0):
    """An AttentionGate with every parameter randomised (the zero-initialised layers included)."""
    torch.manual_seed(seed)
    gate = AttentionGate(shape[1], reduction=reduction, spatial_kernel_size=kernel)
    with torch.no_grad():
        for param in gate.parameters():
            param.normal_(std=0.3)
    return gate


def _reference(gate: AttentionGate, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CBAM written out with the gate's own weights: returns (channel gate, output)."""
    w1, b1 = gate.channel_mlp[0].weight, gate.channel_mlp[0].bias
    w2, b2 = gate.channel_mlp[2].weight, gate.channel_mlp[2].bias
    flat = x.flatten(2)

    def mlp(v):
        return torch.relu(v @ w1.T + b1) @ w2.T + b2

    channel = torch.sigmoid(mlp(flat.mean(-1)) + mlp(flat.max(-1).values))
    channel = channel[:, :, None, None]
    refined = x * channel
    pooled = torch.stack([refined.mean(1), refined.max(1).values], dim=1)
    kernel = gate.spatial_conv.weight.shape[-1]
    spatial = torch.sigmoid(
        F.conv2d(pooled, gate.spatial_conv.weight, gate.spatial_conv.bias, padding=kernel // 2)
    )
    return channel, x + refined * spatial


@pytest.mark.parametrize("shape", SHAPES)
def test_initial_output_is_exactly_one_point_two_five_x(shape):
    gate = AttentionGate(shape[1])
    x = _input(shape)
    y = gate(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(gate.channel_gate(x), torch.full((shape[0], shape[1], 1, 1), 0.5))
    assert torch.equal(y, 1.25 * x)


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_cbam(shape):
    gate = _gate(shape)
    x = _input(shape)
    expected_channel, expected = _reference(gate, x)
    torch.testing.assert_close(gate.channel_gate(x), expected_channel, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gate(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3])
def test_spatial_kernel_sizes(kernel):
    shape = (2, 8, 9, 6)
    gate = _gate(shape, kernel=kernel)
    x = _input(shape)
    torch.testing.assert_close(gate(x), _reference(gate, x)[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_output_between_x_and_two_x(shape):
    gate = _gate(shape, seed=1)
    x = _input(shape) * 3
    y = gate(x)
    mask = x != 0
    ratio = y[mask] / x[mask]
    assert ratio.min() >= 1.0 and ratio.max() <= 2.0
    assert ratio.max() - ratio.min() > 0.1  # the gate really varies over the map


def test_hidden_width_never_below_one():
    gate = AttentionGate(8, reduction=16)
    assert gate.channel_mlp[0].out_features == 1
    assert AttentionGate(64, reduction=16).channel_mlp[0].out_features == 4


@pytest.mark.parametrize("shape", [(2, 32, 16, 16), (3, 8, 15, 9), (2, 16, 5, 7)])
def test_gradients_reach_every_parameter_and_input(shape):
    gate = _gate(shape)
    x = _input(shape).requires_grad_()
    (gate(x) * _input(shape, seed=2)).sum().backward()
    for name, param in gate.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_zero_initialised_layers_get_gradients_at_init():
    gate = AttentionGate(16, reduction=4)
    x = _input((2, 16, 12, 10))
    (gate(x) * _input((2, 16, 12, 10), seed=3)).sum().backward()
    for param in (gate.channel_mlp[2].weight, gate.spatial_conv.weight, gate.spatial_conv.bias):
        assert param.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_module_and_input(dtype):
    shape = (2, 16, 15, 9)
    gate = _gate(shape)
    x = _input(shape)
    expected = gate(x)
    y = gate.to(dtype)(x.to(dtype))
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), expected, atol=0.1, rtol=0.05)


def test_autocast_bfloat16():
    shape = (2, 16, 15, 9)
    gate = _gate(shape)
    x = _input(shape)
    expected = gate(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = gate(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, expected, atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": 0},
        {"channels": 8, "reduction": 0},
        {"channels": 8, "spatial_kernel_size": 6},
        {"channels": 8, "spatial_kernel_size": 0},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        AttentionGate(**kwargs)


@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (1, 8, 4, 8, 8), (2, 8, 8)])
def test_wrong_input_shape_raises(shape):
    with pytest.raises(ValueError, match="AttentionGate expects"):
        AttentionGate(8)(torch.zeros(shape))


SHAPES_3D = [(2, 16, 8, 12, 10), (1, 32, 5, 7, 9)]


def _reference_3d(gate: AttentionGate, x: torch.Tensor) -> torch.Tensor:
    """CBAM in 3D written out with the gate's own weights: pooling over the volume, a k x k x k spatial conv."""
    w1, b1 = gate.channel_mlp[0].weight, gate.channel_mlp[0].bias
    w2, b2 = gate.channel_mlp[2].weight, gate.channel_mlp[2].bias
    flat = x.flatten(2)

    def mlp(v):
        return torch.relu(v @ w1.T + b1) @ w2.T + b2

    channel = torch.sigmoid(mlp(flat.mean(-1)) + mlp(flat.max(-1).values))[:, :, None, None, None]
    refined = x * channel
    pooled = torch.stack([refined.mean(1), refined.max(1).values], dim=1)
    kernel = gate.spatial_conv.weight.shape[-1]
    spatial = torch.sigmoid(F.conv3d(pooled, gate.spatial_conv.weight, gate.spatial_conv.bias, padding=kernel // 2))
    return x + refined * spatial


@pytest.mark.parametrize("shape", SHAPES_3D)
def test_3d_gate_starts_at_one_point_two_five_x_and_matches_cbam_in_3d(shape):
    gate = AttentionGate(shape[1], reduction=4, dims=3)
    x = _input(shape)
    assert torch.equal(gate(x), 1.25 * x)
    assert gate.spatial_conv.weight.shape == (1, 2, 7, 7, 7)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in gate.parameters():
            param.normal_(std=0.3)
    torch.testing.assert_close(gate(x), _reference_3d(gate, x), atol=1e-5, rtol=1e-5)


def test_3d_gate_refuses_2d_input_and_bad_dims():
    with pytest.raises(ValueError, match=r"\(B, 8, D, H, W\)"):
        AttentionGate(8, dims=3)(torch.zeros(2, 8, 4, 4))
    with pytest.raises(ValueError, match="2D or 3D"):
        AttentionGate(8, dims=1)
