"""Losses of this package.

- ``focal``: softmax focal loss and Dice + focal (the paper's "FL").
- ``skeleton_recall``: Skeleton Recall (Kirchhoff et al., ECCV 2024) added to a trainer's loss;
  ``skeleton_target``: the tubed-skeleton target it needs, made by a transform in nnU-Net's data pipeline.
"""

from nnunet_medsam_fusion.losses.focal import DiceFocalLoss, FocalLoss
from nnunet_medsam_fusion.losses.skeleton_recall import (
    SKELETON_RECALL_WEIGHT,
    LossWithSkeletonRecall,
    SoftSkeletonRecallLoss,
    add_skeleton_recall,
)
from nnunet_medsam_fusion.losses.skeleton_target import TUBE_RADIUS, SkeletonTubeTransform, skeleton_tube

__all__ = [
    "DiceFocalLoss",
    "FocalLoss",
    "SKELETON_RECALL_WEIGHT",
    "LossWithSkeletonRecall",
    "SoftSkeletonRecallLoss",
    "add_skeleton_recall",
    "TUBE_RADIUS",
    "SkeletonTubeTransform",
    "skeleton_tube",
]
