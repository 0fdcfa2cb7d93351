"""Frozen foundation image encoders (MedSAM = SAM ViT-B, MedSAM2 = SAM2 Hiera) and checkpoint loading."""

from .architectures import MEDICAL_SAM2, MEDSAM, native_input_size
from .build import build_foundation_encoder
from .checkpoints import (
    MEDSAM2_CHECKPOINT_ENV,
    MEDSAM_CHECKPOINT_ENV,
    CheckpointError,
    CheckpointNotFoundError,
    describe_checkpoint,
    detect_medsam2_spec,
    file_sha256,
    load_foundation_weights,
)
from .encoder import FoundationEncoder
from .spec import FoundationSpec

__all__ = [
    "MEDICAL_SAM2",
    "MEDSAM",
    "MEDSAM2_CHECKPOINT_ENV",
    "MEDSAM_CHECKPOINT_ENV",
    "CheckpointError",
    "CheckpointNotFoundError",
    "FoundationEncoder",
    "FoundationSpec",
    "build_foundation_encoder",
    "describe_checkpoint",
    "detect_medsam2_spec",
    "file_sha256",
    "load_foundation_weights",
    "native_input_size",
]
