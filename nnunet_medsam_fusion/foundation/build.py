"""Build a randomly initialised foundation encoder from its spec alone (no file read).

Prediction uses this, then nnU-Net loads the fused network's checkpoint, which holds these weights. The
third-party package of each family is imported only when that family is built, so either extra suffices alone.
"""

from __future__ import annotations

from .encoder import FoundationEncoder
from .spec import FoundationSpec


def build_foundation_encoder(spec: FoundationSpec) -> FoundationEncoder:
    """Randomly initialised, frozen encoder of the real classes with the parameter shapes of ``spec``."""
    if spec.is_sam2:
        try:
            from .medsam2 import MedSAM2Encoder
        except ImportError as error:
            raise ImportError(
                f"The {spec.family} encoder needs the 'sam2' package ({error}); "
                "install it with: pip install 'nnunet-medsam-fusion[medsam2]'"
            ) from error
        return MedSAM2Encoder(spec)
    try:
        from .medsam import MedSAMEncoder
    except ImportError as error:
        raise ImportError(
            f"The medsam encoder needs the 'segment_anything' package ({error}); "
            "install it with: pip install 'nnunet-medsam-fusion[medsam]'"
        ) from error
    return MedSAMEncoder(spec)
