"""Short-schedule variants of the trainers, named the way nnU-Net names its own (``nnUNetTrainer_5epochs``).

nnU-Net's default is 1000 epochs of 250 iterations. The ``_demo`` schedule fits a laptop CPU: it is what
``nnmsf demo`` and the end-to-end tests train with.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_medsam_fusion.trainers.baselines import nnUNetTrainerSwinUNet, nnUNetTrainerTransUNet, nnUNetTrainerUNet
from nnunet_medsam_fusion.trainers.focal_dice import nnUNetTrainerFocalDice
from nnunet_medsam_fusion.trainers.medsam2_fusion import nnUNetTrainerMedSAM2Fusion, nnUNetTrainerMedSAM2FusionTiny
from nnunet_medsam_fusion.trainers.medsam_fusion import nnUNetTrainerMedSAMFusion, nnUNetTrainerMedSAMFusionTiny
from nnunet_medsam_fusion.trainers.skeleton_recall import (
    nnUNetTrainerFocalDice_SkelRecall,
    nnUNetTrainerMedSAM2Fusion_SkelRecall,
    nnUNetTrainerMedSAM2FusionTiny_SkelRecall,
    nnUNetTrainerMedSAMFusion_SkelRecall,
    nnUNetTrainerMedSAMFusionTiny_SkelRecall,
    nnUNetTrainerSkelRecall,
)

DEMO_SCHEDULE = {"epochs": 6, "iterations_per_epoch": 12, "val_iterations_per_epoch": 3}
# CLI smoke tests only: proves a trainer runs end to end through nnU-Net (train, validate, predict); learns nothing.
SMOKE_SCHEDULE = {"epochs": 1, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1}


def with_schedule(base: type[nnUNetTrainer], suffix: str, epochs: int, iterations_per_epoch: int = 250,
                  val_iterations_per_epoch: int = 50) -> type[nnUNetTrainer]:
    """A subclass of ``base`` named ``{base.__name__}_{suffix}`` that trains for the given schedule.

    The subclass keeps nnU-Net's exact ``__init__`` signature (nnU-Net records it for checkpoints) and is
    created in this module, so it pickles and is found by name like a hand-written class.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        self.num_iterations_per_epoch = iterations_per_epoch
        self.num_val_iterations_per_epoch = val_iterations_per_epoch

    name = f"{base.__name__}_{suffix}"
    doc = (f"{base.__name__} for {epochs} epochs of {iterations_per_epoch} iterations "
           f"({val_iterations_per_epoch} validation iterations).")
    return type(name, (base,), {"__init__": __init__, "__module__": __name__, "__qualname__": name, "__doc__": doc})


nnUNetTrainer_demo = with_schedule(nnUNetTrainer, "demo", **DEMO_SCHEDULE)
nnUNetTrainerFocalDice_demo = with_schedule(nnUNetTrainerFocalDice, "demo", **DEMO_SCHEDULE)
nnUNetTrainerFocalDice_5epochs = with_schedule(nnUNetTrainerFocalDice, "5epochs", epochs=5)
nnUNetTrainerFocalDice_50epochs = with_schedule(nnUNetTrainerFocalDice, "50epochs", epochs=50)
nnUNetTrainerFocalDice_100epochs = with_schedule(nnUNetTrainerFocalDice, "100epochs", epochs=100)
nnUNetTrainerFocalDice_250epochs = with_schedule(nnUNetTrainerFocalDice, "250epochs", epochs=250)
nnUNetTrainerMedSAMFusion_demo = with_schedule(nnUNetTrainerMedSAMFusion, "demo", **DEMO_SCHEDULE)
nnUNetTrainerMedSAM2Fusion_demo = with_schedule(nnUNetTrainerMedSAM2Fusion, "demo", **DEMO_SCHEDULE)
nnUNetTrainerMedSAMFusionTiny_demo = with_schedule(nnUNetTrainerMedSAMFusionTiny, "demo", **DEMO_SCHEDULE)
nnUNetTrainerMedSAM2FusionTiny_demo = with_schedule(nnUNetTrainerMedSAM2FusionTiny, "demo", **DEMO_SCHEDULE)
nnUNetTrainerSkelRecall_demo = with_schedule(nnUNetTrainerSkelRecall, "demo", **DEMO_SCHEDULE)
nnUNetTrainerFocalDice_SkelRecall_demo = with_schedule(nnUNetTrainerFocalDice_SkelRecall, "demo", **DEMO_SCHEDULE)
nnUNetTrainerMedSAMFusion_SkelRecall_demo = with_schedule(nnUNetTrainerMedSAMFusion_SkelRecall, "demo", **DEMO_SCHEDULE)
nnUNetTrainerMedSAM2Fusion_SkelRecall_demo = with_schedule(nnUNetTrainerMedSAM2Fusion_SkelRecall, "demo",
                                                           **DEMO_SCHEDULE)
nnUNetTrainerMedSAMFusionTiny_SkelRecall_demo = with_schedule(nnUNetTrainerMedSAMFusionTiny_SkelRecall, "demo",
                                                              **DEMO_SCHEDULE)
nnUNetTrainerMedSAM2FusionTiny_SkelRecall_demo = with_schedule(nnUNetTrainerMedSAM2FusionTiny_SkelRecall, "demo",
                                                               **DEMO_SCHEDULE)
nnUNetTrainerSkelRecall_smoke = with_schedule(nnUNetTrainerSkelRecall, "smoke", **SMOKE_SCHEDULE)
nnUNetTrainerFocalDice_SkelRecall_smoke = with_schedule(nnUNetTrainerFocalDice_SkelRecall, "smoke", **SMOKE_SCHEDULE)
nnUNetTrainerMedSAMFusionTiny_SkelRecall_smoke = with_schedule(nnUNetTrainerMedSAMFusionTiny_SkelRecall, "smoke",
                                                               **SMOKE_SCHEDULE)
nnUNetTrainerMedSAM2FusionTiny_SkelRecall_smoke = with_schedule(nnUNetTrainerMedSAM2FusionTiny_SkelRecall, "smoke",
                                                                **SMOKE_SCHEDULE)
nnUNetTrainerUNet_demo = with_schedule(nnUNetTrainerUNet, "demo", **DEMO_SCHEDULE)
# Swin-Unet from scratch leaves the all-background solution later than the CNNs (pseudo Dice 0.0 after 6 demo
# epochs in one CI run): three times the demo's epochs, about a minute more on 2 CPU cores.
nnUNetTrainerSwinUNet_demo = with_schedule(nnUNetTrainerSwinUNet, "demo", **(DEMO_SCHEDULE | {"epochs": 18}))
nnUNetTrainerTransUNet_demo = with_schedule(nnUNetTrainerTransUNet, "demo", **DEMO_SCHEDULE)
