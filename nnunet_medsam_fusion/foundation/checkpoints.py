"""Reading, recognising, validating and loading MedSAM / SAM / MedSAM2 checkpoint files.

Peers' users most often hit checkpoints that silently load nothing (``strict=False``). Here every
``image_encoder.*`` key and shape is checked before anything is copied, and a wrong file gets an error that
says what was found, what was expected and which environment variable to set.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..settings import MEDSAM2_CHECKPOINT_ENV, MEDSAM_CHECKPOINT_ENV, CheckpointFileError, check_checkpoint_file
from ..state_dicts import short_list, state_dict_problems
from .architectures import (
    BOWANG_MEDSAM2,
    HIERA_NAMES,
    HIERA_SIZES,
    MEDICAL_SAM2,
    SAM_VIT_NAMES,
    native_input_size,
)
from .encoder import FoundationEncoder
from .spec import FoundationSpec

ENCODER_PREFIX = "image_encoder."
# Present only in SAM2.1 checkpoints (outside the image encoder): they tell bowang-lab MedSAM2 (SAM2.1 based)
# from Medical SAM 2 (SAM2.0 based), whose image-encoder keys and shapes are the same.
SAM21_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")

_WHERE_WEIGHTS_COME_FROM = (
    f"MedSAM (SAM ViT-B, medsam_vit_b.pth) goes in {MEDSAM_CHECKPOINT_ENV}; MedSAM2 (Medical SAM 2 "
    f"MedSAM2_pretrain.pth or bowang-lab MedSAM2_latest.pt) goes in {MEDSAM2_CHECKPOINT_ENV}."
)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used for the requested foundation encoder."""


class CheckpointNotFoundError(CheckpointError, CheckpointFileError):
    """The checkpoint path names no usable file (missing, a folder, unreadable, empty or text): the same
    refusal as for the variables (``settings.check_checkpoint_file``)."""


def read_state_dict(checkpoint_path: str | Path, variable: str | None = None) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, on the CPU, unwrapped from {"model": sd} / {"state_dict": sd}.

    ``variable`` (the checkpoint variable the path came from) is named in the error for a bad path.
    """
    path = check_checkpoint_file(checkpoint_path, variable, CheckpointNotFoundError)
    try:
        loaded = _load_tensors(path)
    except pickle.UnpicklingError as error:  # weights_only refused an object that would run code
        raise CheckpointError(
            f"Refused to read {path}: it stores pickled Python objects beyond tensors and plain containers "
            f"({str(error).splitlines()[-1][:200]}), and loading them could run code. Save the weights alone "
            "(torch.save(model.state_dict(), path)) or use the checkpoint file as its authors publish it."
        ) from error
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError... for bad files
        raise CheckpointError(
            f"Could not read {path} as a PyTorch checkpoint ({type(error).__name__}: {str(error)[:300]}). "
            "The file may be truncated (an interrupted download) or not a .pth/.pt file; download it again."
        ) from error
    if isinstance(loaded, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(loaded.get(wrapper), dict):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, dict) or not any(isinstance(v, Tensor) for v in loaded.values()):
        found = (
            f"a dict with keys {short_list(sorted(map(str, loaded)))}"
            if isinstance(loaded, dict)
            else f"a {type(loaded).__name__}"
        )
        raise CheckpointError(
            f"{path} holds {found}, not a state dict of tensors. Expected a SAM/MedSAM state dict, or a SAM2 "
            '{"model": state_dict} checkpoint. ' + _WHERE_WEIGHTS_COME_FROM
        )
    return {_strip_ddp_prefix(key): value for key, value in loaded.items() if isinstance(value, Tensor)}


def _load_tensors(path: Path) -> object:
    """``torch.load`` with weights only; memory-mapped where the file allows it, so that reading a ViT-B
    checkpoint to copy it into an encoder does not hold a second copy of its weights in memory."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error) and "zip" not in str(error):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) torch.save format


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes: identifies the exact pretrained weights a model folder was trained from."""
    digest = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def image_encoder_state(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ``image_encoder.*`` entries, prefix removed."""
    return {
        key[len(ENCODER_PREFIX) :]: value
        for key, value in state_dict.items()
        if key.startswith(ENCODER_PREFIX)
    }


