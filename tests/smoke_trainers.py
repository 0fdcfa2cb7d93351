"""Test-only trainers: one epoch of two iterations, to prove a trainer runs end to end through nnU-Net's CLI.

They learn nothing. nnU-Net finds them through ``tests/nnunet_ext_tests`` (conftest's ``nnunet_env`` adds that
folder to ``nnUNet_extTrainer`` and the repository root to ``PYTHONPATH``, so child processes import this module).
"""

from nnunet_medsam_fusion.trainer_table import Schedule
from nnunet_medsam_fusion.trainers import TRAINERS
from nnunet_medsam_fusion.trainers.variants import derive

SMOKE = Schedule(1, 2, 1)
SMOKE_OF = ("nnUNetTrainerSwinUNet", "nnUNetTrainerFocalDice", "nnUNetTrainerMedSAMFusionTiny_SkelRecall",
            "nnUNetTrainerMedSAM2FusionTiny", "nnUNetTrainerMedSAM2FusionTiny_SkelRecall")

SMOKE_TRAINERS = {f"{name}_smoke": derive(TRAINERS[name], f"{name}_smoke", __name__, schedule=SMOKE)
                  for name in SMOKE_OF}
globals().update(SMOKE_TRAINERS)
__all__ = list(SMOKE_TRAINERS)
