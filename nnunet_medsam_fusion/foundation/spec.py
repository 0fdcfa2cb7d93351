"""What shapes a foundation encoder and its input, as a small value that travels inside nnU-Net's plans.

Prediction rebuilds the network from trainer class + plans only, so everything that decides the frozen encoder's
weights layout, the mapping from nnU-Net's normalised patch to the encoder's input and the precision it computes
in must be a plain, JSON-able record that needs no checkpoint file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .architectures import INPUT_MULTIPLE, MEDSAM, NATIVE_INPUT_SIZE, native_input_size

FP32 = "fp32"
BF16 = "bf16"
RECORDED_PRECISIONS = (FP32, BF16)  # what a model folder records (precision.py resolves and runs them)
KEYS = frozenset({"family", "size", "input_size", "intensity_window", "precision", "slice_step"})


@dataclass(frozen=True)
class FoundationSpec:
    """Everything that shapes a foundation encoder and its preprocessing; derivable without any checkpoint file.

    ``intensity_window``: (low, high) in nnU-Net-normalised units, mapped linearly to [0, 1] and clipped: one
    fixed mapping for every tile and case (see ``preprocessing.py``). None only while a trainer has not yet read
    it from the plans (``with_plans_window``): an encoder refuses to run without one.
    ``precision``: ``"fp32"`` or ``"bf16"``, resolved on the first fold's training device (``precision.py``).
    ``slice_step``: 3D configurations encode about every ``slice_step``-th slice of a patch (``fusion/slices.py``);
    1 in 2D.
    """

    family: str
    size: str
    input_size: int
    intensity_window: tuple[float, float] | None = None
    precision: str = FP32
    slice_step: int = 1

    def __post_init__(self) -> None:
        native_input_size(self.family, self.size)  # validates family and size
        multiple = INPUT_MULTIPLE[self.family]
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int):
            raise ValueError(f"input_size must be an int, got {self.input_size!r}.")
        if self.input_size <= 0 or self.input_size % multiple:
            nearest = max(multiple, round(self.input_size / multiple) * multiple)
            raise ValueError(
                f"input_size {self.input_size} is not a positive multiple of {multiple}, which the "
                f"{self.family} encoder needs; use e.g. {nearest}."
            )
        if isinstance(self.slice_step, bool) or not isinstance(self.slice_step, int) or self.slice_step < 1:
            raise ValueError(f"slice_step must be an int >= 1, got {self.slice_step!r}.")
        if self.precision not in RECORDED_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(RECORDED_PRECISIONS)}, got {self.precision!r}.")
        if self.intensity_window is not None:
            window = tuple(self.intensity_window)
            if len(window) != 2 or not all(isinstance(v, int | float) and math.isfinite(v) for v in window) \
                    or not window[0] < window[1]:
                raise ValueError(
                    f"intensity_window must be two finite numbers (low, high) with low < high, got "
                    f"{self.intensity_window!r}; compute it with "
                    "nnunet_medsam_fusion.foundation.preprocessing.intensity_window(plans, configuration)."
                )
            object.__setattr__(self, "intensity_window", (float(window[0]), float(window[1])))

    @property
    def native_input_size(self) -> int:
        return NATIVE_INPUT_SIZE[(self.family, self.size)]

    @property
    def is_sam2(self) -> bool:
        """True for the SAM2 Hiera families (MedSAM2), False for the SAM ViT family (MedSAM)."""
        return self.family != MEDSAM

    def to_dict(self) -> dict:
        window = None if self.intensity_window is None else list(self.intensity_window)
        return {"family": self.family, "size": self.size, "input_size": self.input_size,
                "intensity_window": window, "precision": self.precision, "slice_step": self.slice_step}

    @classmethod
    def from_dict(cls, d: dict) -> FoundationSpec:
        """The spec a model folder's plans record (exactly the keys of :meth:`to_dict`, with a window)."""
        if not isinstance(d, dict) or set(d) != KEYS or d.get("intensity_window") is None:
            found = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"A recorded foundation spec needs exactly the keys {sorted(KEYS)} with an intensity "
                             f"window, got {found}. Use the plans.json that training wrote into the model folder.")
        return cls(family=d["family"], size=d["size"], input_size=d["input_size"],
                   intensity_window=tuple(d["intensity_window"]), precision=d["precision"],
                   slice_step=d["slice_step"])
