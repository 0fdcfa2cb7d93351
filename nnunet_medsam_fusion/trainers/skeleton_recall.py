"""Skeleton Recall (Kirchhoff et al., ECCV 2024) for any trainer of this package: one mixin (the ``_SkelRecall``
variants of ``trainer_table.py``), and nnU-Net's own trainer with it.

:class:`SkeletonRecallMixin` changes three things of the trainer it is mixed into, and nothing else:
- nnU-Net's training and validation pipelines get :class:`SkeletonTubeTransform` before deep-supervision
  downsampling (CPU, in the data-augmentation workers), so every target carries the tubed skeleton;
- the trainer's own loss (Dice + CE, or Dice + focal) gains ``weight * (1 - soft recall of the tube)`` at every
  deep-supervision scale, with nnU-Net's scale weights;
- the validation step hides the tube from nnU-Net's online Dice (the loss still sees it).
See docs/skeleton_recall.md.
"""

from __future__ import annotations

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from torch import nn

from nnunet_medsam_fusion.losses.skeleton_recall import SKELETON_RECALL_WEIGHT, add_skeleton_recall
from nnunet_medsam_fusion.losses.skeleton_target import TUBE_RADIUS, label_channel, with_skeleton_tube
from nnunet_medsam_fusion.trainers.base import nnUNetTrainerPluginBase


class SkeletonRecallMixin:
    """Adds Skeleton Recall to the nnU-Net trainer that follows it in the bases (``class T(Mixin, Trainer)``).

    Settings are class attributes (nnU-Net's ``__init__`` signature stays untouched): ``skeleton_recall_weight``
    (the paper's 1) and ``tube_radius`` (city-block voxels around the skeleton; the paper's 2).
    """

    skeleton_recall_weight: float = SKELETON_RECALL_WEIGHT
    tube_radius: int = TUBE_RADIUS

    def _build_loss(self) -> nn.Module:
        if self.label_manager.has_regions:
            raise ValueError(
                f"{type(self).__name__} adds Skeleton Recall for label maps, but this data set uses region-based "
                "training (overlapping regions in dataset.json). Convert the regions to exclusive labels, or train "
                "without Skeleton Recall.")
        loss = add_skeleton_recall(super()._build_loss(), self.skeleton_recall_weight,
                                   self.configuration_manager.batch_dice, self.is_ddp)
        self.print_to_log_file(
            f"Skeleton Recall: loss + {self.skeleton_recall_weight} * (1 - soft recall of the skeleton tube, radius "
            f"{self.tube_radius}) at every deep-supervision scale; tubes made by the data loader")
        return loss

    def get_training_transforms(self, *args, **kwargs) -> BasicTransform:
        """nnU-Net's (static) training pipeline, plus the tube. nnU-Net calls it as ``self.get_training_transforms``."""
        return with_skeleton_tube(super().get_training_transforms(*args, **kwargs),
                                  self.label_manager.foreground_labels, self.tube_radius)

    def get_validation_transforms(self, *args, **kwargs) -> BasicTransform:
        return with_skeleton_tube(super().get_validation_transforms(*args, **kwargs),
                                  self.label_manager.foreground_labels, self.tube_radius)

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation step, with the loss given the full (label, tube) target.

        nnU-Net's step hands ``batch['target']`` to both the loss and its online pseudo-Dice; the latter would read
        the tube channel as a second label map. So the step gets the label channel only, and for this one call the
        loss is bound to the full target (moved to the device first; nnU-Net's own move is then a no-op).
        """
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        loss = self.loss
        self.loss = lambda output, _label_only: loss(output, target)
        try:
            return super().validation_step({**batch, "target": label_channel(target)})
        finally:
            self.loss = loss


class nnUNetTrainerSkelRecall(SkeletonRecallMixin, nnUNetTrainerPluginBase):
    """nnU-Net's trainer (Dice + CE) with Skeleton Recall: the paper's nnUNetTrainerSkeletonRecall."""
