"""Every environment variable this package reads, read here and nowhere else.

Commands never change the calling process's environment: where nnU-Net itself must see a value (its trainer
lookup reads ``nnUNet_extTrainer``), :func:`temporary_environ` sets it for the call and restores it after.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

MEDSAM_CHECKPOINT_ENV = "nnUNet_MedSAM_checkpoint"
MEDSAM2_CHECKPOINT_ENV = "nnUNet_MedSAM2_checkpoint"
SWINUNET_CHECKPOINT_ENV = "nnUNet_SwinUNet_checkpoint"
TRANSUNET_CHECKPOINT_ENV = "nnUNet_TransUNet_checkpoint"
EXT_TRAINER_ENV = "nnUNet_extTrainer"
ENCODER_PRECISION_ENV = "NNMSF_ENCODER_PRECISION"
NNUNET_FOLDER_ENVS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
ENCODER_PRECISIONS = ("auto", "fp32", "bf16")

EXT_TRAINER_DIR = Path(__file__).resolve().parent / "nnunet_ext"


def checkpoint_path(variable: str) -> str | None:
    """The file a checkpoint variable names, or None when it is unset or empty."""
    return os.environ.get(variable) or None


def nnunet_folder(variable: str) -> Path | None:
    """One of nnU-Net's three folders (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``), or None."""
    if variable not in NNUNET_FOLDER_ENVS:
        raise ValueError(f"{variable!r} is not one of nnU-Net's folders {NNUNET_FOLDER_ENVS}")
    value = os.environ.get(variable)
    return Path(value) if value else None


def ext_trainer_path() -> str:
    """The folder to put in ``nnUNet_extTrainer`` so nnU-Net finds this package's trainers."""
    return str(EXT_TRAINER_DIR)


def ext_trainer_value(current: str | None = None) -> str:
    """``nnUNet_extTrainer`` with our folder appended once to what the user has (nnU-Net searches every folder).

    ``current`` defaults to the variable's present value.
    """
    if current is None:
        current = os.environ.get(EXT_TRAINER_ENV, "")
    folders = [folder for folder in current.split(os.pathsep) if folder]
    ours = ext_trainer_path()
    if not any(_same_folder(folder, ours) for folder in folders):
        folders.append(ours)
    return os.pathsep.join(folders)


def encoder_precision() -> str:
    """``NNMSF_ENCODER_PRECISION``: 'auto' (default), 'fp32' or 'bf16' for the frozen foundation encoder."""
    value = (os.environ.get(ENCODER_PRECISION_ENV) or "auto").strip().lower()
    if value not in ENCODER_PRECISIONS:
        raise ValueError(f"{ENCODER_PRECISION_ENV}={value!r} is not one of {', '.join(ENCODER_PRECISIONS)}; "
                         f"unset it (auto: bf16 where the hardware computes it natively) or choose one.")
    return value


@contextlib.contextmanager
def temporary_environ(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) variables for the duration of a block, then restore the caller's values."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _same_folder(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b
