"""Every trainer of this package, declared once: families x loss x encoder input x Skeleton Recall x schedule.

Pure data (no torch, no nnU-Net import), so that evaluation and the CLI can read it cheaply. ``trainers/``
builds the classes from it; ``__all__``, the paper-row map, ``nnmsf trainers`` and README's trainer table follow
from it (a test keeps README equal to :func:`readme_table`).

A trainer's name is its family's name followed by the variant suffixes it has, in this order:
``_noFocal`` (nnU-Net's Dice + CE instead of Dice + focal), ``_512`` (the foundation encoder at 512²),
``_SkelRecall`` (+ Skeleton Recall), ``_NoMirroring`` (no mirroring in training or prediction, as nnU-Net's
``nnUNetTrainerNoMirroring``: for left/right classes), ``_<schedule>`` (a shorter schedule). The order is ours:
what the method is (loss, encoder input, augmentation) before how long it trains, so the schedule stays last as
``SCHEDULE_SUFFIX`` expects. Every combination a family allows exists, e.g.
``nnUNetTrainerMedSAMFusion_noFocal_512_SkelRecall_NoMirroring_demo``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

# The paper's row names, in the order of its Table 1 (then the ablation rows). "Ours (MS)"/"Ours (MS2)" in its
# comparison tables are the "Full" ablation rows; "w/o FF" is nnU-Net with focal loss (our reading).
PAPER_ROWS: dict[str, str] = {
    "nnUNetTrainerUNet": "UNet",
    "nnUNetTrainerSwinUNet": "SwinUNet",
    "nnUNetTrainerTransUNet": "TransUNet",
    "nnUNetTrainer": "nnUNet",
    "nnUNetTrainerFocalDice": "w/o FF",
    "nnUNetTrainerMedSAMFusion": "Full (MS)",
    "nnUNetTrainerMedSAM2Fusion": "Full (MS2)",
    "nnUNetTrainerMedSAMFusion_noFocal": "w/o FL (MS)",
    "nnUNetTrainerMedSAM2Fusion_noFocal": "w/o FL (MS2)",
}
PAPER_ORDER: tuple[str, ...] = tuple(PAPER_ROWS.values())
TABLE1_TRAINERS: tuple[str, ...] = tuple(PAPER_ROWS)[:7]  # the seven systems of Table 1
SCHEDULE_SUFFIX = re.compile(r"_(demo|smoke|\d+epochs)$")  # same method, trained for less time
TINY = "Tiny"  # nnUNetTrainerMedSAMFusionTiny...: the same method with a tiny encoder of the real class


def method_name(trainer: str) -> str:
    """The trainer without schedule suffixes and without the Tiny marker: the method it trains."""
    while SCHEDULE_SUFFIX.search(trainer):
        trainer = SCHEDULE_SUFFIX.sub("", trainer)
    return trainer.replace(f"Fusion{TINY}", "Fusion")


def paper_row(trainer: str) -> str | None:
    """The paper's row for a trainer's method (schedule suffixes and tiny encoders allowed).

    Other variants (``_512`` encoder input, ``_SkelRecall`` loss) are not the paper's rows: None.
    """
    return PAPER_ROWS.get(method_name(trainer))


@dataclass(frozen=True)
class Schedule:
    """How long a variant trains (nnU-Net's default: 1000 epochs of 250 iterations, 50 validation iterations)."""

    epochs: int
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50


DEMO = Schedule(6, 12, 3)  # fits a laptop CPU: what `nnmsf demo` and the end-to-end tests train
# Swin-Unet from scratch leaves the all-background solution later than the CNNs: three times the demo's epochs.
SWIN_DEMO = Schedule(18, 12, 3)
DEMO_ONLY = {"demo": DEMO}
EPOCHS = {"demo": DEMO, "5epochs": Schedule(5), "50epochs": Schedule(50), "100epochs": Schedule(100),
          "250epochs": Schedule(250)}


@dataclass(frozen=True)
class Family:
    """One hand-written trainer (``derives_from``, default ``name``) and the variants this package derives."""

    name: str
    what: str
    no_focal: bool = False
    input_512: bool = False
    skeleton_recall: bool = False
    no_mirroring: bool = False
    schedules: dict[str, Schedule] | None = None
    derives_from: str | None = None  # the hand-written class, where the family's name is nnU-Net's own trainer

    @property
    def base(self) -> str:
        return self.derives_from or self.name


# family trainer                        what it is
#                                              _noFocal  _512  _SkelRecall  _NoMirroring  schedules
FAMILIES: tuple[Family, ...] = (
    Family("nnUNetTrainerUNet", "Ronneberger's 2D U-Net (64 → 1024 channels) on nnU-Net's pipeline",
           schedules=DEMO_ONLY),
    Family("nnUNetTrainerSwinUNet", "Swin-Unet (Swin-T, timm blocks) on nnU-Net's pipeline",
           schedules={"demo": SWIN_DEMO}),
    Family("nnUNetTrainerTransUNet", "TransUNet (R50-ViT-B/16, timm encoder) on nnU-Net's pipeline",
           schedules=DEMO_ONLY),
    Family("nnUNetTrainer", "nnU-Net itself (Dice + CE); only its variants are ours", schedules=DEMO_ONLY,
           derives_from="nnUNetTrainerPluginBase"),
    Family("nnUNetTrainerSkelRecall", "nnU-Net (Dice + CE) + Skeleton Recall", schedules=DEMO_ONLY),
    Family("nnUNetTrainerFocalDice", "nnU-Net with Dice + focal loss (γ = 2)",
           skeleton_recall=True, schedules=EPOCHS),
    Family("nnUNetTrainerMedSAMFusion", "+ frozen MedSAM ViT-B features, FrequencyLoRA, AttentionGate",
           no_focal=True, input_512=True, skeleton_recall=True, no_mirroring=True, schedules=DEMO_ONLY),
    Family("nnUNetTrainerMedSAMFusionTiny", "the same with a tiny SAM ViT (random weights unless given)",
           no_focal=True, skeleton_recall=True, no_mirroring=True, schedules=DEMO_ONLY),
    Family("nnUNetTrainerMedSAM2Fusion", "+ frozen MedSAM2 (SAM2 Hiera) features at two levels",
           no_focal=True, input_512=True, skeleton_recall=True, no_mirroring=True, schedules=DEMO_ONLY),
    Family("nnUNetTrainerMedSAM2FusionTiny", "the same with a tiny Hiera (random weights unless given)",
           no_focal=True, skeleton_recall=True, no_mirroring=True, schedules=DEMO_ONLY),
)


@dataclass(frozen=True)
class Variant:
    """One trainer nnU-Net can find: a family and the variant options it has."""

    family: Family
    no_focal: bool = False
    input_512: bool = False
    skeleton_recall: bool = False
    no_mirroring: bool = False
    schedule: str | None = None

    @property
    def name(self) -> str:
        return (self.family.name + ("_noFocal" if self.no_focal else "") + ("_512" if self.input_512 else "")
                + ("_SkelRecall" if self.skeleton_recall else "") + ("_NoMirroring" if self.no_mirroring else "")
                + (f"_{self.schedule}" if self.schedule else ""))

    @property
    def is_family(self) -> bool:
        """The family's own trainer (hand-written), not a derived variant."""
        return self.name == self.family.name


def variants(family: Family) -> list[Variant]:
    """Every trainer a family declares, the family's own first."""
    def options(allowed: bool) -> tuple[bool, ...]:
        return (False, True) if allowed else (False,)

    schedules = (None, *(family.schedules or {}))
    return [Variant(family, *choice) for choice in itertools.product(
        options(family.no_focal), options(family.input_512), options(family.skeleton_recall),
        options(family.no_mirroring), schedules)]


def trainer_names() -> list[str]:
    """Every trainer this package exports, in declaration order (nnU-Net's own nnUNetTrainer excluded)."""
    return [v.name for family in FAMILIES for v in variants(family) if not (v.is_family and v.family.derives_from)]


def readme_table() -> str:
    """README's trainer table, from the declaration."""
    rows = ["| paper row | trainer | what it is | variants |", "|---|---|---|---|"]
    for family in FAMILIES:
        suffixes = [name for name, allowed in (("_noFocal", family.no_focal), ("_512", family.input_512),
                                               ("_SkelRecall", family.skeleton_recall),
                                               ("_NoMirroring", family.no_mirroring)) if allowed]
        suffixes += [f"_{name}" for name in family.schedules or {}]
        row = PAPER_ROWS.get(family.name, "")
        if family.no_focal and f"{family.name}_noFocal" in PAPER_ROWS:
            row += f"; `_noFocal`: {PAPER_ROWS[family.name + '_noFocal']}"
        if family.name.endswith(TINY):
            row = "(the rows above, tiny encoder)"
        rows.append(f"| {row} | `{family.name}` | {family.what} | {', '.join(f'`{s}`' for s in suffixes)} |")
    return "\n".join(rows)
