"""What shapes a foundation encoder and its input, as a small value that travels inside nnU-Net's plans.

Prediction rebuilds the network from trainer class + plans only, so everything that decides the frozen encoder's
weights layout, the mapping from nnU-Net's normalised patch to the encoder's input and the precision it computes
in must be a plain, JSON-able record that needs no checkpoint file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .architectures import INPUT_MULTIPLE, MEDSAM, NATIVE_INPUT_SIZE, native_input_size

FP32 = "fp32"
BF16 = "bf16"
RECORDED_PRECISIONS = (FP32, BF16)  # what a model folder records (precision.py resolves and runs them)
KEYS = frozenset({"family", "size", "input_size", "intensity_window", "precision", "depth_image", "cells_per_image"})
# What model folders trained before per-cell 3D encoding record: 3D patches were encoded every slice_step-th slice.
SLICE_STEP_KEYS = KEYS - {"depth_image", "cells_per_image"} | {"slice_step"}
DEPTH_IMAGES = re.compile(r"mip|mean|centre|slices[2-9]")  # how a slab becomes encoder input (fusion/depth_cells.py)


@dataclass(frozen=True)
class FoundationSpec:
    """Everything that shapes a foundation encoder and its preprocessing; derivable without any checkpoint file.

    ``intensity_window``: (low, high) in nnU-Net-normalised units, mapped linearly to [0, 1] and clipped: one
    fixed mapping for every tile and case (see ``preprocessing.py``). None only while a trainer has not yet read
    it from the plans (``with_plans_window``): an encoder refuses to run without one.
    ``precision``: ``"fp32"`` or ``"bf16"``, resolved on the first fold's training device (``precision.py``).
    ``depth_image``, ``cells_per_image``: 3D configurations encode one image per ``cells_per_image`` depth cells of
    the finest fused stage, made from the cells' slab as ``depth_image`` says (``fusion/depth_cells.py``); None in
    2D.
    """

    family: str
    size: str
    input_size: int
    intensity_window: tuple[float, float] | None = None
    precision: str = FP32
    depth_image: str | None = None
    cells_per_image: int = 1

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
        if self.depth_image is not None and not (isinstance(self.depth_image, str)
                                                 and DEPTH_IMAGES.fullmatch(self.depth_image)):
            raise ValueError(f"depth_image must be mip, mean, centre or slicesK (K = 2..9), got {self.depth_image!r}.")
        if isinstance(self.cells_per_image, bool) or not isinstance(self.cells_per_image, int) \
                or self.cells_per_image < 1:
            raise ValueError(f"cells_per_image must be an int >= 1, got {self.cells_per_image!r}.")
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
                "intensity_window": window, "precision": self.precision, "depth_image": self.depth_image,
                "cells_per_image": self.cells_per_image}

    @classmethod
    def from_dict(cls, d: dict) -> FoundationSpec:
        """The spec a model folder's plans record (exactly the keys of :meth:`to_dict`, with a window).

        A record from before per-cell 3D encoding (``slice_step``) reads as a spec without ``depth_image``: 2D
        models need none, and the 3D network refuses it (:func:`slice_step_model_message`). A ``slice_step`` above
        1 only ever came from a 3D configuration, so it is refused here already.
        """
        keys = set(d) if isinstance(d, dict) else set()
        if keys not in (KEYS, SLICE_STEP_KEYS) or d.get("intensity_window") is None:
            found = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"A recorded foundation spec needs exactly the keys {sorted(KEYS)} with an intensity "
                             f"window, got {found}. Use the plans.json that training wrote into the model folder.")
        if keys == SLICE_STEP_KEYS and (type(d["slice_step"]) is not int or d["slice_step"] != 1):
            raise ValueError(slice_step_model_message(d["slice_step"]))
        return cls(family=d["family"], size=d["size"], input_size=d["input_size"],
                   intensity_window=tuple(d["intensity_window"]), precision=d["precision"],
                   depth_image=d.get("depth_image"), cells_per_image=d.get("cells_per_image", 1))


RETRAIN = ("Move the model folder away (or train under another trainer name) and train it again with this version, "
           "or predict with the version it was trained with.")


def slice_step_model_message(slice_step: object) -> str:
    """Why a 3D model folder trained with per-slice encoding is refused, and what to do."""
    return (f"This 3D model folder's plans.json records the per-slice encoding of earlier versions (slice_step "
            f"{slice_step}: every {slice_step}. slice encoded, features interpolated along depth). This version "
            "encodes one image per depth cell of the fused stages, so the trained fusion layers would see other "
            f"features and predict differently. {RETRAIN}")


def no_depth_image_message() -> str:
    """Why a 3D configuration refuses a spec without ``depth_image`` (a 2D record, or per-slice encoding)."""
    return ("This 3D configuration's foundation record has no depth_image: it was written for 2D, or by an earlier "
            "version that encoded 3D patches slice by slice (per-slice encoding, slice_step), whose trained fusion "
            f"layers would see other features here and predict differently. {RETRAIN}")
