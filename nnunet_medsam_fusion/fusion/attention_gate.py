"""AttentionGate: CBAM-style channel-then-spatial attention on fused skip features, in residual form."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AttentionGate(nn.Module):
    """``y = x + x * Mc * Ms``: CBAM's channel gate ``Mc`` then spatial gate ``Ms``, added to ``x``.

    Channel gate: average- and max-pool ``x`` over space, pass both through one shared MLP
    (``C -> max(C // reduction, 1) -> C``, ReLU), sum, sigmoid. Spatial gate: on the channel-refined
    ``x * Mc``, take the channel mean and max, concatenate (2 channels), ``k x k`` convolution
    (padding ``k // 2``), sigmoid. Both gates lie in (0, 1), so ``x <= y / x <= 2`` elementwise: the
    gate can only emphasise, never erase, a feature.

    Why the residual form rather than CBAM's plain ``x * Mc * Ms``: the gate sits on a skip connection
    of nnU-Net's decoder. The plain form multiplies the skip by about 0.25 at initialisation and lets a
    saturated gate switch a feature (and its gradient) off for good; the residual form keeps an
    unattenuated path for features and gradients, as residual attention networks do, and the
    decoder's convolution + instance norm absorbs the overall scale.

    Initialisation: the MLP's output layer and the spatial convolution start at zero (weights and
    bias), so ``Mc = Ms = 0.5`` exactly and ``y = 1.25 * x`` for every input; the gates still receive
    gradients from the first step (the zero layers' own gradients are non-zero).

    Args:
        channels: channels ``C`` of the input.
        reduction: MLP reduction ratio, hidden width ``max(C // reduction, 1)``.
        spatial_kernel_size: odd side ``k`` of the spatial-attention convolution.
        dims: 2 for ``(B, C, H, W)`` inputs, 3 for ``(B, C, D, H, W)`` (the spatial gate is then a
            ``k x k x k`` convolution over the volume: our reading of the block in 3D).
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel_size: int = 7, dims: int = 2) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(
                f"AttentionGate needs channels >= 1, got {channels}; pass the feature channel count."
            )
        if reduction < 1:
            raise ValueError(
                f"AttentionGate reduction must be >= 1, got {reduction}; pass e.g. reduction=16."
            )
        if spatial_kernel_size < 1 or spatial_kernel_size % 2 == 0:
            raise ValueError(
                f"AttentionGate spatial_kernel_size must be odd and >= 1 (to keep the size), "
                f"got {spatial_kernel_size}; pass e.g. 7."
            )
        if dims not in (2, 3):
            raise ValueError(f"AttentionGate works on 2D or 3D feature maps, got dims={dims}.")
        self.channels = channels
        self.dims = dims
        hidden = max(channels // reduction, 1)
        self.channel_mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.spatial_conv = conv(2, 1, kernel_size=spatial_kernel_size, padding=spatial_kernel_size // 2)
        for layer in (self.channel_mlp[-1], self.spatial_conv):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def channel_gate(self, x: Tensor) -> Tensor:
        """``Mc`` of shape ``(B, C, 1, 1)`` (``(B, C, 1, 1, 1)`` in 3D)."""
        space = tuple(range(2, x.ndim))
        logits = self.channel_mlp(x.mean(dim=space)) + self.channel_mlp(x.amax(dim=space))
        return torch.sigmoid(logits).view(*logits.shape, *(1,) * len(space))

    def spatial_gate(self, x: Tensor) -> Tensor:
        """``Ms`` of shape ``(B, 1, *spatial)``."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial_conv(pooled))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 + self.dims or x.shape[1] != self.channels:
            axes = "H, W" if self.dims == 2 else "D, H, W"
            raise ValueError(
                f"AttentionGate expects (B, {self.channels}, {axes}), got shape {tuple(x.shape)}; build it with "
                "matching channels and dims."
            )
        refined = x * self.channel_gate(x)
        return x + refined * self.spatial_gate(refined)
