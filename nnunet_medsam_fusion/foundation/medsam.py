"""MedSAM: segment_anything's SAM ViT image encoder, frozen, fed [0, 1] grey images replicated to RGB.

The encoder is always built at its native image size so every parameter has the checkpoint's shape; only the
absolute position embedding is then resized to the requested input grid (the relative-position tables of
segment_anything resize themselves at run time in ``get_rel_pos``).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT
from torch import Tensor, nn

from .architectures import MEDSAM, VIT_PATCH_SIZE, VIT_SIZES, native_input_size
from .encoder import FoundationEncoder
from .spec import FoundationSpec


def build_vit_image_encoder(size: str) -> ImageEncoderViT:
    """SAM ViT image encoder at its native image size, randomly initialised."""
    hp = VIT_SIZES[size]
    return ImageEncoderViT(
        img_size=native_input_size(MEDSAM, size),
        patch_size=VIT_PATCH_SIZE,
        in_chans=3,
        embed_dim=hp.embed_dim,
        depth=hp.depth,
        num_heads=hp.num_heads,
        mlp_ratio=4.0,
        out_chans=hp.out_chans,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        act_layer=nn.GELU,
        use_abs_pos=True,
        use_rel_pos=True,
        rel_pos_zero_init=True,
        window_size=hp.window_size,
        global_attn_indexes=hp.global_attn_indexes,
    )


def resize_pos_embed(pos_embed: Tensor, grid: int) -> Tensor:
    """Bicubic resize of a (1, H, W, C) absolute position embedding to (1, grid, grid, C)."""
    if pos_embed.shape[1:3] == (grid, grid):
        return pos_embed
    channels_first = pos_embed.permute(0, 3, 1, 2).float()
    resized = F.interpolate(channels_first, size=(grid, grid), mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype).contiguous()


class MedSAMEncoder(FoundationEncoder):
    """Frozen SAM ViT image encoder; one 256-channel (out_chans) feature map at stride 16."""

    def __init__(self, spec: FoundationSpec) -> None:
        if spec.family != MEDSAM:
            raise ValueError(f"MedSAMEncoder needs a {MEDSAM!r} spec, got family {spec.family!r}.")
        image_encoder = build_vit_image_encoder(spec.size)
        grid = spec.input_size // VIT_PATCH_SIZE
        with torch.no_grad():
            image_encoder.pos_embed = nn.Parameter(resize_pos_embed(image_encoder.pos_embed, grid))
        image_encoder.img_size = spec.input_size
        out_chans = VIT_SIZES[spec.size].out_chans
        super().__init__(
            spec, image_encoder, feature_channels=(out_chans,), feature_strides=(VIT_PATCH_SIZE,)
        )

    def encode_images(self, images: Tensor) -> list[Tensor]:
        return [self.image_encoder(images)]

    def adapt_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Resize a native-size checkpoint's pos_embed to this encoder's input grid."""
        adapted = dict(state_dict)
        adapted["pos_embed"] = resize_pos_embed(
            state_dict["pos_embed"], self.spec.input_size // VIT_PATCH_SIZE
        )
        return adapted

    def checkpoint_shapes(self) -> dict[str, torch.Size]:
        """Key -> shape a native-size checkpoint must hold for this encoder (pos_embed at the native grid)."""
        shapes = {key: value.shape for key, value in self.image_encoder.state_dict().items()}
        native_grid = self.spec.native_input_size // VIT_PATCH_SIZE
        shapes["pos_embed"] = torch.Size((1, native_grid, native_grid, VIT_SIZES[self.spec.size].embed_dim))
        return shapes
