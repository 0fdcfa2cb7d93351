"""Swin-Unet (Cao et al., ECCV Workshops 2022) in its Swin-T configuration, for any 2D patch size.

Reference: github.com/HuCaoFighting/Swin-Unet, ``networks/swin_transformer_unet_skip_expand_decoder_sys.py``
(``SwinTransformerSys``) with ``configs/swin_tiny_patch4_window7_224_lite.yaml``. The encoder is timm's
Swin-T (patch 4, embedding 96, depths [2, 2, 2, 2], heads [3, 6, 12, 24], window 7, stochastic depth 0.2).
The decoder, written here as the reference builds it: patch expanding of the bottleneck, then per level a
skip concatenation, a linear back to the level's width, that encoder level's Swin blocks (depth 2 each: the
reference builds its up-layers with the *encoder* depths, its ``DECODER_DEPTHS`` setting is unused) and a
patch expanding; LayerNorm, a final 4x patch expanding and a 1x1 conv to the classes.

Skips are what the reference takes: each encoder level's input, i.e. the patch embedding and the outputs of
the patch mergings (in timm's layout a stage starts with its merging, so they are tapped inside each stage).

Patch sizes: the input is zero-padded to a multiple of 32 (patch 4 x three 2x merges) and the logits are
cropped back. Where a level's map is not a multiple of the window, timm's Swin blocks pad it to whole
windows; where it is smaller than the window, the window shrinks to the map and is not shifted (the Swin
rule). At the reference's 224 x 224 neither happens. docs/baselines.md discusses the choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.swin_transformer import SwinTransformerStage
from torch import nn

from nnunet_medsam_fusion.networks.padding import FixedPatchTransformer

EMBED_DIM = 96
DEPTHS = (2, 2, 2, 2)
NUM_HEADS = (3, 6, 12, 24)
WINDOW_SIZE = 7
PATCH_SIZE = 4
DROP_PATH_RATE = 0.2
SIZE_MULTIPLE = PATCH_SIZE * 2 ** (len(DEPTHS) - 1)


class PatchExpand(nn.Module):
    """Swin-Unet's up-sampling on (B, H, W, C) maps: a bias-free linear to ``scale**2 * C_out`` channels,
    rearranged into a ``scale``-times larger map, then LayerNorm. ``scale`` 2 halves the width (C_out = C/2);
    the final ``scale`` 4 keeps it."""

    def __init__(self, dim: int, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.out_dim = dim // 2 if scale == 2 else dim
        self.expand = nn.Linear(dim, scale * scale * self.out_dim, bias=False)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        s = self.scale
        # channel index = (row offset, column offset, channel), as the reference's einops pattern
        # 'b h w (p1 p2 c) -> b (h p1) (w p2) c'
        x = self.expand(x).reshape(b, h, w, s, s, self.out_dim).permute(0, 1, 3, 2, 4, 5)
        return self.norm(x.reshape(b, h * s, w * s, self.out_dim))


class DecoderLevel(nn.Module):
    """One up-layer of Swin-Unet's decoder: Swin blocks at the level's width, then an optional PatchExpand."""

    def __init__(self, blocks: nn.Module, upsample: nn.Module | None):
        super().__init__()
        self.blocks = blocks
        self.upsample = upsample if upsample is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.blocks(x))


class SwinUNet(FixedPatchTransformer):
    """Swin-Unet (Swin-T). One input channel is repeated to three, as the reference does."""

    size_multiple = SIZE_MULTIPLE
    fixed_by = "window sizes and attention masks follow it"

    def __init__(self, in_channels: int, num_classes: int, patch_size: Sequence[int]):
        super().__init__(in_channels, patch_size)
        self.patch_embed = PatchEmbed(self.padded_size, PATCH_SIZE, self.image_channels,
                                      EMBED_DIM, norm_layer=nn.LayerNorm, output_fmt="NHWC")
        grid = self.patch_embed.grid_size
        widths = [EMBED_DIM * 2**i for i in range(len(DEPTHS))]
        resolutions = [(grid[0] // 2**i, grid[1] // 2**i) for i in range(len(DEPTHS))]
        rates = [DROP_PATH_RATE * i / (sum(DEPTHS) - 1) for i in range(sum(DEPTHS))]  # the reference's linspace
        drop_path = [rates[sum(DEPTHS[:i]):sum(DEPTHS[:i + 1])] for i in range(len(DEPTHS))]

        def swin_stage(level: int, downsample: bool) -> SwinTransformerStage:
            previous = widths[level - 1] if downsample else widths[level]
            before = resolutions[level - 1] if downsample else resolutions[level]
            return SwinTransformerStage(previous, widths[level], before, DEPTHS[level], downsample=downsample,
                                        num_heads=NUM_HEADS[level], window_size=WINDOW_SIZE,
                                        drop_path=drop_path[level])

        # Encoder: timm's stages (stage i > 0 starts with the patch merging that ends the reference's layer i-1)
        self.layers = nn.ModuleList(swin_stage(level, downsample=level > 0) for level in range(len(DEPTHS)))
        self.norm = nn.LayerNorm(widths[-1])
        # Decoder, named as the reference: layers_up[0] expands the bottleneck; layers_up[k] (k >= 1) works at
        # encoder level 3 - k with that level's blocks, after concat_back_dim[k] maps the skip concat back.
        self.layers_up = nn.ModuleList([PatchExpand(widths[-1])])
        self.concat_back_dim = nn.ModuleList([nn.Identity()])
        for level in reversed(range(len(DEPTHS) - 1)):
            blocks = swin_stage(level, downsample=False).blocks
            upsample = PatchExpand(widths[level]) if level > 0 else None
            self.layers_up.append(DecoderLevel(blocks, upsample))
            self.concat_back_dim.append(nn.Linear(2 * widths[level], widths[level]))
        self.norm_up = nn.LayerNorm(EMBED_DIM)
        self.up = PatchExpand(EMBED_DIM, scale=PATCH_SIZE)
        self.output = nn.Conv2d(EMBED_DIM, num_classes, kernel_size=1, bias=False)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.prepare_input(x)
        x = self.patch_embed(x)  # (B, H/4, W/4, 96)
        skips = []
        for stage in self.layers:
            x = stage.downsample(x)
            skips.append(x)
            x = stage.blocks(x)
        x = self.layers_up[0](self.norm(x))
        for k in range(1, len(self.layers_up)):
            x = torch.cat([x, skips[len(self.layers) - 1 - k]], dim=-1)
            x = self.layers_up[k](self.concat_back_dim[k](x))
        x = self.up(self.norm_up(x)).permute(0, 3, 1, 2)
        return self.output(x)[..., : size[0], : size[1]]


def _init_weights(module: nn.Module) -> None:
    """The reference's initialisation: truncated-normal linears (std 0.02, zero bias), unit LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