def checkpoint_kind(state_dict: dict[str, Tensor]) -> str:
    """'sam_vit' (SAM/MedSAM), 'sam2' (SAM2/MedSAM2), 'hf_sam' (transformers port) or 'unknown'."""
    if f"{ENCODER_PREFIX}trunk.patch_embed.proj.weight" in state_dict:
        return "sam2"
    if f"{ENCODER_PREFIX}patch_embed.proj.weight" in state_dict:
        return "sam_vit"
    if any(key.startswith("vision_encoder.") for key in state_dict):
        return "hf_sam"
    return "unknown"


def is_sam21(state_dict: dict[str, Tensor]) -> bool:
    """True when the SAM2.1-only parameters are present (bowang-lab MedSAM2 is SAM2.1 based)."""
    return any(key in state_dict for key in SAM21_KEYS)


def describe_state_dict(state_dict: dict[str, Tensor]) -> str:
    """One line naming what a checkpoint holds, for error messages."""
    kind = checkpoint_kind(state_dict)
    if kind == "sam_vit":
        embed_dim, depth = _width_and_depth(
            state_dict, f"{ENCODER_PREFIX}patch_embed.proj.weight", f"{ENCODER_PREFIX}blocks."
        )
        name = SAM_VIT_NAMES.get(embed_dim, "unknown size")
        return f"a SAM/MedSAM ViT checkpoint (embed_dim {embed_dim}, {depth} blocks: {name})"
    if kind == "sam2":
        embed_dim, depth = _width_and_depth(
            state_dict, f"{ENCODER_PREFIX}trunk.patch_embed.proj.weight", f"{ENCODER_PREFIX}trunk.blocks."
        )
        name = HIERA_NAMES.get((embed_dim, depth), "unknown size")
        version = (
            "SAM2.1 (bowang-lab MedSAM2 style)" if is_sam21(state_dict) else "SAM2.0 (Medical SAM 2 style)"
        )
        return f"a {version} Hiera checkpoint (embed_dim {embed_dim}, {depth} trunk blocks: {name})"
    if kind == "hf_sam":
        return (
            "a Hugging Face transformers SamModel checkpoint (keys vision_encoder.*), which this package "
            "does not read; use the original medsam_vit_b.pth"
        )
    return f"an unrecognised state dict (first keys: {short_list(sorted(state_dict))})"


def describe_checkpoint(checkpoint_path: str | Path) -> str:
    """One line naming what a checkpoint file holds (family and size), e.g. for a CLI check of a download."""
    return describe_state_dict(read_state_dict(checkpoint_path))


def detect_medsam2_spec(checkpoint_path: str | Path, input_size: int | None = None,
                        sizes: Sequence[str] | None = None) -> FoundationSpec:
    """Family and size of a MedSAM2 checkpoint from its keys and shapes.

    SAM2.1-only keys -> bowang_medsam2 (native input 512), otherwise medical_sam2 (native 1024); the size
    comes from the trunk's width and block count. ``input_size`` defaults to the family's native size.
    ``sizes`` limits the accepted trunk sizes (default: every known one); another size is a CheckpointError.
    """
    state_dict = read_state_dict(checkpoint_path, MEDSAM2_CHECKPOINT_ENV)
    kind = checkpoint_kind(state_dict)
    if kind == "sam_vit":
        raise CheckpointError(
            f"{checkpoint_path} is {describe_state_dict(state_dict)}, not a MedSAM2 (SAM2 Hiera) checkpoint. "
            f"Set {MEDSAM_CHECKPOINT_ENV} to it and use a MedSAM trainer, or point "
            f"{MEDSAM2_CHECKPOINT_ENV} at MedSAM2_pretrain.pth / MedSAM2_latest.pt."
        )
    if kind != "sam2":
        raise CheckpointError(
            f"{checkpoint_path} is {describe_state_dict(state_dict)}; expected a SAM2 checkpoint with "
            f"'{ENCODER_PREFIX}trunk.*' and '{ENCODER_PREFIX}neck.*' keys. " + _WHERE_WEIGHTS_COME_FROM
        )
    family = BOWANG_MEDSAM2 if is_sam21(state_dict) else MEDICAL_SAM2
    embed_dim, depth = _width_and_depth(
        state_dict, f"{ENCODER_PREFIX}trunk.patch_embed.proj.weight", f"{ENCODER_PREFIX}trunk.blocks."
    )
    accepted = {name: HIERA_SIZES[name] for name in (sizes if sizes is not None else HIERA_SIZES)}
    matches = [name for name, hp in accepted.items() if (hp.embed_dim, hp.depth) == (embed_dim, depth)]
    if not matches:
        raise CheckpointError(
            f"{checkpoint_path} is {describe_state_dict(state_dict)}; supported MedSAM2 trunks are "
            + ", ".join(f"{name} (embed_dim {hp.embed_dim}, {hp.depth} blocks)" for name, hp in accepted.items())
            + "."
        )
    size = matches[0]
    return FoundationSpec(
        family, size, input_size if input_size is not None else native_input_size(family, size)
    )


