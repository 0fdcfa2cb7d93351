"""What one benchmark run measures: the settings sent to each per-trainer process, the default trainers."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TRAINERS = (
    "nnUNetTrainer",
    "nnUNetTrainerFocalDice",
    "nnUNetTrainerMedSAMFusion",
    "nnUNetTrainerMedSAM2Fusion",
)
MEDSAM2_RANDOM_SIZES = ("hiera_t", "hiera_s")


@dataclass(frozen=True)
class BenchmarkSettings:
    """What one benchmark run measures; sent to each per-trainer process."""

    preprocessed_folder: str  # nnUNet_preprocessed/DatasetXXX_Name
    configuration: str = "2d"
    plans_identifier: str = "nnUNetPlans"
    device: str = "cpu"
    iters: int = 10
    warmup: int = 3
    volume_iters: int = 1
    batch_size: int | None = None  # None: the plans' batch size
    mirroring: bool = True
    compile: bool = False
    random_weights: bool = False
    medsam2_size: str = "hiera_s"
    folds: int = 1  # volume inference as nnUNetv2_predict -f with this many folds (same weights loaded each time)
    feature_cache: bool = True  # reuse frozen-encoder features across folds (fused trainers)
    encoder_precision: str | None = None  # NNMSF_ENCODER_PRECISION for the run; None: as set
    compare_precision: bool = False  # fused trainers: fp32 vs bf16 feature error and prediction agreement
