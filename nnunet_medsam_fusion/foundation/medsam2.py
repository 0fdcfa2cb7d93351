"""MedSAM2: the SAM2 Hiera trunk + FPN neck image encoder, built directly (no Hydra, no sam2.build_sam).

Hyper-parameters are those of the configs shipped with the sam2 package (``configs/sam2/sam2_hiera_t.yaml``,
``sam2_hiera_s.yaml``, ``configs/sam2.1/sam2.1_hiera_t.yaml``; the image-encoder part of 2.0 and 2.1 is the
same). Hiera interpolates its own position embedding, so one build serves every input side that is a
multiple of 32.
"""

from __future__ import annotations

import torch
from sam2.modeling.backbones.hieradet import Hiera
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
from sam2.modeling.position_encoding import PositionEmbeddingSine
from torch import Tensor

from .architectures import HIERA_SIZES, MEDSAM, SAM2_FEATURE_STRIDES
from .encoder import FoundationEncoder
from .spec import FoundationSpec


def build_sam2_image_encoder(size: str) -> ImageEncoder:
    """SAM2 image encoder (Hiera trunk + FpnNeck, scalp=1), randomly initialised, on the CPU."""
    hp = HIERA_SIZES[size]
    trunk = Hiera(
        embed_dim=hp.embed_dim,
        num_heads=hp.num_heads,
        stages=hp.stages,
        global_att_blocks=hp.global_att_blocks,
        window_spec=hp.window_spec,
        window_pos_embed_bkg_spatial_size=hp.window_pos_embed_bkg_spatial_size,
    )
    # warmup_cache=False: else the sine embedding allocates CUDA tensors at construction when CUDA exists.
    position_encoding = PositionEmbeddingSine(
        num_pos_feats=hp.d_model, normalize=True, scale=None, temperature=10000, warmup_cache=False
    )
    neck = FpnNeck(
        position_encoding=position_encoding,
        d_model=hp.d_model,
        backbone_channel_list=hp.backbone_channel_list,
        fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
    )
    return ImageEncoder(trunk=trunk, neck=neck, scalp=1)


class MedSAM2Encoder(FoundationEncoder):
    """Frozen SAM2 image encoder; three d_model-channel maps at strides 4, 8, 16 (backbone_fpn order)."""

    def __init__(self, spec: FoundationSpec) -> None:
        if spec.family == MEDSAM:
            raise ValueError(
                "MedSAM2Encoder needs a SAM2 family spec (medical_sam2 or bowang_medsam2), got 'medsam'."
            )
        d_model = HIERA_SIZES[spec.size].d_model
        super().__init__(
            spec,
            build_sam2_image_encoder(spec.size),
            feature_channels=(d_model,) * len(SAM2_FEATURE_STRIDES),
            feature_strides=SAM2_FEATURE_STRIDES,
        )

    def encode_images(self, images: Tensor) -> list[Tensor]:
        return list(self.image_encoder(images)["backbone_fpn"])

    def bytes_per_image(self, dtype: torch.dtype | None) -> int:
        """Peak activations of one image: the stride-4 tokens of the first stage (about 16 x T1 x embed_dim,
        T1 = (input/4)²), the FPN maps (4 x T1 x d_model) and, conservatively, two explicit attention matrices
        of the global blocks at stride 16 (heads double at each of the two stage shifts before them)."""
        hp = HIERA_SIZES[self.spec.size]
        tokens = (self.spec.input_size // 4) ** 2
        global_tokens = (self.spec.input_size // 16) ** 2
        item = 4 if dtype is None else torch.finfo(dtype).bits // 8
        return item * (16 * tokens * hp.embed_dim + 4 * tokens * hp.d_model
                       + 2 * 4 * hp.num_heads * global_tokens**2)
