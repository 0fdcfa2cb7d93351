"""Any nnU-Net patch size for fixed-stride networks: pad the input inside the network, crop the output back.

nnU-Net plans patch sizes that are multiples of its own pooling factors; the baselines have fixed strides
(U-Net and TransUNet reduce by 16, Swin-Unet by 32). Padding (zeros, bottom/right, our choice) happens inside
``forward`` so the user never edits plans, and the logits are cropped back to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def padded_size(size: Sequence[int], multiple: int) -> tuple[int, ...]:
    """Each side rounded up to a multiple of ``multiple``."""
    return tuple(-(-int(s) // multiple) * multiple for s in size)


def pad_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad the last two dimensions of ``x`` at the bottom/right up to ``size``."""
    extra_h, extra_w = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if extra_h < 0 or extra_w < 0:
        raise ValueError(f"Cannot pad a {tuple(x.shape[-2:])} map to the smaller {tuple(size)}.")
    return F.pad(x, (0, extra_w, 0, extra_h)) if extra_h or extra_w else x


def check_2d_input(x: torch.Tensor, network: str) -> None:
    """A clear error for anything but (batch, channels, height, width)."""
    if x.ndim != 4:
        raise ValueError(f"{network} is a 2D network and takes (batch, channels, height, width) input; got a "
                         f"{x.ndim}D tensor of shape {tuple(x.shape)}. Train nnU-Net's '2d' configuration.")


class FixedPatchTransformer(nn.Module):
    """Base of the transformer baselines: built for one padded patch size, grey input repeated to RGB.

    Their attention windows or position embeddings are fixed when the network is built, so the input must have
    the plans' patch size; ``prepare_input`` checks that, pads and repeats one channel to three as the
    reference implementations do. Subclasses set ``size_multiple`` and ``fixed_by`` (what fixes the size).
    """

    size_multiple: int = 1
    fixed_by: str = ""

    def __init__(self, in_channels: int, patch_size: Sequence[int]) -> None:
        super().__init__()
        if len(patch_size) != 2:
            raise ValueError(f"{type(self).__name__} is 2D; got patch size {list(patch_size)}. Train the '2d' "
                             "configuration.")
        self.patch_size = tuple(int(s) for s in patch_size)
        self.padded_size = padded_size(self.patch_size, self.size_multiple)
        self.repeat_to_rgb = in_channels == 1
        self.image_channels = 3 if self.repeat_to_rgb else in_channels

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded to the built size, one channel repeated to three; a clear error for another size."""
        check_2d_input(x, type(self).__name__)
        size = tuple(x.shape[-2:])
        if padded_size(size, self.size_multiple) != self.padded_size:
            raise ValueError(f"{type(self).__name__} was built for {self.patch_size} patches ({self.fixed_by}); "
                             f"got a {size} input. nnU-Net predicts with the plans' patch size; build the network "
                             "for the size you feed it.")
        x = pad_to(x, self.padded_size)
        return x.repeat(1, 3, 1, 1) if self.repeat_to_rgb else x
