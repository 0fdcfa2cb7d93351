"""The fused network: nnU-Net's own 2D encoder-decoder with frozen foundation features in its skips."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from nnunet_medsam_fusion.fusion.skip_fusion import SkipFusion


def skip_sizes(encoder: nn.Module, patch_size: Sequence[int]) -> list[tuple[int, ...]]:
    """Spatial size of every encoder stage's output for an input patch, as nnU-Net's encoders compute it."""
    sizes, size = [], tuple(int(s) for s in patch_size)
    for stride in encoder.strides:
        size = tuple(s // st for s, st in zip(size, stride, strict=True))
        sizes.append(size)
    return sizes


def nearest_stage(stage_sizes: Sequence[Sequence[int]], feature_side: float) -> int:
    """Encoder stage whose resolution is closest (in octaves) to a feature map of side ``feature_side``.

    Ties go to the higher resolution. Example: a 512² patch and MedSAM's 64² map (1024 input) -> the
    stage at 64² (stage 3), as in the paper.
    """
    def octaves(size: Sequence[int]) -> float:
        return abs(math.log2(math.prod(size) ** (1 / len(size))) - math.log2(feature_side))

    return min(range(len(stage_sizes)), key=lambda k: (octaves(stage_sizes[k]), k))


class FoundationFusionUNet(nn.Module):
    """nnU-Net's encoder and decoder, with foundation features fused into chosen encoder skips.

    ``forward``: ``skips = encoder(x)``; for each fused level, ``skips[stage] = SkipFusion(skips[stage],
    foundation(x)[level])``; ``decoder(skips)``. Widths never change, so nnU-Net's decoder, deep
    supervision and ``set_deep_supervision_enabled`` (``network.decoder.deep_supervision``) work as in
    nnU-Net, and the ``encoder.*``/``decoder.*`` weights have nnU-Net's names.

    Args:
        unet: the network nnU-Net builds from the plans (PlainConvUNet or ResidualEncoderUNet).
        foundation: frozen encoder with ``feature_channels``, ``feature_strides``, ``spec.input_size``
            returning a list of feature maps.
        patch_size: nnU-Net's 2D patch size, used to pick the stage each feature level goes to.
        feature_levels: which of the foundation's levels to fuse.
    """

    def __init__(self, unet: nn.Module, foundation: nn.Module, patch_size: Sequence[int],
                 feature_levels: Sequence[int], lora_rank: int = 8, attention_reduction: int = 16) -> None:
        super().__init__()
        if len(patch_size) != 2:
            raise ValueError(f"foundation fusion is 2D, but the patch size is {list(patch_size)}; "
                             "train the '2d' configuration")
        n_levels = len(foundation.feature_channels)
        if not feature_levels or any(not 0 <= lvl < n_levels for lvl in feature_levels):
            raise ValueError(f"feature_levels {list(feature_levels)} must name levels 0..{n_levels - 1} "
                             "of the foundation encoder")
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.foundation = foundation
        self.feature_levels = tuple(feature_levels)

        sizes = skip_sizes(self.encoder, patch_size)
        input_size = foundation.spec.input_size
        self.fusion_stages = tuple(nearest_stage(sizes, input_size / foundation.feature_strides[lvl])
                                   for lvl in self.feature_levels)
        self.fusions = nn.ModuleList(
            SkipFusion(self.encoder.output_channels[stage], foundation.feature_channels[lvl], self.encoder,
                       lora_rank, attention_reduction)
            for lvl, stage in zip(self.feature_levels, self.fusion_stages, strict=True))
        for fusion in self.fusions:
            fusion.project.apply(InitWeights_He(1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = list(self.encoder(x))
        features = self.foundation(x)
        for level, stage, fusion in zip(self.feature_levels, self.fusion_stages, self.fusions, strict=True):
            skips[stage] = fusion(skips[stage], features[level])
        return self.decoder(skips)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """nnU-Net's activation-size estimate: the U-Net's, plus projection and gate outputs of each fusion.

        The frozen encoder runs under ``no_grad`` and keeps no activations for backward.
        """
        total = self.encoder.compute_conv_feature_map_size(input_size) + \
            self.decoder.compute_conv_feature_map_size(input_size)
        sizes = skip_sizes(self.encoder, input_size)
        for stage in self.fusion_stages:
            total += 2 * self.encoder.output_channels[stage] * np.prod(sizes[stage], dtype=np.int64)
        return np.int64(total)
