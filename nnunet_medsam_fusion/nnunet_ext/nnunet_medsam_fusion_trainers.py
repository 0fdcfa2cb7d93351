"""Re-exports every trainer of the package for nnU-Net's ``nnUNet_extTrainer`` lookup (see package docstring)."""

from nnunet_medsam_fusion.trainers import *  # noqa: F403
