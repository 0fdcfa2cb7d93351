"""What shapes a foundation encoder and its input, as a small value that travels inside nnU-Net's plans.

Prediction rebuilds the network from trainer class + plans only, so everything that decides the frozen encoder's
weights layout *and* the mapping from nnU-Net's normalised patch to the encoder's input must be a plain, JSON-able
record that needs no checkpoint file: family, size, input size, intensity window and resize mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .architectures import INPUT_MULTIPLE, MEDSAM, NATIVE_INPUT_SIZE, native_input_size

LONGEST_SIDE = "longest_side"  # resize the longest side to input_size, pad the rest, crop the features back
STRETCH = "stretch"  # resize both sides to input_size (model folders trained before the window existed)
RESIZE_MODES = (LONGEST_SIDE, STRETCH)
LEGACY_KEYS = frozenset({"family", "size", "input_size"})
KEYS = LEGACY_KEYS | {"intensity_window", "resize"}


@dataclass(frozen=True)
class FoundationSpec:
    """Everything that shapes a foundation encoder and its preprocessing; derivable without any checkpoint file.

    ``intensity_window``: (low, high) in nnU-Net-normalised units, mapped linearly to [0, 1] and clipped: one
    fixed mapping for every tile and case (see ``preprocessing.py``). None maps each patch's own min/max to
    [0, 1] (what model folders trained before the window existed do; specs built without plans, e.g. in tests).
    ``resize``: ``"longest_side"`` keeps the aspect ratio; ``"stretch"`` is the legacy square resize.
    """

    family: str
    size: str
    input_size: int
    intensity_window: tuple[float, float] | None = None
    resize: str = LONGEST_SIDE

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
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}.")
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

    @property
    def is_legacy(self) -> bool:
        """True for the preprocessing of model folders trained before the window: per-patch min-max + stretch."""
        return self.intensity_window is None and self.resize == STRETCH

    def to_dict(self) -> dict:
        window = None if self.intensity_window is None else list(self.intensity_window)
        return {"family": self.family, "size": self.size, "input_size": self.input_size,
                "intensity_window": window, "resize": self.resize}

    @classmethod
    def from_dict(cls, d: dict) -> FoundationSpec:
        """The spec a plans entry records. A legacy entry (family, size, input_size only: model folders trained
        before the intensity window existed) gives the legacy preprocessing it was trained with."""
        if not isinstance(d, dict) or set(d) not in (LEGACY_KEYS, KEYS):
            found = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"A foundation spec needs exactly the keys {sorted(KEYS)} (or, for model folders "
                             f"trained before the intensity window, {sorted(LEGACY_KEYS)}), got {found}.")
        if set(d) == LEGACY_KEYS:
            return cls(family=d["family"], size=d["size"], input_size=d["input_size"], resize=STRETCH)
        window = d["intensity_window"]
        return cls(family=d["family"], size=d["size"], input_size=d["input_size"],
                   intensity_window=None if window is None else tuple(window), resize=d["resize"])
