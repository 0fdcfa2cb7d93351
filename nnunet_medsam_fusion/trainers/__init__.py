"""nnU-Net trainers of this package; the class names are what ``nnUNetv2_train -tr`` takes.

| paper row      | trainer                                |
|----------------|----------------------------------------|
| UNet           | nnUNetTrainerUNet (baselines.py)       |
| SwinUNet       | nnUNetTrainerSwinUNet                  |
| TransUNet      | nnUNetTrainerTransUNet                 |
| nnUNet         | nnUNetTrainer (nnU-Net's own)          |
| nnUNet + FL    | nnUNetTrainerFocalDice ("w/o FF")      |
| Full (MS)      | nnUNetTrainerMedSAMFusion              |
| w/o FL (MS)    | nnUNetTrainerMedSAMFusion_noFocal      |
| Full (MS2)     | nnUNetTrainerMedSAM2Fusion             |
| w/o FL (MS2)   | nnUNetTrainerMedSAM2Fusion_noFocal     |

``_512`` variants run the foundation encoder at 512² instead of the native size (faster; docs/benchmarks.md).

``_SkelRecall`` variants add Skeleton Recall (Kirchhoff et al., ECCV 2024; not in the paper) to the trainer they
name: nnUNetTrainerSkelRecall (nnU-Net's Dice + CE), nnUNetTrainerFocalDice_SkelRecall,
nnUNetTrainerMedSAMFusion_SkelRecall, nnUNetTrainerMedSAM2Fusion_SkelRecall (docs/skeleton_recall.md).
``_smoke`` variants (1 epoch of 2 iterations) exist only for the CLI smoke tests.
"""

from nnunet_medsam_fusion.trainers.baselines import nnUNetTrainerSwinUNet, nnUNetTrainerTransUNet, nnUNetTrainerUNet
from nnunet_medsam_fusion.trainers.focal_dice import nnUNetTrainerFocalDice
from nnunet_medsam_fusion.trainers.medsam2_fusion import (
    nnUNetTrainerMedSAM2Fusion,
    nnUNetTrainerMedSAM2Fusion_512,
    nnUNetTrainerMedSAM2Fusion_noFocal,
    nnUNetTrainerMedSAM2FusionTiny,
)
from nnunet_medsam_fusion.trainers.medsam_fusion import (
    nnUNetTrainerMedSAMFusion,
    nnUNetTrainerMedSAMFusion_512,
    nnUNetTrainerMedSAMFusion_noFocal,
    nnUNetTrainerMedSAMFusionTiny,
)
from nnunet_medsam_fusion.trainers.schedules import (
    nnUNetTrainer_demo,
    nnUNetTrainerFocalDice_5epochs,
    nnUNetTrainerFocalDice_50epochs,
    nnUNetTrainerFocalDice_100epochs,
    nnUNetTrainerFocalDice_250epochs,
    nnUNetTrainerFocalDice_demo,
    nnUNetTrainerFocalDice_SkelRecall_demo,
    nnUNetTrainerFocalDice_SkelRecall_smoke,
    nnUNetTrainerMedSAM2Fusion_demo,
    nnUNetTrainerMedSAM2Fusion_SkelRecall_demo,
    nnUNetTrainerMedSAM2FusionTiny_demo,
    nnUNetTrainerMedSAM2FusionTiny_SkelRecall_demo,
    nnUNetTrainerMedSAM2FusionTiny_SkelRecall_smoke,
    nnUNetTrainerMedSAMFusion_demo,
    nnUNetTrainerMedSAMFusion_SkelRecall_demo,
    nnUNetTrainerMedSAMFusionTiny_demo,
    nnUNetTrainerMedSAMFusionTiny_SkelRecall_demo,
    nnUNetTrainerMedSAMFusionTiny_SkelRecall_smoke,
    nnUNetTrainerSkelRecall_demo,
    nnUNetTrainerSkelRecall_smoke,
    nnUNetTrainerSwinUNet_demo,
    nnUNetTrainerTransUNet_demo,
    nnUNetTrainerUNet_demo,
)
from nnunet_medsam_fusion.trainers.skeleton_recall import (
    nnUNetTrainerFocalDice_SkelRecall,
    nnUNetTrainerMedSAM2Fusion_SkelRecall,
    nnUNetTrainerMedSAM2FusionTiny_SkelRecall,
    nnUNetTrainerMedSAMFusion_SkelRecall,
    nnUNetTrainerMedSAMFusionTiny_SkelRecall,
    nnUNetTrainerSkelRecall,
)

__all__ = [
    "nnUNetTrainerUNet",
    "nnUNetTrainerSwinUNet",
    "nnUNetTrainerTransUNet",
    "nnUNetTrainerUNet_demo",
    "nnUNetTrainerSwinUNet_demo",
    "nnUNetTrainerTransUNet_demo",
    "nnUNetTrainerFocalDice",
    "nnUNetTrainerMedSAMFusion",
    "nnUNetTrainerMedSAMFusion_noFocal",
    "nnUNetTrainerMedSAMFusion_512",
    "nnUNetTrainerMedSAMFusionTiny",
    "nnUNetTrainerMedSAM2Fusion",
    "nnUNetTrainerMedSAM2Fusion_noFocal",
    "nnUNetTrainerMedSAM2Fusion_512",
    "nnUNetTrainerMedSAM2FusionTiny",
    "nnUNetTrainer_demo",
    "nnUNetTrainerFocalDice_5epochs",
    "nnUNetTrainerFocalDice_50epochs",
    "nnUNetTrainerFocalDice_100epochs",
    "nnUNetTrainerFocalDice_250epochs",
    "nnUNetTrainerFocalDice_demo",
    "nnUNetTrainerMedSAMFusion_demo",
    "nnUNetTrainerMedSAM2Fusion_demo",
    "nnUNetTrainerMedSAMFusionTiny_demo",
    "nnUNetTrainerMedSAM2FusionTiny_demo",
    "nnUNetTrainerSkelRecall",
    "nnUNetTrainerFocalDice_SkelRecall",
    "nnUNetTrainerMedSAMFusion_SkelRecall",
    "nnUNetTrainerMedSAM2Fusion_SkelRecall",
    "nnUNetTrainerMedSAMFusionTiny_SkelRecall",
    "nnUNetTrainerMedSAM2FusionTiny_SkelRecall",
    "nnUNetTrainerSkelRecall_demo",
    "nnUNetTrainerFocalDice_SkelRecall_demo",
    "nnUNetTrainerMedSAMFusion_SkelRecall_demo",
    "nnUNetTrainerMedSAM2Fusion_SkelRecall_demo",
    "nnUNetTrainerMedSAMFusionTiny_SkelRecall_demo",
    "nnUNetTrainerMedSAM2FusionTiny_SkelRecall_demo",
    "nnUNetTrainerSkelRecall_smoke",
    "nnUNetTrainerFocalDice_SkelRecall_smoke",
    "nnUNetTrainerMedSAMFusionTiny_SkelRecall_smoke",
    "nnUNetTrainerMedSAM2FusionTiny_SkelRecall_smoke",
]
