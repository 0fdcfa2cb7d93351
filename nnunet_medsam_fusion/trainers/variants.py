"""Builds the trainer classes that ``trainer_table.py`` declares, from the hand-written ones of this folder.

A variant only sets class attributes (nnU-Net's ``__init__`` signature stays exact), puts
:class:`SkeletonRecallMixin` in front of its bases for ``_SkelRecall``, and nnU-Net's own
``nnUNetTrainerNoMirroring`` behind them for ``_NoMirroring`` (its
``configure_rotation_dummyDA_mirroring_and_inital_patch_size`` then turns off the mirror augmentation and sets
``inference_allowed_mirroring_axes`` to None, which nnU-Net's checkpoint carries to prediction). Each class gets
``__module__``/``__qualname__`` of the module that exports it, so it pickles and nnU-Net finds it by name like a
hand-written class.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
    nnUNetTrainerNoMirroring,
)

from nnunet_medsam_fusion.trainer_table import FAMILIES, Schedule, Variant, variants
from nnunet_medsam_fusion.trainers.base import nnUNetTrainerPluginBase
from nnunet_medsam_fusion.trainers.baselines import nnUNetTrainerSwinUNet, nnUNetTrainerTransUNet, nnUNetTrainerUNet
from nnunet_medsam_fusion.trainers.focal_dice import nnUNetTrainerFocalDice
from nnunet_medsam_fusion.trainers.medsam2_fusion import nnUNetTrainerMedSAM2Fusion, nnUNetTrainerMedSAM2FusionTiny
from nnunet_medsam_fusion.trainers.medsam_fusion import nnUNetTrainerMedSAMFusion, nnUNetTrainerMedSAMFusionTiny
from nnunet_medsam_fusion.trainers.skeleton_recall import SkeletonRecallMixin, nnUNetTrainerSkelRecall

HAND_WRITTEN: dict[str, type[nnUNetTrainer]] = {cls.__name__: cls for cls in (
    nnUNetTrainerPluginBase, nnUNetTrainerUNet, nnUNetTrainerSwinUNet, nnUNetTrainerTransUNet,
    nnUNetTrainerSkelRecall, nnUNetTrainerFocalDice, nnUNetTrainerMedSAMFusion, nnUNetTrainerMedSAMFusionTiny,
    nnUNetTrainerMedSAM2Fusion, nnUNetTrainerMedSAM2FusionTiny)}


def derive(base: type[nnUNetTrainer], name: str, module: str, *, no_focal: bool = False, input_512: bool = False,
           skeleton_recall: bool = False, no_mirroring: bool = False, schedule: Schedule | None = None
           ) -> type[nnUNetTrainer]:
    """A subclass of ``base`` named ``name`` (in ``module``) with the given variant options."""
    attributes: dict = {"__module__": module, "__qualname__": name}
    what = []
    if no_focal:
        attributes["focal_loss"] = False
        what.append("nnU-Net's Dice + CE instead of Dice + focal")
    if input_512:
        attributes["encoder_input_size"] = attributes["volume_input_size"] = 512
        what.append("the foundation encoder at 512²")
    if skeleton_recall:
        what.append("Skeleton Recall")
    if no_mirroring:
        what.append("no mirroring in training or prediction")
    if schedule is not None:
        attributes["schedule"] = schedule
        what.append(f"{schedule.epochs} epochs of {schedule.iterations_per_epoch} iterations")
    attributes["__doc__"] = f"{base.__name__} with {', '.join(what)}."
    bases = ((SkeletonRecallMixin,) if skeleton_recall else ()) + (base,) + \
        ((nnUNetTrainerNoMirroring,) if no_mirroring else ())
    return type(name, bases, attributes)


def build_variant(variant: Variant, module: str) -> type[nnUNetTrainer]:
    """The class of one declared trainer (the hand-written class itself for a family's own trainer)."""
    base = HAND_WRITTEN[variant.family.base]
    if variant.is_family and not variant.family.derives_from:
        return base
    schedule = variant.family.schedules[variant.schedule] if variant.schedule else None
    return derive(base, variant.name, module, no_focal=variant.no_focal, input_512=variant.input_512,
                  skeleton_recall=variant.skeleton_recall, no_mirroring=variant.no_mirroring, schedule=schedule)


def build_trainers(module: str) -> dict[str, type[nnUNetTrainer]]:
    """Every declared trainer by name, in declaration order (nnU-Net's own nnUNetTrainer is not ours)."""
    return {v.name: build_variant(v, module) for family in FAMILIES for v in variants(family)
            if not (v.is_family and v.family.derives_from)}
