"""nnU-Net with Dice + focal loss: our reading of the paper's ablation row "w/o FF" (the full model without
feature fusion, i.e. nnU-Net trained with focal loss; the table names the row, the available text does not
define it)."""

from __future__ import annotations

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import nn

from nnunet_medsam_fusion.losses import DiceFocalLoss, FocalLoss
from nnunet_medsam_fusion.trainers.base import nnUNetTrainerPluginBase


def with_focal_instead_of_ce(default_loss: nn.Module, gamma: float, alpha: tuple[float, ...] | None,
                             ignore_label: int | None) -> nn.Module:
    """Swaps cross-entropy for focal loss inside nnU-Net's default (deep-supervised) Dice + CE loss.

    nnU-Net's own Dice module and deep-supervision weights are kept as nnU-Net configured them.
    """
    wrapped = isinstance(default_loss, DeepSupervisionWrapper)
    dice_ce = default_loss.loss if wrapped else default_loss
    loss = DiceFocalLoss(dice_ce.dc, FocalLoss(gamma, alpha, ignore_label), ignore_label=ignore_label)
    if wrapped:
        default_loss.loss = loss
        return default_loss
    return loss


class nnUNetTrainerFocalDice(nnUNetTrainerPluginBase):
    """nnU-Net's trainer with soft Dice + softmax focal loss (gamma=2) instead of Dice + cross-entropy.

    Every trainer of this package inherits from it, and so gets the checks of :class:`nnUNetTrainerPluginBase`.
    """

    focal_gamma: float = 2.0
    focal_alpha: tuple[float, ...] | None = None  # one weight per class; None weighs all classes 1
    focal_loss: bool = True  # False: nnU-Net's own Dice + CE (the "_noFocal" ablation variants)

    def _build_loss(self) -> nn.Module:
        if not self.focal_loss:
            return super()._build_loss()
        if self.label_manager.has_regions:
            raise ValueError(
                f"{type(self).__name__} implements softmax focal loss for label maps, but this data set uses "
                "region-based training (overlapping regions in dataset.json). Train it with nnU-Net's "
                "nnUNetTrainer (Dice + BCE) or convert the regions to exclusive labels.")
        return with_focal_instead_of_ce(super()._build_loss(), self.focal_gamma, self.focal_alpha,
                                        self.label_manager.ignore_label)
