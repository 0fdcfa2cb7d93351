"""Any nnU-Net patch size for fixed-stride networks: pad the input inside the network, crop the output back.

nnU-Net plans patch sizes that are multiples of its own pooling factors; the baselines have fixed strides
(U-Net and TransUNet reduce by 16, Swin-Unet by 32). Padding (zeros, bottom/right, our choice) happens inside
``forward`` so the user never edits plans, and the logits are cropped back to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


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
