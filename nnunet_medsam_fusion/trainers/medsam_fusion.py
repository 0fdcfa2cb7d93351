"""MedSAM (SAM ViT-B) feature fusion: the paper's "Full (MS)" (its variants: ``trainer_table.py``)."""

from __future__ import annotations

from nnunet_medsam_fusion.foundation import MEDSAM, MEDSAM_CHECKPOINT_ENV, FoundationSpec
from nnunet_medsam_fusion.trainers.foundation_fusion import FoundationFusionTrainer


class nnUNetTrainerMedSAMFusion(FoundationFusionTrainer):
    """nnU-Net + frozen MedSAM ViT-B features (its 64x64 map at the native 1024 input) + Dice/focal loss.

    The native input size is the default (our choice) because MedSAM was trained at it; smaller 2D patches are
    upsampled to it.
    """

    checkpoint_env = MEDSAM_CHECKPOINT_ENV
    checkpoint_help = "MedSAM's medsam_vit_b.pth or the original SAM ViT-B sam_vit_b_01ec64.pth"
    sizes = ("vit_b",)
    feature_levels = (0,)
    encoder_size: str = "vit_b"
    encoder_input_size: int = 1024  # the _512 variants: 512 (a 32² map, about 4x less encoder work)

    @classmethod
    def foundation_spec(cls, checkpoint: str | None) -> FoundationSpec:
        return FoundationSpec(MEDSAM, cls.encoder_size, cls.encoder_input_size)


class nnUNetTrainerMedSAMFusionTiny(nnUNetTrainerMedSAMFusion):
    """A tiny SAM ViT of the real class, for tests and the CPU demo: random weights unless a (tiny)
    checkpoint is given in ``nnUNet_MedSAM_checkpoint``; the training log says so loudly."""

    requires_checkpoint = False
    sizes = ("tiny",)
    encoder_size = "tiny"
    encoder_input_size = 64
