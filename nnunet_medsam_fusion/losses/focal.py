"""Focal loss and its combination with nnU-Net's soft Dice.

Vessels are under 5% of TOF-MRA voxels. Focal loss (Lin et al. 2017) down-weights the many easy background
voxels by ``(1 - p_t) ** gamma`` so that the thin, hard vessel borders dominate the gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Softmax focal loss for dense multi-class segmentation.

    ``FL = -alpha_t * (1 - p_t) ** gamma * log(p_t)``, averaged over the voxels that are not ``ignore_index``.
    With ``gamma=0`` and no ``alpha`` it is exactly the mean cross-entropy.

    Args:
        gamma: focusing exponent (0 disables focusing).
        alpha: one weight per class (``alpha_t`` is the weight of the voxel's true class); ``None`` means 1.
        ignore_index: label value whose voxels contribute nothing.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None,
                 ignore_index: int | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        if alpha is not None and any(a < 0 for a in alpha):
            raise ValueError(f"focal alpha weights must be >= 0, got {list(alpha)}")
        self.gamma = float(gamma)
        self.ignore_index = ignore_index
        self.register_buffer("alpha", None if alpha is None else torch.tensor(list(alpha), dtype=torch.float32),
                             persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits``: (B, C, *spatial); ``target``: class indices, (B, 1, *spatial) or (B, *spatial)."""
        if target.ndim == logits.ndim:
            target = target[:, 0]
        target = target.long()
        if self.alpha is not None and self.alpha.numel() != logits.shape[1]:
            raise ValueError(f"focal alpha has {self.alpha.numel()} weights but the network predicts "
                             f"{logits.shape[1]} classes; give one weight per class")
        valid = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None \
            else target != self.ignore_index
        target = torch.where(valid, target, 0)

        log_p = F.log_softmax(logits.float(), dim=1)
        log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -log_pt
        if self.gamma != 0:
            loss = loss * (1 - log_pt.exp()).clamp_min(0) ** self.gamma
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return (loss * valid).sum() / valid.sum().clamp_min(1)


class DiceFocalLoss(nn.Module):
    """``weight_dice * Dice + weight_focal * Focal``, with nnU-Net's ignore-label handling.

    ``dice`` is nnU-Net's own soft Dice module (taken from the trainer's default loss so that batch Dice,
    background exclusion, DDP and torch.compile stay exactly as nnU-Net configures them).
    """

    def __init__(self, dice: nn.Module, focal: FocalLoss, weight_dice: float = 1.0, weight_focal: float = 1.0,
                 ignore_label: int | None = None) -> None:
        super().__init__()
        self.dc = dice
        self.focal = focal
        self.weight_dice = weight_dice
        self.weight_focal = weight_focal
        self.ignore_label = ignore_label

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target``: (B, 1, *spatial) label map, as nnU-Net's data loader provides it."""
        mask = None
        target_dice = target
        if self.ignore_label is not None:
            mask = target != self.ignore_label
            target_dice = torch.where(mask, target, 0)
        dice = self.dc(net_output, target_dice, loss_mask=mask)
        return self.weight_dice * dice + self.weight_focal * self.focal(net_output, target)
