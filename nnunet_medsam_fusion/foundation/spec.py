"""What shapes a foundation encoder, as a small value that travels inside nnU-Net's plans.

Prediction rebuilds the network from trainer class + plans only, so the family, size and input size of the
frozen encoder must be a plain, JSON-able record that needs no checkpoint file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .architectures import INPUT_MULTIPLE, MEDSAM, NATIVE_INPUT_SIZE, native_input_size


@dataclass(frozen=True)
class FoundationSpec:
    """Everything that shapes a foundation encoder; derivable without any checkpoint file."""

    family: str
    size: str
    input_size: int

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

    @property
    def native_input_size(self) -> int:
        return NATIVE_INPUT_SIZE[(self.family, self.size)]

    @property
    def is_sam2(self) -> bool:
        """True for the SAM2 Hiera families (MedSAM2), False for the SAM ViT family (MedSAM)."""
        return self.family != MEDSAM

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FoundationSpec:
        expected = {"family", "size", "input_size"}
        if not isinstance(d, dict) or set(d) != expected:
            found = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"A foundation spec needs exactly the keys {sorted(expected)}, got {found}.")
        return cls(family=d["family"], size=d["size"], input_size=d["input_size"])
