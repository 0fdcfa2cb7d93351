"""The metric conventions by name (``--convention``): adding one is one module here and one line below."""

from __future__ import annotations

from nnunet_medsam_fusion.evaluation.conventions.base import Convention
from nnunet_medsam_fusion.evaluation.conventions.ours import OURS
from nnunet_medsam_fusion.evaluation.conventions.topbrain import TOPBRAIN
from nnunet_medsam_fusion.evaluation.conventions.topcow import TOPCOW

REGISTRY: dict[str, Convention] = {
    OURS.name: OURS,
    TOPCOW.name: TOPCOW,
    TOPBRAIN.name: TOPBRAIN,
}
DEFAULT = OURS.name


def get_convention(name: str) -> Convention:
    """The convention called ``name``; refuses an unknown name, listing the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown metric convention {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]
