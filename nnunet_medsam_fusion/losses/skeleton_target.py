"""The tubed-skeleton target of Skeleton Recall, made on the CPU inside nnU-Net's own augmentation pipeline.

Kirchhoff et al. (ECCV 2024, github.com/MIC-DKFZ/Skeleton-Recall) skeletonise the ground truth in the data loader
and dilate it into a thin tube; the loss then asks for recall on that tube. Made here by a batchgeneratorsv2
transform inserted just before nnU-Net's deep-supervision downsampling, so the tube is built from the label
*after* every spatial augmentation (it follows them exactly) and is then downsampled, like the label and with it,
to every deep-supervision scale.

Contract with the loss: the transform appends one channel to the segmentation, so every target nnU-Net hands the
loss is ``(B, 2, *spatial)``: channel 0 the label map, channel 1 the tube holding the class index of each tube voxel
(0 elsewhere). It lives next to its loss rather than in ``data/`` (which writes raw data sets) because the two
halves share this channel contract and nothing else uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from scipy import ndimage
from skimage.morphology import skeletonize

TUBE_RADIUS = 2  # city-block radius; the paper's code dilates the skeleton twice with skimage's default footprint
TARGET_CHANNELS = 2  # label map, tube


def tube_footprint(ndim: int, radius: int = TUBE_RADIUS) -> np.ndarray:
    """City-block ball of ``radius`` (a diamond in 2D, an octahedron in 3D).

    It equals dilating ``radius`` times with the face-connected cross (4-neighbourhood in 2D, 6 in 3D), which is
    what the paper's code does with radius 2: a tube 5 voxels wide around a 1-voxel skeleton.
    """
    return ndimage.iterate_structure(ndimage.generate_binary_structure(ndim, 1), radius)


def skeleton_tube(label: np.ndarray, classes: Sequence[int], radius: int = TUBE_RADIUS) -> np.ndarray:
    """Per-class tubed skeleton of a 2D or 3D label map: class index on the tube, 0 elsewhere (int16).

    Each class is skeletonised on its own (scikit-image: Zhang's thinning in 2D, Lee's in 3D), dilated by
    :func:`tube_footprint` and kept inside that class's voxels. For a binary label this is exactly the paper's
    target. For several classes the paper's code skeletonises the union and assigns each tube voxel the label there;
    skeletonising per class (ours) keeps a centreline for every class even where classes touch. Tubes of different
    classes are disjoint, so one channel holds them all. Labels not in ``classes`` (background, the ignore label)
    get no tube, so the recall never looks at ignored voxels.
    """
    tube = np.zeros(label.shape, dtype=np.int16)
    footprint = tube_footprint(label.ndim, radius)
    for value in classes:
        mask = label == value
        if mask.any():
            tube[ndimage.binary_dilation(skeletonize(mask), footprint) & mask] = value
    return tube


class SkeletonTubeTransform(SegOnlyTransform):
    """Appends the tubed skeleton of segmentation channel 0 as a second channel (see the module docstring).

    Plain attributes only, so it pickles into nnU-Net's data-augmentation worker processes.
    """

    def __init__(self, classes: Sequence[int], radius: int = TUBE_RADIUS) -> None:
        super().__init__()
        if radius < 0:
            raise ValueError(f"tube radius must be >= 0 voxels, got {radius}")
        self.classes = tuple(int(c) for c in classes)
        self.radius = int(radius)

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        if not isinstance(segmentation, torch.Tensor) or segmentation.shape[0] != 1:
            raise ValueError(
                "SkeletonTubeTransform needs the full-resolution label map as one channel, (1, *spatial); got "
                f"{type(segmentation).__name__} {getattr(segmentation, 'shape', '')}. Insert it with "
                "with_skeleton_tube(), which places it before DownsampleSegForDSTransform.")
        tube = skeleton_tube(segmentation[0].numpy(), self.classes, self.radius)
        return torch.cat((segmentation, torch.from_numpy(tube)[None].to(segmentation.dtype)))


def with_skeleton_tube(transforms: ComposeTransforms, classes: Sequence[int],
                       radius: int = TUBE_RADIUS) -> ComposeTransforms:
    """nnU-Net's pipeline with :class:`SkeletonTubeTransform` just before deep-supervision downsampling (or last).

    Everything spatial (rotation, scaling, mirroring) and the removal of the padding label -1 come earlier in
    nnU-Net's pipelines, so the tube is made from the label exactly as the network will be asked to predict it.
    """
    if not isinstance(transforms, ComposeTransforms):
        raise TypeError(f"expected nnU-Net's ComposeTransforms pipeline, got {type(transforms).__name__}")
    steps = transforms.transforms
    position = next((i for i, t in enumerate(steps) if isinstance(t, DownsampleSegForDSTransform)), len(steps))
    steps.insert(position, SkeletonTubeTransform(classes, radius))
    return transforms


def split_target(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(label, tube)``, each ``(B, 1, *spatial)``, from a target made with :class:`SkeletonTubeTransform`."""
    if target.ndim < 3 or target.shape[1] != TARGET_CHANNELS:
        raise ValueError(
            f"Skeleton Recall needs targets of shape (B, {TARGET_CHANNELS}, *spatial) (label map + tubed skeleton), "
            f"got {tuple(target.shape)}. The trainer's data pipeline must include SkeletonTubeTransform "
            "(the *_SkelRecall trainers add it to nnU-Net's training and validation transforms).")
    return target[:, :1], target[:, 1:]


def label_channel(target: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """The label map alone (per deep-supervision scale for a list), as nnU-Net's online Dice expects it."""
    if isinstance(target, list):
        return [split_target(t)[0] for t in target]
    return split_target(target)[0]
