"""TransUNet (Chen et al., arXiv:2102.04306, 2021), R50-ViT-B/16 with three CNN skips, for any 2D patch size.

Reference: github.com/Beckschen/TransUNet, ``networks/vit_seg_modeling.py`` and
``vit_seg_modeling_resnet_skip.py`` (config ``R50-ViT-B_16``, ``n_skip=3``). The encoder is timm's:
``ResNetV2`` (weight-standardised convs, GroupNorm(32), post-activation bottlenecks, blocks (3, 4, 9): the
ResNet-50 truncated to stride 16, as in ViT-hybrid) feeding a 1x1 patch embedding and 12 ViT-B blocks (768
wide, 12 heads, MLP 3072, no class token). It is configured as TransUNet configures its own copy, which differs
from timm's ``vit_base_r50_s16_224`` in small ways: StdConv eps 1e-5 and GroupNorm eps 1e-6, a stem max pool
without padding whose 1/4 skip is zero-padded back to size, per-channel GroupNorm on the projection shortcuts,
dropout 0.1 after the position embedding and in the MLPs but not after the attention projection.

The cascaded up-sampler is written here: 3x3 conv 768 -> 512, then four (bilinear x2 up-sampling with aligned
corners, concatenation with the 1/8, 1/4, 1/2 ResNet features for the first three, two 3x3 conv + BN + ReLU)
blocks to 256, 128, 64, 16 channels, and a 3x3 conv to the classes.

Patch sizes: the input is zero-padded to a multiple of 16 and the logits cropped back; the position
embedding has one entry per 16 x 16 patch of the (padded) plans' patch size (pretrained embeddings are
interpolated to it, see :mod:`.pretrained`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import GroupNormAct, StdConv2d
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from nnunet_medsam_fusion.networks.padding import FixedPatchTransformer, pad_to

RESNET_LAYERS = (3, 4, 9)
HIDDEN = 768
VIT_DEPTH = 12
VIT_HEADS = 12
MLP_DIM = 3072
DROPOUT = 0.1
HEAD_CHANNELS = 512
DECODER_CHANNELS = (256, 128, 64, 16)
SKIP_CHANNELS = (512, 256, 64, 0)  # n_skip = 3: the 1/8, 1/4 and 1/2 features; none at full resolution
SIZE_MULTIPLE = 16


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """TransUNet's ``Conv2dReLU``: 3x3 conv without bias, BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Bilinear x2 up-sampling (aligned corners), optional skip concatenation, two conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int):
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class TransUNet(FixedPatchTransformer):
    """TransUNet R50-ViT-B/16. One input channel is repeated to three, as the reference does."""

    size_multiple = SIZE_MULTIPLE
    fixed_by = "its position embedding has one token per 16x16 pixels"

    def __init__(self, in_channels: int, num_classes: int, patch_size: Sequence[int]):
        super().__init__(in_channels, patch_size)
        self.grid_size = tuple(s // SIZE_MULTIPLE for s in self.padded_size)
        self.resnet = ResNetV2(
            RESNET_LAYERS, num_classes=0, global_pool="", in_chans=self.image_channels,
            preact=False, stem_type="", conv_layer=partial(StdConv2d, eps=1e-5),
            norm_layer=partial(GroupNormAct, num_groups=32, eps=1e-6))
        self.resnet.stem.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0)
        for stage in self.resnet.stages:  # TransUNet's projection shortcuts: GroupNorm with one group per channel
            shortcut = stage.blocks[0].downsample
            shortcut.norm = nn.GroupNorm(shortcut.conv.out_channels, shortcut.conv.out_channels)
        self.vit = VisionTransformer(
            img_size=self.grid_size, patch_size=1, in_chans=self.resnet.num_features, num_classes=0,
            global_pool="", embed_dim=HIDDEN, depth=VIT_DEPTH, num_heads=VIT_HEADS, mlp_ratio=MLP_DIM / HIDDEN,
            qkv_bias=True, class_token=False, pos_drop_rate=DROPOUT, proj_drop_rate=DROPOUT, attn_drop_rate=0.0,
            norm_layer=partial(nn.LayerNorm, eps=1e-6))
        for block in self.vit.blocks:  # TransUNet has no dropout after the attention projection
            block.attn.proj_drop = nn.Identity()
        self.conv_more = conv_bn_relu(HIDDEN, HEAD_CHANNELS)
        inputs = (HEAD_CHANNELS, *DECODER_CHANNELS[:-1])
        self.decoder = nn.ModuleList(DecoderBlock(i, o, s) for i, o, s in zip(inputs, DECODER_CHANNELS,
                                                                                SKIP_CHANNELS, strict=True))
        self.segmentation_head = nn.Conv2d(DECODER_CHANNELS[-1], num_classes, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.prepare_input(x)
        skips = self.resnet_features(x)
        tokens = self.vit.forward_features(skips[0])  # (B, tokens, 768), after the final LayerNorm
        x = tokens.transpose(1, 2).reshape(tokens.shape[0], HIDDEN, *self.grid_size)
        x = self.conv_more(x)
        for block, skip in zip(self.decoder, (*skips[1:], None), strict=True):
            x = block(x, skip)
        return self.segmentation_head(x)[..., : size[0], : size[1]]

    def resnet_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ResNet outputs at 1/16, 1/8, 1/4 (zero-padded back to size after the unpadded max pool), 1/2."""
        h, w = x.shape[-2:]
        stem = self.resnet.stem
        half = stem.norm(stem.conv(x))
        quarter = self.resnet.stages[0](stem.pool(half))
        eighth = self.resnet.stages[1](quarter)
        sixteenth = self.resnet.stages[2](eighth)
        return [sixteenth, pad_to(eighth, (h // 8, w // 8)), pad_to(quarter, (h // 4, w // 4)), half]
