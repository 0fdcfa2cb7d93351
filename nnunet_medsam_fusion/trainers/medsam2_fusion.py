"""MedSAM2 (SAM2 Hiera) feature fusion: the paper's "Full (MS2)" (its variants: ``trainer_table.py``)."""

from __future__ import annotations

from nnunet_medsam_fusion.foundation import (
    MEDICAL_SAM2,
    MEDSAM2_CHECKPOINT_ENV,
    FoundationSpec,
    detect_medsam2_spec,
    native_input_size,
)
from nnunet_medsam_fusion.trainers.foundation_fusion import FoundationFusionTrainer


class nnUNetTrainerMedSAM2Fusion(FoundationFusionTrainer):
    """nnU-Net + frozen MedSAM2 Hiera features at strides 8 and 16 (128² and 64² at a 1024 input) + Dice/focal loss.

    Which levels to fuse is our choice: the paper's available text says that MedSAM2 features are fused, not
    which. The family (Medical SAM 2, or bowang-lab MedSAM2 2025) and trunk size are read from the checkpoint's
    keys and shapes; the encoder runs at that family's native input size.
    """

    checkpoint_env = MEDSAM2_CHECKPOINT_ENV
    checkpoint_help = "Medical SAM 2's MedSAM2_pretrain.pth or bowang-lab's MedSAM2_latest.pt"
    sizes = ("hiera_t", "hiera_s")  # the published MedSAM2 trunks
    feature_levels = (1, 2)
    encoder_input_size: int | None = None  # None: the checkpoint family's native size (1024 or 512); _512: 512

    @classmethod
    def foundation_spec(cls, checkpoint: str | None) -> FoundationSpec:
        return detect_medsam2_spec(checkpoint, cls.encoder_input_size, cls.sizes)


class nnUNetTrainerMedSAM2FusionTiny(nnUNetTrainerMedSAM2Fusion):
    """A tiny Hiera of the real classes, for tests and the CPU demo: random weights unless a (tiny)
    checkpoint is given in ``nnUNet_MedSAM2_checkpoint``; the training log says so loudly."""

    requires_checkpoint = False
    sizes = ("tiny",)

    @classmethod
    def foundation_spec(cls, checkpoint: str | None) -> FoundationSpec:
        if checkpoint is None:
            size = cls.encoder_input_size or native_input_size(MEDICAL_SAM2, "tiny")
            return FoundationSpec(MEDICAL_SAM2, "tiny", size)
        return detect_medsam2_spec(checkpoint, cls.encoder_input_size, sizes=cls.sizes)
