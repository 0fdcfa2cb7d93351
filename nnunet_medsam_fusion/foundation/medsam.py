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
from segment_anything.modeling.image_encoder import Attention, add_decomposed_rel_pos
from torch import Tensor, nn

from .architectures import MEDSAM, VIT_PATCH_SIZE, VIT_SIZES, native_input_size
from .encoder import FoundationEncoder
from .spec import FoundationSpec


class SDPAAttention(Attention):
    """segment_anything's ViT attention computed by ``F.scaled_dot_product_attention``.

    segment_anything 1.0 materialises the softmax of ``q @ k^T`` explicitly. Here the decomposed relative-position
    bias is passed as ``attn_mask`` instead, so PyTorch picks a fused kernel (flash / memory-efficient on CUDA,
    a fused CPU kernel elsewhere). Parameters and their names are those of ``Attention``, so checkpoints load
    unchanged; the result equals the original within float tolerance.
    """

    def forward(self, x: Tensor) -> Tensor:
        batch, height, width, _ = x.shape
        tokens = height * width
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, H*W, head_dim)
        bias = self.relative_position_bias(q, height, width) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.view(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(batch, height, width, -1))

    def relative_position_bias(self, q: Tensor, height: int, width: int) -> Tensor:
        """The additive (B, heads, H*W, H*W) bias: segment_anything's ``add_decomposed_rel_pos`` on a zero map."""
        tokens = height * width
        flat_q = q.reshape(-1, tokens, q.shape[-1])
        zero = flat_q.new_zeros(flat_q.shape[0], tokens, tokens)
        bias = add_decomposed_rel_pos(zero, flat_q, self.rel_pos_h.to(q.dtype), self.rel_pos_w.to(q.dtype),
                                      (height, width), (height, width))
        return bias.view(*q.shape[:2], tokens, tokens)


def use_sdpa_attention(image_encoder: ImageEncoderViT) -> ImageEncoderViT:
    """Swap every block's ``Attention`` for an :class:`SDPAAttention` holding the same parameters."""
    for block in image_encoder.blocks:
        original = block.attn
        input_size = None
        if original.use_rel_pos:  # the tables hold 2 * size - 1 relative offsets
            input_size = ((original.rel_pos_h.shape[0] + 1) // 2, (original.rel_pos_w.shape[0] + 1) // 2)
        replacement = SDPAAttention(
            dim=original.qkv.in_features,
            num_heads=original.num_heads,
            qkv_bias=original.qkv.bias is not None,
            use_rel_pos=original.use_rel_pos,
            input_size=input_size,
        )
        replacement.load_state_dict(original.state_dict())
        block.attn = replacement
    return image_encoder


def build_vit_image_encoder(size: str, sdpa: bool = True) -> ImageEncoderViT:
    """SAM ViT image encoder at its native image size, randomly initialised.

    ``sdpa`` (default) computes attention with :class:`SDPAAttention`; False keeps segment_anything's own.
    """
    hp = VIT_SIZES[size]
    image_encoder = ImageEncoderViT(
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
    return use_sdpa_attention(image_encoder) if sdpa else image_encoder


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

    def bytes_per_image(self, dtype: torch.dtype | None) -> int:
        """Peak activations of one image, dominated by the global-attention blocks at T = (input/16)² tokens.

        A global block holds the relative-position bias (heads x T² values, passed to SDPA as ``attn_mask``)
        plus up to three T² temporaries while it is built and while attention without a fused kernel runs:
        4 x heads x T² values; the token activations add about 16 x T x embed_dim. ViT-B at 1024 in bf16:
        T = 4096, the bias alone is 12 x 4096² x 2 B = 403 MB per image (4.8 GB for a batch of 12), the
        estimate 1.7 GB per image.
        """
        hp = VIT_SIZES[self.spec.size]
        tokens = (self.spec.input_size // VIT_PATCH_SIZE) ** 2
        item = 4 if dtype is None else torch.finfo(dtype).bits // 8
        return item * (4 * hp.num_heads * tokens**2 + 16 * tokens * hp.embed_dim)

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
