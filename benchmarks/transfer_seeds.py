"""Validation Dice of the fused Tiny trainers with a pretrained, an untrained and a pretrained-but-flipped tiny
encoder, for several seeds (docs/benchmarks.md, "Transfer of pretrained features", the seed table).

The procedure is the slow test ``tests/test_transfer.py::test_pretrained_encoder_raises_validation_dice``, which runs
seed 0; this script calls the same functions of that test module (``blob_slices``, ``pretrain_and_save``,
``train_and_validate``; the repository root is put on ``sys.path``) and sets its ``SEED`` for each seed (nnU-Net's
initial weights and batches; the pretraining does not depend on it, so each family is pretrained once). The
fused-training set is the test's (12 blob volumes planned by ``nnUNetv2_plan_and_preprocess``; written here unless
``--root`` holds it), encoders in float32 as in the test. Prints a Markdown table: pretrained, untrained, flipped,
the gain (pretrained - untrained) and flipped - untrained per family and seed. With the defaults (both families,
seeds 0-2, the test's schedules) about 12 minutes on two idle CPU cores (the ViT pretraining alone about 2.5
minutes), ``--families medical_sam2 --seeds 1`` about 2 minutes; far longer on a loaded machine.
``--pretrain-steps`` / ``--train-steps`` shorten the schedules for a quick check of the script (the figures then
mean nothing).

    python benchmarks/transfer_seeds.py [--families medsam medical_sam2] [--seeds 0 1 2] [--root DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import _common

LABELS = {"medsam": "ViT tiny (`medsam`)", "medical_sam2": "Hiera tiny (`medical_sam2`)"}


def signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def family_rows(family: str, seeds: list[int], root: Path, work: Path, pretrain_steps: int) -> list[list[str]]:
    """One row per seed: Dice pretrained / untrained / pretrained flipped, gain, flipped - untrained."""
    from tests import test_transfer as transfer

    images, labels = transfer.blob_slices(range(100, 108))
    pretrained, untrained = work / f"{family}.pth", work / f"{family}_untrained.pth"
    transfer.pretrain_and_save(family, images, labels, pretrained, pretrain_steps)
    transfer.pretrain_and_save(family, images, labels, untrained, steps=0)
    rows = []
    for seed in seeds:
        transfer.SEED = seed
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net narrates each build
            dice = {name: transfer.train_and_validate(root, family, path, work / f"{family}_{seed}_{index}", flip)
                    for index, (name, path, flip) in enumerate((("pretrained", pretrained, False),
                                                                ("untrained", untrained, False),
                                                                ("flipped", pretrained, True)))}
        label = f"{LABELS[family]}, {transfer.SCHEDULE[family][1]} steps" if not rows else ""
        rows.append([label, str(seed), *(f"{dice[name]:.3f}" for name in ("pretrained", "untrained", "flipped")),
                     signed(dice["pretrained"] - dice["untrained"]), signed(dice["flipped"] - dice["untrained"])])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=tuple(LABELS), default=list(LABELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default: the test's PRETRAIN_STEPS")
    parser.add_argument("--train-steps", type=int, default=None, help="default: the test's SCHEDULE")
    parser.add_argument("--root", type=Path, default=None,
                        help="folder for the blob set's raw/preprocessed data; reused when already planned")
    args = parser.parse_args()

    from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV, temporary_environ
    from tests import test_transfer as transfer

    if args.train_steps is not None:
        for family, (cases, _) in transfer.SCHEDULE.items():
            transfer.SCHEDULE[family] = (cases, args.train_steps)
    rows = []
    with _common.planned_root(args.root, _common.synthetic_sets()["blobs"]) as root, \
            tempfile.TemporaryDirectory(prefix="nnmsf_transfer_") as work, \
            temporary_environ(**{ENCODER_PRECISION_ENV: "fp32"}):
        for family in args.families:
            steps = transfer.PRETRAIN_STEPS[family] if args.pretrain_steps is None else args.pretrain_steps
            rows += family_rows(family, args.seeds, root, Path(work), steps)
    print("validation Dice of the fused Tiny trainer (tiny encoders pretrained on synthetic blob volumes; "
          "float32; one run per cell)")
    print(_common.markdown_table(["encoder", "seed", "pretrained", "untrained", "pretrained, flipped", "gain",
                                  "flipped − untrained"], rows, right={1, 2, 3, 4, 5, 6}))


if __name__ == "__main__":
    main()
