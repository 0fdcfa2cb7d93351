"""In which precision the frozen encoder runs: bf16 where the hardware computes it natively, else float32.

``NNMSF_ENCODER_PRECISION`` (read by ``settings.encoder_precision``): ``auto`` (default) = bf16 autocast on CUDA
GPUs that support it and on CPUs with native bf16 matrix instructions (AMX-BF16 or AVX512-BF16), float32
elsewhere; ``fp32`` = always float32; ``bf16`` = bf16, refused on a CPU that would only emulate it (slower than
float32 there). Only the frozen encoder is affected; the trainable network keeps nnU-Net's own precision.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV, encoder_precision

NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 matrix instructions


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


def encoder_dtype(device: torch.device, setting: str | None = None) -> torch.dtype | None:
    """The autocast dtype for the frozen encoder on ``device`` (None = plain float32).

    ``setting`` defaults to ``NNMSF_ENCODER_PRECISION``.
    """
    setting = setting if setting is not None else encoder_precision()
    if setting == "fp32":
        return None
    if device.type == "cuda":
        if setting == "auto" and not torch.cuda.is_bf16_supported():
            return None
        return torch.bfloat16
    if device.type == "cpu":
        if cpu_bf16_flags():
            return torch.bfloat16
        if setting == "bf16":
            raise ValueError(
                f"{ENCODER_PRECISION_ENV}=bf16, but this CPU has no native bf16 matrix instructions "
                f"({' or '.join(NATIVE_BF16_CPU_FLAGS)} in /proc/cpuinfo), so bf16 would be emulated and slower "
                f"than float32. Unset {ENCODER_PRECISION_ENV} (auto picks float32 here) or set it to fp32.")
        return None
    return None  # other devices (e.g. MPS): float32


def describe_encoder_precision(device: torch.device) -> str:
    """One line for logs and benchmark tables, e.g. ``bf16 (auto: avx512_bf16)`` or ``fp32 (auto)``."""
    setting = encoder_precision()
    dtype = encoder_dtype(device, setting)
    if dtype is None:
        return f"fp32 ({setting})"
    why = ", ".join(cpu_bf16_flags()) if device.type == "cpu" else device.type
    return f"bf16 ({setting}: {why})"
