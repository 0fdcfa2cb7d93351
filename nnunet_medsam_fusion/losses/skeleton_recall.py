"""Skeleton Recall loss (Kirchhoff et al., ECCV 2024): a soft-recall term on the tubed skeleton of the label.

Overlap losses forgive a missing thin vessel segment, because it holds few voxels; the recall of the label's
centreline tube does not, so the term pushes the network to keep the vessel tree connected. The tube is made on the
CPU by the data pipeline (:mod:`nnunet_medsam_fusion.losses.skeleton_target`), so the loss itself is a cheap sum.

``loss = base(output, label) + weight * (1 - soft recall of the tube)``, with ``base`` the trainer's own loss
(nnU-Net's Dice + CE, or our Dice + focal) and ``weight`` 1 as in the paper's code (``weight_srec = 1``). The paper's
code returns ``-recall``; ``1 - recall`` (ours) differs by a constant, so the gradients are the same and the term
reads as a loss in [0, 1].
"""

from __future__ import annotations

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.utilities.ddp_allgather import AllGatherGrad
from torch import nn

from nnunet_medsam_fusion.losses.skeleton_target import split_target

SKELETON_RECALL_WEIGHT = 1.0  # the paper's code default (weight_srec = 1)


class SoftSkeletonRecallLoss(nn.Module):
    """``1 - mean_c (sum p_c * T_c + smooth) / (sum T_c + smooth)`` over the foreground classes ``c``.

    ``p_c`` is the softmax probability of class ``c`` and ``T_c`` its tube. Sums run over space, and also over the
    batch with ``batch_dice`` (nnU-Net's setting for the plans, as the paper does); under DDP the batch sums are
    gathered from every rank, as nnU-Net's Dice does. A class without tube voxels has recall 1 (nothing to miss).
    """

    def __init__(self, batch_dice: bool = False, smooth: float = 1e-5, ddp: bool = False) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.ddp = ddp

    def forward(self, logits: torch.Tensor, tube: torch.Tensor) -> torch.Tensor:
        """``logits``: (B, C, *spatial); ``tube``: (B, 1, *spatial) class indices, 0 off the tube."""
        probabilities = torch.softmax(logits.float(), dim=1)[:, 1:]
        with torch.no_grad():
            tube_onehot = torch.zeros(logits.shape, device=logits.device, dtype=probabilities.dtype)
            tube_onehot.scatter_(1, tube.long(), 1)
            tube_onehot = tube_onehot[:, 1:]
        axes = tuple(range(2, logits.ndim))
        hits = (probabilities * tube_onehot).sum(axes)
        size = tube_onehot.sum(axes)
        if self.batch_dice:
            if self.ddp:
                hits = AllGatherGrad.apply(hits).sum(0)
                size = AllGatherGrad.apply(size).sum(0)
            hits, size = hits.sum(0), size.sum(0)
        recall = (hits + self.smooth) / (size + self.smooth).clamp_min(1e-8)
        return 1 - recall.mean()


class LossWithSkeletonRecall(nn.Module):
    """``base(output, label) + weight * recall_loss(output, tube)`` for (label, tube) targets."""

    def __init__(self, base: nn.Module, recall: SoftSkeletonRecallLoss,
                 weight: float = SKELETON_RECALL_WEIGHT) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"Skeleton Recall weight must be >= 0, got {weight}")
        self.base = base
        self.recall = recall
        self.weight = float(weight)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target``: (B, 2, *spatial), label map then tube (see :func:`split_target`)."""
        label, tube = split_target(target)
        return self.base(net_output, label) + self.weight * self.recall(net_output, tube)


def add_skeleton_recall(default_loss: nn.Module, weight: float, batch_dice: bool, ddp: bool) -> nn.Module:
    """The trainer's loss plus Skeleton Recall at every scale, inside nnU-Net's deep-supervision wrapper.

    The wrapper's weights (nnU-Net's halving per scale, lowest scale 0) are kept, so the recall term is weighted
    per scale exactly like the base loss.
    """
    recall = SoftSkeletonRecallLoss(batch_dice=batch_dice, ddp=ddp)
    if isinstance(default_loss, DeepSupervisionWrapper):
        default_loss.loss = LossWithSkeletonRecall(default_loss.loss, recall, weight)
        return default_loss
    return LossWithSkeletonRecall(default_loss, recall, weight)
