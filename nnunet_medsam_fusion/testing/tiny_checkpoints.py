"""Tiny checkpoint files in the official layouts, for tests and CPU demos (no weights can be downloaded).

The whole model of the real classes is built at a tiny size (segment_anything ``Sam``, sam2 ``SAM2Base``) so
the files carry exactly the keys a published checkpoint has, prompt/mask-decoder and memory keys included.
Every parameter is perturbed with seeded noise so that a loader which silently loads nothing is caught.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nnunet_medsam_fusion.foundation.architectures import (
    BOWANG_MEDSAM2,
    HIERA_SIZES,
    MEDICAL_SAM2,
    MEDSAM,
    VIT_PATCH_SIZE,
    VIT_SIZES,
)
from nnunet_medsam_fusion.foundation.spec import FoundationSpec

MEDSAM_LAYOUTS = ("medsam", "sam", "medsam_training")


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model reproducibly (same seed, same weights) without touching the caller's random state.

    Seeded noise is then added to every parameter, so zero-initialised tables (position embeddings) differ
    from a fresh build too.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.05 * torch.randn(parameter.shape))
    return model.eval()


def tiny_sam(seed: int = 0) -> nn.Module:
    """A tiny segment_anything ``Sam`` whose image encoder matches FoundationSpec('medsam', 'tiny', 64)."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from nnunet_medsam_fusion.foundation.medsam import build_vit_image_encoder

    spec = FoundationSpec(MEDSAM, "tiny", 64)
    width = VIT_SIZES["tiny"].out_chans
    grid = spec.input_size // VIT_PATCH_SIZE
    return _seeded(
        lambda: Sam(
            image_encoder=build_vit_image_encoder("tiny"),
            prompt_encoder=PromptEncoder(
                embed_dim=width, image_embedding_size=(grid, grid), input_image_size=(64, 64), mask_in_chans=4
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=1, embedding_dim=width, mlp_dim=64, num_heads=2),
                transformer_dim=width,
                iou_head_depth=2,
                iou_head_hidden_dim=16,
            ),
        ),
        seed,
    )


def write_tiny_medsam_checkpoint(path: str | Path, layout: str = "medsam", seed: int = 0) -> FoundationSpec:
    """Write a tiny random SAM/MedSAM checkpoint and return the spec that loads it.

    Layouts: "medsam" (medsam_vit_b.pth: a plain ``Sam`` state dict), "sam" (sam_vit_b_01ec64.pth: the same
    plain layout, from the SAM release), "medsam_training" (MedSAM's training checkpoint:
    {"model": state_dict, "optimizer": ..., "epoch": ...}).
    """
    if layout not in MEDSAM_LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; choose one of {', '.join(MEDSAM_LAYOUTS)}.")
    sam = tiny_sam(seed)
    state_dict = sam.state_dict()
    if layout == "medsam_training":
        optimizer = torch.optim.AdamW(sam.mask_decoder.parameters(), lr=1e-4)
        payload = {"model": state_dict, "optimizer": optimizer.state_dict(), "epoch": 0}
    else:
        payload = state_dict
    torch.save(payload, Path(path))
    return FoundationSpec(MEDSAM, "tiny", 64)


def tiny_sam2(family: str = MEDICAL_SAM2, seed: int = 0) -> nn.Module:
    """A tiny sam2 ``SAM2Base`` (SAM2.0 flags for medical_sam2, SAM2.1 flags for bowang_medsam2)."""
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.modeling.sam2_base import SAM2Base

    from nnunet_medsam_fusion.foundation.medsam2 import build_sam2_image_encoder

    if family not in (MEDICAL_SAM2, BOWANG_MEDSAM2):
        raise ValueError(f"Unknown MedSAM2 family {family!r}; choose {MEDICAL_SAM2!r} or {BOWANG_MEDSAM2!r}.")
    sam21 = family == BOWANG_MEDSAM2
    d_model, mem_dim, image_size = HIERA_SIZES["tiny"].d_model, 16, 64
    feat_sizes = (image_size // 16, image_size // 16)

    def build() -> nn.Module:
        layer = MemoryAttentionLayer(
            activation="relu",
            cross_attention=RoPEAttention(
                embedding_dim=d_model,
                num_heads=1,
                downsample_rate=1,
                dropout=0.1,
                kv_in_dim=mem_dim,
                feat_sizes=feat_sizes,
                rope_k_repeat=True,
            ),
            d_model=d_model,
            dim_feedforward=64,
            dropout=0.1,
            pos_enc_at_attn=False,
            pos_enc_at_cross_attn_keys=True,
            pos_enc_at_cross_attn_queries=False,
            self_attention=RoPEAttention(
                embedding_dim=d_model, num_heads=1, downsample_rate=1, dropout=0.1, feat_sizes=feat_sizes
            ),
        )
        memory_encoder = MemoryEncoder(
            out_dim=mem_dim,
            mask_downsampler=MaskDownSampler(embed_dim=d_model, kernel_size=3, stride=2, padding=1),
            fuser=Fuser(
                CXBlock(dim=d_model, kernel_size=7, padding=3, layer_scale_init_value=1e-6), num_layers=1
            ),
            position_encoding=PositionEmbeddingSine(num_pos_feats=mem_dim, warmup_cache=False),
            in_dim=d_model,
        )
        return SAM2Base(
            image_encoder=build_sam2_image_encoder("tiny"),
            memory_attention=MemoryAttention(
                d_model=d_model, pos_enc_at_input=True, layer=layer, num_layers=1
            ),
            memory_encoder=memory_encoder,
            image_size=image_size,
            use_high_res_features_in_sam=True,
            multimask_output_in_sam=True,
            iou_prediction_use_sigmoid=True,
            use_obj_ptrs_in_encoder=True,
            add_tpos_enc_to_obj_ptrs=sam21,
            proj_tpos_enc_in_obj_ptrs=sam21,
            use_signed_tpos_enc_to_obj_ptrs=sam21,
            pred_obj_scores=True,
            pred_obj_scores_mlp=True,
            fixed_no_obj_ptr=True,
            use_mlp_for_obj_ptr_proj=True,
            no_obj_embed_spatial=sam21,
        )

    return _seeded(build, seed)


def write_tiny_medsam2_checkpoint(
    path: str | Path, family: str = MEDICAL_SAM2, seed: int = 0
) -> FoundationSpec:
    """Write a tiny random MedSAM2 checkpoint ({"model": state_dict}, as sam2 ships) and return its spec."""
    model = tiny_sam2(family, seed)
    torch.save({"model": model.state_dict()}, Path(path))
    return FoundationSpec(family, "tiny", 64)
