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


# What each checkpoint variable must name: the fix in every refusal of a bad path.
CHECKPOINT_FILES = {
    MEDSAM_CHECKPOINT_ENV: "medsam_vit_b.pth of MedSAM, or sam_vit_b_01ec64.pth of SAM",
    MEDSAM2_CHECKPOINT_ENV: "MedSAM2_pretrain.pth of Medical SAM 2, or MedSAM2_latest.pt of bowang-lab MedSAM2",
    SWINUNET_CHECKPOINT_ENV: "swin_tiny_patch4_window7_224.pth",
    TRANSUNET_CHECKPOINT_ENV: "R50+ViT-B_16.npz",
}
OPTIONAL_CHECKPOINTS = (SWINUNET_CHECKPOINT_ENV, TRANSUNET_CHECKPOINT_ENV)  # unset: the baselines start from scratch
TEXT_SAMPLE_BYTES = 512  # weights files (zip, pickle, npz) hold binary bytes here; text files do not


class CheckpointFileError(ValueError):
    """A checkpoint path that names no usable weights file: missing, a folder, unreadable, empty or text."""


def checkpoint_path(variable: str) -> str | None:
    """The file a checkpoint variable names, or None when it is unset or empty.

    The file is checked here (:func:`check_checkpoint_file`), so every trainer that reads a variable refuses a
    bad path the same way before nnU-Net writes anything.
    """
    value = os.environ.get(variable) or None
    if value is not None:
        check_checkpoint_file(value, variable)
    return value


def check_checkpoint_file(path: str | Path, variable: str | None = None,
                          error: type[CheckpointFileError] = CheckpointFileError) -> Path:
    """``path`` (``~`` expanded) if it can be a weights file, else ``error`` naming the problem, the variable
    and the file it should name. Every checkpoint reader calls this first: one refusal for every variable."""
    path = Path(path).expanduser()
    problem = _file_problem(path)
    if problem is None:
        return path
    if variable is None:
        wanted = "; ".join(f"{name} takes {file}" for name, file in CHECKPOINT_FILES.items())
        raise error(f"Checkpoint {path} {problem}. Point the checkpoint variable at the weights file itself "
                    f"({wanted}).")
    wanted = CHECKPOINT_FILES.get(variable, "the weights file")
    unset = "; or unset it to train from scratch" if variable in OPTIONAL_CHECKPOINTS else ""
    raise error(f"{variable}={path} {problem}. Set {variable} to the weights file itself ({wanted}): "
                f"export {variable}=/path/to/{wanted.split()[0] if variable in CHECKPOINT_FILES else 'file'}{unset}.")


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a weights file, or None."""
    if not path.exists():
        return "is a broken link" if path.is_symlink() else "does not exist"
    if path.is_dir():
        return "is a directory, not a file"
    if not path.is_file():
        return "is not a regular file"
    try:
        with path.open("rb") as stream:
            head = stream.read(TEXT_SAMPLE_BYTES)
    except OSError as error:
        return f"cannot be read ({error.strerror or error}): check its permissions"
    if not head:
        return "is empty (0 bytes; an interrupted download?): download it again"
    if _is_text(head):
        first = head.decode("utf-8", errors="replace").strip().splitlines()[0][:80] if head.strip() else ""
        what = ("a Git LFS pointer, not the weights (run git lfs pull, or download the file itself)"
                if first.startswith("version https://git-lfs") else
                "an HTML page, not the weights (the download link returned a web page)"
                if first.lower().startswith(("<!doctype html", "<html")) else "not a weights file")
        return f"is a text file beginning {first!r}: {what}"
    return None


def _is_text(head: bytes) -> bool:
    """True for UTF-8 text without NUL bytes; weights files (zip, pickle, npz) fail both in their first bytes."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start >= len(head) - 3  # a character cut by the sample's end
    return True


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
