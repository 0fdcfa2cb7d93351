"""The fused network: nnU-Net's own 2D or 3D encoder-decoder with frozen 2D foundation features in its skips."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from nnunet_medsam_fusion.foundation.spec import no_depth_image_message
from nnunet_medsam_fusion.fusion.depth_cells import DepthPlan, depth_plan
from nnunet_medsam_fusion.fusion.skip_fusion import SkipFusion


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

    In 3D the frozen 2D encoder sees one image per depth cell of the finest fused stage, as the foundation's spec
    records (``depth_image``, ``cells_per_image``; ``depth_cells.py``); each fused stage's cells take the features
    of the images they overlap, in the skip of the stage whose in-plane grid matches theirs.

    Args (keyword-only):
        unet: the network nnU-Net builds from the plans (PlainConvUNet or ResidualEncoderUNet, 2D or 3D).
        foundation: frozen :class:`~nnunet_medsam_fusion.foundation.FoundationEncoder` (it reuses its own
            features at inference; this module holds nothing but its layers).
        patch_size: nnU-Net's patch size, which decides the stage each feature level goes to.
        feature_levels: which of the foundation's levels to fuse.
    """

    def __init__(self, *, unet: nn.Module, foundation: nn.Module, patch_size: Sequence[int],
                 feature_levels: Sequence[int], lora_rank: int = 8, attention_reduction: int = 16) -> None:
        super().__init__()
        if len(patch_size) not in (2, 3):
            raise ValueError(f"foundation fusion needs a 2D or 3D patch, got {list(patch_size)}")
        if len(patch_size) == 3 and foundation.spec.depth_image is None:
            raise ValueError(no_depth_image_message())
        n_levels = len(foundation.feature_channels)
        if not feature_levels or any(not 0 <= lvl < n_levels for lvl in feature_levels):
            raise ValueError(f"feature_levels {list(feature_levels)} must name levels 0..{n_levels - 1} "
                             "of the foundation encoder")
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.foundation = foundation
        self.feature_levels = tuple(feature_levels)

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
        plan = self.depth_plan(x.shape[2:])
        features = self.foundation(plan.images(x), self.feature_levels)
        for stage, fusion, feature, weights in zip(self.fusion_stages, self.fusions, features, plan.weights,
                                                   strict=True):
            skips[stage] = fusion(skips[stage], feature, weights.to(device=x.device))
        return self.decoder(skips)

    def depth_plan(self, spatial_size: Sequence[int]) -> DepthPlan:
        """3D: which images the encoder computes for a patch of ``spatial_size`` and how the fused stages' depth
        cells take their features."""
        stage_depths = [skip_sizes(self.encoder, spatial_size)[stage][0] for stage in self.fusion_stages]
        spec = self.foundation.spec
        return depth_plan(spatial_size[0], stage_depths, spec.depth_image, spec.cells_per_image)

    def encoder_images(self, x: torch.Tensor) -> torch.Tensor:
        """What the frozen 2D encoder sees of a batch: the batch itself in 2D, the depth plan's images in 3D."""
        return x if x.ndim == 4 else self.depth_plan(x.shape[2:]).images(x)
