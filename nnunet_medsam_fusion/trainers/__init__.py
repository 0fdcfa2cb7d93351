"""nnU-Net trainers of this package; the class names are what ``nnUNetv2_train -tr`` takes.

The hand-written trainers are the modules of this folder; every variant (``_noFocal``, ``_512``, ``_SkelRecall``,
schedules) is built from the one declaration in ``nnunet_medsam_fusion/trainer_table.py``, which also says
which trainer fills which row of the paper's tables (``nnmsf trainers`` lists them all).
"""

from nnunet_medsam_fusion.trainers.variants import build_trainers

TRAINERS = build_trainers(__name__)
globals().update(TRAINERS)
__all__ = list(TRAINERS)  # noqa: PLE0605 (built from the declaration)
