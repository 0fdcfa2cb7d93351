"""The fused network: nnU-Net's own 2D encoder-decoder with frozen foundation features in its skips."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from nnunet_medsam_fusion.foundation.feature_cache import DEFAULT_BUDGET_BYTES, FeatureCache, weights_digest
from nnunet_medsam_fusion.foundation.precision import encoder_dtype
from nnunet_medsam_fusion.fusion.skip_fusion import SkipFusion

DIGEST_MEMO_SIZE = 8  # frozen-weight digests remembered per loaded state dict (one per fold of an ensemble)


def skip_sizes(encoder: nn.Module, patch_size: Sequence[int]) -> list[tuple[int, ...]]:
    """Spatial size of every encoder stage's output for an input patch, as nnU-Net's encoders compute it."""
    sizes, size = [], tuple(int(s) for s in patch_size)
    for stride in encoder.strides:
        size = tuple(s // st for s, st in zip(size, stride, strict=True))
        sizes.append(size)
    return sizes


def nearest_stage(stage_sizes: Sequence[Sequence[int]], feature_side: float) -> int:
    """Encoder stage whose resolution is closest (in octaves) to a feature map of side ``feature_side``.

    Ties go to the higher resolution (our rule). Example: a 512² patch and MedSAM's 64² map (1024 input) -> the
    stage at 64² (stage 3).
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
        feature_cache_bytes: budget of the inference-only cache that reuses the frozen encoder's features of a
            tile across the folds of an ensemble (``foundation/feature_cache.py``); 0 turns it off.

    The cache is used only by a network that was never put in training mode (``train()``), after its parameters
    were loaded with ``load_state_dict`` (what nnU-Net's predictor does for every fold), never while training.
    """

    def __init__(self, unet: nn.Module, foundation: nn.Module, patch_size: Sequence[int],
                 feature_levels: Sequence[int], lora_rank: int = 8, attention_reduction: int = 16,
                 feature_cache_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
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
        self.feature_cache = FeatureCache(feature_cache_bytes)
        self.has_trained = False
        self._digests: dict[tuple, tuple[bytes, list[torch.Tensor]]] = {}
        self._loading = False
        self.foundation.register_load_state_dict_post_hook(self._foundation_loaded)

    def _foundation_loaded(self, module: nn.Module, incompatible_keys) -> None:
        """Frozen weights loaded by another route than this network's load_state_dict: digest unknown."""
        if not self._loading:
            self.feature_cache.weights_loaded(None)

    def train(self, mode: bool = True) -> FoundationFusionUNet:
        """nn.Module's train(); a network that has trained once never caches features (inference only)."""
        if mode:
            self.has_trained = True
            self.feature_cache.clear()
            self._digests.clear()
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """nn.Module's load_state_dict, then tell the feature cache which frozen weights are now loaded."""
        self._loading = True
        try:
            result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        finally:
            self._loading = False
        self.feature_cache.weights_loaded(self.frozen_weights_digest(state_dict))
        return result

    def frozen_weights_digest(self, state_dict) -> bytes | None:
        """Digest of the state dict's ``foundation.*`` tensors; remembered per tensor object so that loading the
        same fold's parameters again (once per case) costs nothing. The memo holds the tensors, so their ids
        cannot be reused by other tensors, and checks their version counters against in-place changes."""
        named = [(key, value) for key, value in state_dict.items() if key.startswith("foundation.")]
        if not named or self.has_trained or self.feature_cache.budget_bytes <= 0:
            return None
        try:
            memo_key = tuple((key, id(value), value._version) for key, value in named)
        except RuntimeError:  # inference tensors have no version counter: no memo, hash every time
            memo_key = None
        if memo_key in self._digests:
            return self._digests[memo_key][0]
        digest = weights_digest(named)
        if memo_key is not None:
            if len(self._digests) >= DIGEST_MEMO_SIZE:
                self._digests.pop(next(iter(self._digests)))
            self._digests[memo_key] = (digest, [value for _, value in named])
        return digest

    def foundation_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The frozen encoder's features of ``x``, reused across folds at inference (see the class doc)."""
        if self.training or self.has_trained or self.feature_cache.weights is None:
            return self.foundation(x)
        return self._cached_foundation_features(x)

    @torch.compiler.disable
    def _cached_foundation_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        key = self.feature_cache.key(x, str(encoder_dtype(x.device)))
        features = self.feature_cache.lookup(key, x.device)
        if features is None:
            features = self.foundation(x)
            self.feature_cache.store(key, features)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = list(self.encoder(x))
        features = self.foundation_features(x)
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
