"""nnU-Net trainers of this package; the class names are what ``nnUNetv2_train -tr`` takes.

| paper row      | trainer                                |
|----------------|----------------------------------------|
| nnUNet + FL    | nnUNetTrainerFocalDice ("w/o FF")      |
| Full (MS)      | nnUNetTrainerMedSAMFusion              |
| w/o FL (MS)    | nnUNetTrainerMedSAMFusion_noFocal      |
| Full (MS2)     | nnUNetTrainerMedSAM2Fusion             |
| w/o FL (MS2)   | nnUNetTrainerMedSAM2Fusion_noFocal     |

``_512`` variants run the foundation encoder at 512² instead of the native size (faster; docs/benchmarks.md).
"""

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
    nnUNetTrainerMedSAM2Fusion_demo,
    nnUNetTrainerMedSAM2FusionTiny_demo,
    nnUNetTrainerMedSAMFusion_demo,
    nnUNetTrainerMedSAMFusionTiny_demo,
)

__all__ = [
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
]
