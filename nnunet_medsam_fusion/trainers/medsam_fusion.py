"""MedSAM (SAM ViT-B) feature fusion: the paper's "Full (MS)" and "w/o FL (MS)"."""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

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
    encoder_input_size: int = 1024

    @classmethod
    def foundation_spec(cls, checkpoint: str | None) -> FoundationSpec:
        return FoundationSpec(MEDSAM, cls.encoder_size, cls.encoder_input_size)


class nnUNetTrainerMedSAMFusion_noFocal(nnUNetTrainerMedSAMFusion):
    """The "w/o FL (MS)" ablation: MedSAM fusion trained with nnU-Net's Dice + cross-entropy."""

    def _build_loss(self) -> nn.Module:
        return nnUNetTrainer._build_loss(self)


class nnUNetTrainerMedSAMFusionTiny(nnUNetTrainerMedSAMFusion):
    """A tiny SAM ViT of the real class, for tests and the CPU demo: random weights unless a (tiny)
    checkpoint is given in ``nnUNet_MedSAM_checkpoint``; the training log says so loudly."""

    requires_checkpoint = False
    sizes = ("tiny",)
    encoder_size = "tiny"
    encoder_input_size = 64


class nnUNetTrainerMedSAMFusion_512(nnUNetTrainerMedSAMFusion):
    """MedSAM fusion with the encoder run at 512² instead of its native 1024²: about 4x less encoder work
    (a 32² feature map); the position embedding is resized from the checkpoint's. Trades some fidelity to
    MedSAM's pretraining for speed; see docs/benchmarks.md."""

    encoder_input_size = 512
