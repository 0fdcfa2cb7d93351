"""The fused network: nnU-Net's own 2D or 3D encoder-decoder with frozen 2D foundation features in its skips."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from nnunet_medsam_fusion.fusion.skip_fusion import SkipFusion
from nnunet_medsam_fusion.fusion.slices import depth_weights, slice_positions


def skip_sizes(encoder: nn.Module, patch_size: Sequence[int]) -> list[tuple[int, ...]]:
    """Spatial size of every encoder stage's output for an input patch, as nnU-Net's encoders compute it."""
    sizes, size = [], tuple(int(s) for s in patch_size)
    for stride in encoder.strides:
        stride = (stride,) * len(size) if isinstance(stride, int) else stride
        size = tuple(s // st for s, st in zip(size, stride, strict=True))
        sizes.append(size)
    return sizes


def nearest_stage(stage_sizes: Sequence[Sequence[int]], grid: Sequence[int]) -> int:
    """Encoder stage whose grid is closest to a feature grid: least summed |octave| difference over the axes.

    Ties go to the higher resolution (our rule). Example: a 512 x 256 patch and MedSAM's 64 x 32 map (1024 input)
    -> the stage at 64 x 32 (stage 3).
    """
    def octaves(size: Sequence[int]) -> float:
        return sum(abs(math.log2(s / g)) for s, g in zip(size, grid, strict=True))

    return min(range(len(stage_sizes)), key=lambda k: (octaves(stage_sizes[k]), k))


class FoundationFusionUNet(nn.Module):
    """nnU-Net's encoder and decoder, with foundation features fused into chosen encoder skips.

    ``forward``: ``skips = encoder(x)``; for each fused level, ``skips[stage] = SkipFusion(skips[stage],
    foundation(x)[level])``; ``decoder(skips)``. Widths never change, so nnU-Net's decoder, deep
    supervision and ``set_deep_supervision_enabled`` (``network.decoder.deep_supervision``) work as in
    nnU-Net, and the ``encoder.*``/``decoder.*`` weights have nnU-Net's names.

    In 3D the frozen 2D encoder sees the slices along the patch's first axis (every ``slice_step``-th, see
    ``slices.py``); each level's slice features are stacked and interpolated to the skip grid of the stage whose
    in-plane grid matches theirs.

    Args:
        unet: the network nnU-Net builds from the plans (PlainConvUNet or ResidualEncoderUNet, 2D or 3D).
        foundation: frozen :class:`~nnunet_medsam_fusion.foundation.FoundationEncoder` (it reuses its own
            features at inference; this module holds nothing but its layers).
        patch_size: nnU-Net's patch size, which decides the stage each feature level goes to.
        feature_levels: which of the foundation's levels to fuse.
        slice_step: 3D only: encode about every ``slice_step``-th slice.
    """

    def __init__(self, unet: nn.Module, foundation: nn.Module, patch_size: Sequence[int],
                 feature_levels: Sequence[int], lora_rank: int = 8, attention_reduction: int = 16,
                 slice_step: int = 1) -> None:
        super().__init__()
        if len(patch_size) not in (2, 3):
            raise ValueError(f"foundation fusion needs a 2D or 3D patch, got {list(patch_size)}")
        n_levels = len(foundation.feature_channels)
        if not feature_levels or any(not 0 <= lvl < n_levels for lvl in feature_levels):
            raise ValueError(f"feature_levels {list(feature_levels)} must name levels 0..{n_levels - 1} "
                             "of the foundation encoder")
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.foundation = foundation
        self.feature_levels = tuple(feature_levels)
        self.slice_step = int(slice_step)

        sizes = skip_sizes(self.encoder, patch_size)
        grids = foundation.feature_grids(*patch_size[-2:])
        in_plane = [size[-2:] for size in sizes]
        self.fusion_stages = tuple(nearest_stage(in_plane, grids[lvl]) for lvl in self.feature_levels)
        self.fusions = nn.ModuleList(
            SkipFusion(self.encoder.output_channels[stage], foundation.feature_channels[lvl], self.encoder,
                       lora_rank, attention_reduction)
            for lvl, stage in zip(self.feature_levels, self.fusion_stages, strict=True))
        for fusion in self.fusions:
            fusion.project.apply(InitWeights_He(1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = list(self.encoder(x))
        if x.ndim == 4:
            features = self.foundation(x, self.feature_levels)
            for stage, fusion, feature in zip(self.fusion_stages, self.fusions, features, strict=True):
                skips[stage] = fusion(skips[stage], feature)
            return self.decoder(skips)
        depth = x.shape[2]
        positions = slice_positions(depth, self.slice_step)
        features = self.foundation(self.encoded_slices(x, positions), self.feature_levels)
        for stage, fusion, feature in zip(self.fusion_stages, self.fusions, features, strict=True):
            weights = depth_weights(positions, depth, skips[stage].shape[2], device=x.device)
            skips[stage] = fusion(skips[stage], feature, weights)
        return self.decoder(skips)

    def encoded_slices(self, x: torch.Tensor, positions: list[int] | None = None) -> torch.Tensor:
        """What the frozen 2D encoder sees of a batch: the batch itself in 2D; in 3D its slices at ``positions``
        (default: those ``slice_step`` chooses), (B * n, C, H, W), batch-major."""
        if x.ndim == 4:
            return x
        positions = slice_positions(x.shape[2], self.slice_step) if positions is None else positions
        return x[:, :, positions].transpose(1, 2).reshape(-1, x.shape[1], *x.shape[3:])

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
