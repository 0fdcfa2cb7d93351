"""In which precision the frozen encoder runs, decided once per model folder and kept whatever the machine.

``NNMSF_ENCODER_PRECISION`` (read by ``settings.encoder_precision``) is resolved when a model folder's first fold
starts training, on the training device: ``auto`` (default) = bf16 where the device computes it natively (CUDA
GPUs of compute capability 8.0 or later; CPUs with AMX-BF16 or AVX512-BF16), float32 elsewhere; ``fp32`` = float32;
``bf16`` = bf16, refused where it would be emulated. The result (``"fp32"`` or ``"bf16"``) is recorded in the
model folder's ``FoundationSpec``. At run time the recorded precision is what runs: each setting means what it
says even inside nnU-Net's CUDA autocast (fp16), because the encoder enters its own autocast region. Where the
recorded bf16 is not native on the device at hand, the encoder runs float32 and says so once, in one log line.
Only the frozen encoder is affected; the trainable network keeps nnU-Net's own precision.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV, encoder_precision

from .spec import BF16, FP32, RECORDED_PRECISIONS

NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 matrix instructions
_fallbacks_reported: set[tuple[str, str]] = set()


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native bf16 matrix-instruction flags this CPU reports (Linux /proc/cpuinfo); () if none or unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return tuple(flag for flag in NATIVE_BF16_CPU_FLAGS if flag in flags)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool(cpu_bf16_flags())
    return False


def why_native(device: torch.device) -> str:
    """What makes bf16 native here, for log lines."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"CUDA compute capability {major}.{minor}"
    return ", ".join(cpu_bf16_flags())


def resolve_precision(device: torch.device, setting: str | None = None) -> str:
    """The precision a new model folder records: ``setting`` (default ``NNMSF_ENCODER_PRECISION``) on ``device``."""
    setting = setting if setting is not None else encoder_precision()
    if setting == FP32:
        return FP32
    if native_bf16(device):
        return BF16
    if setting == BF16:
        raise ValueError(
            f"{ENCODER_PRECISION_ENV}=bf16, but the {device.type} device has no native bf16 matrix instructions "
            f"(CUDA compute capability 8.0+, or {' / '.join(NATIVE_BF16_CPU_FLAGS)} in /proc/cpuinfo), so bf16 "
            f"would be emulated and slower than float32. Unset {ENCODER_PRECISION_ENV} (auto picks float32 here) "
            "or set it to fp32.")
    return FP32


def encoder_dtype(recorded: str, device: torch.device) -> torch.dtype:
    """The dtype the frozen encoder computes in on ``device`` for a recorded precision.

    A recorded bf16 on a device without native bf16 falls back to float32, reported once per device type.
    """
    if recorded not in RECORDED_PRECISIONS:
        raise ValueError(f"Unknown encoder precision {recorded!r}; a model folder records one of "
                         f"{', '.join(RECORDED_PRECISIONS)}.")
    if recorded == FP32:
        return torch.float32
    if native_bf16(device):
        return torch.bfloat16
    if (recorded, device.type) not in _fallbacks_reported:
        _fallbacks_reported.add((recorded, device.type))
        print(f"nnunet_medsam_fusion: the model folder records a bf16 foundation encoder, but this {device.type} "
              "device has no native bf16: running it in float32.")
    return torch.float32


def encoder_autocast(dtype: torch.dtype, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast region the encoder runs in: bf16, or float32 with any enclosing autocast (nnU-Net's fp16
    on CUDA) switched off. Meta tensors (FLOP counting) carry no values, and torch has no autocast for them."""
    if device.type == "meta":
        return contextlib.nullcontext()
    if dtype == torch.float32:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def describe_encoder_precision(recorded: str, device: torch.device) -> str:
    """One line for logs and benchmark tables, e.g. ``bf16 (avx512_bf16)`` or ``fp32``."""
    if recorded == BF16 and native_bf16(device):
        return f"bf16 ({why_native(device)})"
    return FP32 if recorded == FP32 else "fp32 (bf16 recorded, not native here)"
