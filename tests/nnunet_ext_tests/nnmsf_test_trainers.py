"""Re-exports the test-only trainers for nnU-Net's ``nnUNet_extTrainer`` lookup (see tests/smoke_trainers.py)."""

from tests.smoke_trainers import *  # noqa: F403
