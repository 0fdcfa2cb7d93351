"""Trainer classes by name, as ``nnUNetv2_train`` finds them, and their random-weight variants."""

from __future__ import annotations

import contextlib
import io


def find_trainer_class(name: str) -> type:
    """A trainer class by name, found by nnU-Net's own lookup as ``nnUNetv2_train`` finds it.

    This package's trainer folder is added to ``nnUNet_extTrainer`` when the variable does not name it yet.
    """
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_medsam_fusion.settings import EXT_TRAINER_ENV, ext_trainer_value, temporary_environ

    folders = ext_trainer_value()
    try:
        with temporary_environ(**{EXT_TRAINER_ENV: folders}), contextlib.redirect_stdout(io.StringIO()):
            return recursive_find_trainer_class_by_name(name)  # nnU-Net narrates its search; silenced
    except RuntimeError as error:
        raise ValueError(f"Unknown trainer {name!r}: neither nnU-Net nor {EXT_TRAINER_ENV} ({folders}) has it. "
                         "Check the spelling.") from error


def random_weights_variant(trainer_class: type, medsam2_size: str = "hiera_s") -> type:
    """The same trainer with a fixed foundation spec and no checkpoint required (random encoder weights).

    MedSAM2 trainers read family and size from the checkpoint, so without one they use Medical SAM 2 (the
    family the paper cites) of ``medsam2_size`` at the trainer's encoder input size (native 1024 by default).
    Trainers without a foundation encoder, or that need no checkpoint already, are returned unchanged.
    """
    from nnunet_medsam_fusion.foundation import MEDICAL_SAM2, FoundationSpec, native_input_size
    from nnunet_medsam_fusion.trainers.foundation_fusion import FoundationFusionTrainer
    from nnunet_medsam_fusion.trainers.medsam2_fusion import nnUNetTrainerMedSAM2Fusion

    if not issubclass(trainer_class, FoundationFusionTrainer) or not trainer_class.requires_checkpoint:
        return trainer_class
    if issubclass(trainer_class, nnUNetTrainerMedSAM2Fusion):
        input_size = trainer_class.encoder_input_size or native_input_size(MEDICAL_SAM2, medsam2_size)
        spec = FoundationSpec(MEDICAL_SAM2, medsam2_size, input_size)
    else:
        spec = trainer_class.foundation_spec(None)

    def foundation_spec(cls, checkpoint: str | None) -> FoundationSpec:
        return spec

    return type(trainer_class.__name__, (trainer_class,), {
        "requires_checkpoint": False,
        "foundation_spec": classmethod(foundation_spec),
        "__module__": __name__,
        "__doc__": f"{trainer_class.__name__} with a randomly initialised {spec} encoder (benchmarks only).",
    })
