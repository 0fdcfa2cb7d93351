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
    """

    def __init__(self, skip_channels: int, feature_channels: int, encoder: nn.Module, lora_rank: int = 8,
                 attention_reduction: int = 16) -> None:
        super().__init__()
        self.adapter = FrequencyLoRA(feature_channels, rank=min(lora_rank, feature_channels))
        self.project = ConvDropoutNormReLU(
            encoder.conv_op, skip_channels + feature_channels, skip_channels, kernel_size=1, stride=1,
            conv_bias=encoder.conv_bias, norm_op=encoder.norm_op, norm_op_kwargs=encoder.norm_op_kwargs,
            nonlin=encoder.nonlin, nonlin_kwargs=encoder.nonlin_kwargs)
        self.gate = AttentionGate(skip_channels, reduction=attention_reduction)

    def forward(self, skip: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        features = self.adapter(features.to(skip.dtype))
        if features.shape[2:] != skip.shape[2:]:
            features = F.interpolate(features, size=skip.shape[2:], mode="bilinear", align_corners=False)
        return self.gate(self.project(torch.cat((skip, features), dim=1)))