def load_foundation_weights(encoder: FoundationEncoder, checkpoint_path: str | Path) -> None:
    """Load a MedSAM / SAM / MedSAM2 checkpoint into ``encoder`` after validating every key and shape."""
    spec = encoder.spec
    state_dict = read_state_dict(checkpoint_path, MEDSAM2_CHECKPOINT_ENV if spec.is_sam2 else MEDSAM_CHECKPOINT_ENV)
    kind = checkpoint_kind(state_dict)
    expected_kind = "sam2" if spec.is_sam2 else "sam_vit"
    if kind != expected_kind:
        if spec.is_sam2:
            fix = (
                f"set {MEDSAM2_CHECKPOINT_ENV} to a MedSAM2 file (MedSAM2_pretrain.pth or MedSAM2_latest.pt)"
                + (f"; a ViT file belongs in {MEDSAM_CHECKPOINT_ENV}" if kind == "sam_vit" else "")
            )
        else:
            fix = f"set {MEDSAM_CHECKPOINT_ENV} to a MedSAM/SAM ViT-B file (medsam_vit_b.pth)" + (
                f"; a SAM2 file belongs in {MEDSAM2_CHECKPOINT_ENV}" if kind == "sam2" else ""
            )
        raise CheckpointError(
            f"{checkpoint_path} is {describe_state_dict(state_dict)}, but the encoder is "
            f"{_describe_spec(spec)}: {fix}."
        )
    if spec.is_sam2 and is_sam21(state_dict) != (spec.family == BOWANG_MEDSAM2):
        found_family = BOWANG_MEDSAM2 if is_sam21(state_dict) else MEDICAL_SAM2
        raise CheckpointError(
            f"{checkpoint_path} is {describe_state_dict(state_dict)}, i.e. family {found_family!r}, but the "
            f"encoder was built for {spec.family!r}, whose input normalisation differs. Use the checkpoint "
            "the plans were made with, or re-detect the spec from this file (detect_medsam2_spec)."
        )
    encoder_state = image_encoder_state(state_dict)
    check_shapes(encoder_state, encoder.checkpoint_shapes(), checkpoint_path, state_dict, spec)
    encoder.image_encoder.load_state_dict(encoder.adapt_state_dict(encoder_state), strict=True)


def check_shapes(
    found: dict[str, Tensor],
    expected: dict[str, torch.Size],
    checkpoint_path: str | Path,
    state_dict: dict[str, Tensor],
    spec: FoundationSpec,
) -> None:
    """Raise CheckpointError naming missing / unexpected keys and shape mismatches, if any."""
    problems = state_dict_problems({key: value.shape for key, value in found.items()}, expected,
                                   keys=f"{ENCODER_PREFIX}* keys")
    if problems:
        raise CheckpointError(
            f"{checkpoint_path} does not fit the {_describe_spec(spec)}: {'; '.join(problems)}. "
            f"The file is {describe_state_dict(state_dict)}. " + _WHERE_WEIGHTS_COME_FROM
        )


def _describe_spec(spec: FoundationSpec) -> str:
    return f"{spec.family} encoder of size {spec.size!r}"


def _width_and_depth(state_dict: dict[str, Tensor], patch_key: str, blocks_prefix: str) -> tuple[int, int]:
    """Embedding width (patch-embed output channels) and number of transformer blocks of a checkpoint."""
    pattern = re.compile(re.escape(blocks_prefix) + r"(\d+)\.")
    blocks = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    return int(state_dict[patch_key].shape[0]), len(blocks)


def _strip_ddp_prefix(key: str) -> str:
    """Checkpoints saved from DistributedDataParallel carry a 'module.' prefix."""
    return key[len("module.") :] if key.startswith("module.") else key


