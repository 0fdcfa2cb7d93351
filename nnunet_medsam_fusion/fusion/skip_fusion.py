"""Fuses one level of frozen foundation features into one nnU-Net encoder skip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from torch import nn

from nnunet_medsam_fusion.fusion.attention_gate import AttentionGate
from nnunet_medsam_fusion.fusion.frequency_lora import FrequencyLoRA


class SkipFusion(nn.Module):
    """FrequencyLoRA(features) -> resize to the skip -> concat with skip -> 1x1 conv -> AttentionGate.

    The 1x1 projection brings the width back to the skip's, so nnU-Net's decoder is used unchanged.
    It uses the encoder's own conv/norm/non-linearity so it behaves like the rest of the U-Net.

    In 3D (the encoder's ``conv_op`` is ``Conv3d``) the features are those of the encoder's images of the patch,
    ``(B * n, C, h, w)``: FrequencyLoRA adapts each image in-plane (the encoder saw each image alone, so the
    spectral filter acts on the plane it was trained on: our reading), then each depth cell of the skip takes the
    features of the images it overlaps (resized in-plane first; ``depth_cells.DepthPlan.weights``), and the gate
    attends over the 3D skip.
    """

    def __init__(self, skip_channels: int, feature_channels: int, encoder: nn.Module, lora_rank: int = 8,
                 attention_reduction: int = 16) -> None:
        super().__init__()
        self.adapter = FrequencyLoRA(feature_channels, rank=min(lora_rank, feature_channels))
        self.project = ConvDropoutNormReLU(
            encoder.conv_op, skip_channels + feature_channels, skip_channels, kernel_size=1, stride=1,
            conv_bias=encoder.conv_bias, norm_op=encoder.norm_op, norm_op_kwargs=encoder.norm_op_kwargs,
            nonlin=encoder.nonlin, nonlin_kwargs=encoder.nonlin_kwargs)
        self.dims = 3 if encoder.conv_op is nn.Conv3d else 2
        self.gate = AttentionGate(skip_channels, reduction=attention_reduction, dims=self.dims)

    def forward(self, skip: torch.Tensor, features: torch.Tensor, depth_weights: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``depth_weights`` (3D only): (skip depth, encoder images) from ``depth_cells.DepthPlan``."""
        features = resize_in_plane(self.adapter(features.to(skip.dtype)), skip.shape[-2:])
        if self.dims == 3:
            volume = features.view(skip.shape[0], -1, *features.shape[1:])  # (B, n, C, h, w)
            features = torch.einsum("jn,bnchw->bcjhw", depth_weights.to(features.dtype), volume)
        return self.gate(self.project(torch.cat((skip, features), dim=1)))


def resize_in_plane(features: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Bilinear resize of (N, C, h, w) maps to ``size``, antialiased where a side shrinks."""
    if features.shape[-2:] == size:
        return features
    shrinks = any(f > s for f, s in zip(features.shape[-2:], size, strict=True))
    return F.interpolate(features, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinks)
