"""The one declaration of the trainers: what it derives (classes, __all__, paper rows, README) agrees with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
    nnUNetTrainerNoMirroring,
)

import nnunet_medsam_fusion.trainers as trainers
from nnunet_medsam_fusion import trainer_table
from nnunet_medsam_fusion.trainer_table import FAMILIES, PAPER_ROWS, TABLE1_TRAINERS, paper_row, variants
from nnunet_medsam_fusion.trainers.skeleton_recall import SkeletonRecallMixin

README = Path(__file__).resolve().parent.parent / "README.md"
ALL = [v for family in FAMILIES for v in variants(family) if not (v.is_family and v.family.derives_from)]


def test_readme_trainer_table_is_the_declaration():
    text = README.read_text()
    start = text.index("<!-- trainer table")
    table = text[text.index("\n", start) + 1:text.index("<!-- end of trainer table -->")].strip()
    assert table == trainer_table.readme_table()


def test_exported_names_are_the_declared_ones():
    assert trainers.__all__ == trainer_table.trainer_names() == [v.name for v in ALL]
    assert len(set(trainers.__all__)) == len(trainers.__all__)


@pytest.mark.parametrize("variant", ALL, ids=lambda v: v.name)
def test_each_class_is_what_its_name_declares(variant):
    cls = getattr(trainers, variant.name)
    assert cls.__name__ == variant.name
    assert issubclass(cls, SkeletonRecallMixin) == (variant.skeleton_recall or variant.family.name.endswith(
        "SkelRecall"))
    assert issubclass(cls, nnUNetTrainerNoMirroring) == variant.no_mirroring
    if variant.no_focal:
        assert cls.focal_loss is False
    if variant.input_512:
        assert cls.encoder_input_size == 512
    if variant.schedule:
        assert cls.schedule == variant.family.schedules[variant.schedule]
    elif not variant.family.derives_from:
        assert cls.schedule is None


def test_every_fusion_family_has_no_mirroring_variants():
    fusion = [family for family in FAMILIES if "Fusion" in family.name]
    assert len(fusion) == 4 and all(family.no_mirroring for family in fusion)
    assert {"nnUNetTrainerMedSAM2Fusion_NoMirroring", "nnUNetTrainerMedSAMFusion_NoMirroring",
            "nnUNetTrainerMedSAMFusionTiny_NoMirroring", "nnUNetTrainerMedSAM2FusionTiny_NoMirroring",
            "nnUNetTrainerMedSAMFusion_noFocal_512_SkelRecall_NoMirroring_demo"} <= set(trainers.__all__)
    assert paper_row("nnUNetTrainerMedSAM2Fusion_NoMirroring_demo") is None  # not a row of the paper


def test_paper_rows_name_declared_trainers_and_table1_is_seven_systems():
    declared = set(trainers.__all__) | {"nnUNetTrainer"}
    assert set(PAPER_ROWS) <= declared
    assert TABLE1_TRAINERS == ("nnUNetTrainerUNet", "nnUNetTrainerSwinUNet", "nnUNetTrainerTransUNet",
                               "nnUNetTrainer", "nnUNetTrainerFocalDice", "nnUNetTrainerMedSAMFusion",
                               "nnUNetTrainerMedSAM2Fusion")


@pytest.mark.parametrize("name, row", [
    ("nnUNetTrainerMedSAM2FusionTiny_noFocal_demo", "w/o FL (MS2)"),
    ("nnUNetTrainerMedSAMFusion_demo", "Full (MS)"),
    ("nnUNetTrainerFocalDice_5epochs", "w/o FF"),
    ("nnUNetTrainerMedSAMFusion_512", None),
    ("nnUNetTrainerMedSAM2Fusion_SkelRecall_demo", None),
    ("nnUNetTrainer_demo", "nnUNet"),
])
def test_paper_row_of_variants(name, row):
    assert paper_row(name) == row


def test_nnmsf_trainers_lists_the_declaration(capsys):
    from nnunet_medsam_fusion.cli import main

    assert main(["trainers"]) == 0
    assert capsys.readouterr().out.split() == trainer_table.trainer_names()
    assert main(["trainers", "--table1"]) == 0
    assert tuple(capsys.readouterr().out.split()) == TABLE1_TRAINERS
