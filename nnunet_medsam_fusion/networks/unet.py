"""The classic 2D U-Net (Ronneberger et al., MICCAI 2015) as today's baseline papers use it.

Fixed topology, not nnU-Net's self-configured one: 4 down-samplings by 2x2 max pooling, 64 base channels
doubling to 1024, two 3x3 conv + BatchNorm + ReLU per level, 2x2 transposed-conv up-sampling, concatenated
skips, a 1x1 output conv, no deep supervision. Padded convolutions (the output has the input's size) and
BatchNorm are what current re-implementations use (e.g. milesial/Pytorch-UNet, 31.0M parameters for 2
classes); the 2015 paper had unpadded convolutions and no normalisation.

Built from dynamic_network_architectures' encoder and decoder (nnU-Net's own building blocks), so the
layers are nnU-Net's: ``PlainConvEncoder(pool='max')`` + ``UNetDecoder``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from nnunet_medsam_fusion.networks.padding import check_2d_input, pad_to, padded_size

FEATURES = (64, 128, 256, 512, 1024)
SIZE_MULTIPLE = 2 ** (len(FEATURES) - 1)  # four 2x2 poolings


class UNet(nn.Module):
    """Ronneberger's U-Net for any 2D patch size: inputs are padded to a multiple of 16 and cropped back."""

    size_multiple = SIZE_MULTIPLE

    def __init__(self, in_channels: int, num_classes: int, patch_size: Sequence[int] | None = None):
        super().__init__()
        self.encoder = PlainConvEncoder(
            in_channels, len(FEATURES), FEATURES, nn.Conv2d, 3, (1, 2, 2, 2, 2), 2, conv_bias=False,
            norm_op=nn.BatchNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.ReLU,
            nonlin_kwargs={"inplace": True}, return_skips=True, pool="max")
        self.decoder = UNetDecoder(self.encoder, num_classes, 2, deep_supervision=False)
        # UNetDecoder builds a 1x1 head per level for deep supervision; only the last is used here. Unused
        # parameters would get no gradient, which DistributedDataParallel refuses, so the others go.
        for level in range(len(self.decoder.seg_layers) - 1):
            self.decoder.seg_layers[level] = nn.Identity()
        self.apply(InitWeights_He(1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_2d_input(x, type(self).__name__)
        size = x.shape[-2:]
        logits = self.decoder(self.encoder(pad_to(x, padded_size(size, self.size_multiple))))
        return logits[..., : size[0], : size[1]]
