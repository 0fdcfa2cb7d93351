"""Validation Dice of the fused Tiny trainers with a pretrained, an untrained and a pretrained-but-misaligned tiny
encoder, for several seeds (docs/benchmarks.md, "Transfer of pretrained features", the seed tables), on ``2d``
or on ``3d_fullres`` for several encoded-slice steps (the accuracy side of the 3D default).

The procedure is the slow test ``tests/test_transfer.py::test_pretrained_encoder_raises_validation_dice``, which runs
seed 0; this script calls the same functions of that test module (``blob_slices``, ``pretrain_and_save``,
``train_and_validate``; the repository root is put on ``sys.path``) and sets its ``SEED`` for each seed (nnU-Net's
initial weights and batches; the pretraining does not depend on it, so each family is pretrained once). The
fused-training set is the test's (12 blob volumes planned by ``nnUNetv2_plan_and_preprocess``; written here unless
``--root`` holds it), encoders in float32 as in the test. Prints a Markdown table: pretrained, untrained, misaligned
(flipped in 2D, slices shifted in 3D), the gain (pretrained - untrained) and misaligned - untrained per family (slice
step) and seed, with the runs' wall time. ``--families medical_sam2 --seeds 1`` is the quickest whole run.
``--pretrain-steps`` / ``--train-steps`` change the schedules (shorter: a quick check of the script, the figures
then mean nothing); ``--width-divisor`` divides the 3D network's features per stage, to afford longer 3D schedules
on a CPU (the test runs nnU-Net's width).

    python benchmarks/transfer_seeds.py [--families medsam medical_sam2] [--seeds 0 1 2] [--root DIR]
    python benchmarks/transfer_seeds.py --configuration 3d_fullres --families medsam --slice-steps 1 2 4
    python benchmarks/transfer_seeds.py --configuration 3d_fullres --families medical_sam2 --seeds 0 \
        --train-steps 400 --width-divisor 4
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import _common

LABELS = {"medsam": "ViT tiny (`medsam`)", "medical_sam2": "Hiera tiny (`medical_sam2`)"}


def signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def narrower(load_plans, divisor: int):
    """``load_plans`` whose 3d_fullres network has its features per stage divided by ``divisor``."""
    def load(*args, **kwargs) -> dict:
        plans = load_plans(*args, **kwargs)
        network = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
        network["features_per_stage"] = [max(1, width // divisor) for width in network["features_per_stage"]]
        return plans
    return load


def family_rows(family: str, seeds: list[int], root: Path, work: Path, pretrain_steps: int, configuration: str,
                slice_steps: list[int]) -> list[list[str]]:
    """One row per slice step (3D) and seed: Dice pretrained / untrained / pretrained misaligned, the gain,
    misaligned - untrained, and the seconds the three runs took."""
    from tests import test_transfer as transfer

    images, labels = transfer.blob_slices(range(100, 108))
    pretrained, untrained = work / f"{family}.pth", work / f"{family}_untrained.pth"
    transfer.pretrain_and_save(family, images, labels, pretrained, pretrain_steps)
    transfer.pretrain_and_save(family, images, labels, untrained, steps=0)
    rows = []
    for slice_step in slice_steps:
        transfer.TRAINERS[family].volume_slice_step = slice_step
        for seed in seeds:
            transfer.SEED = seed
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net narrates each build
                dice = {name: transfer.train_and_validate(root, family, path, work / f"{family}_{seed}_{index}",
                                                          misalign, configuration)
                        for index, (name, path, misalign) in enumerate((("pretrained", pretrained, False),
                                                                        ("untrained", untrained, False),
                                                                        ("misaligned", pretrained, True)))}
            seconds = time.perf_counter() - start
            label = f"{LABELS[family]}, {transfer.SCHEDULE[family][1]} steps" if not rows else ""
            step = [str(slice_step)] if configuration != "2d" else []
            rows.append([label, *step, str(seed), *(f"{dice[name]:.3f}" for name in ("pretrained", "untrained",
                                                                                      "misaligned")),
                         signed(dice["pretrained"] - dice["untrained"]),
                         signed(dice["misaligned"] - dice["untrained"]), f"{seconds:.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=tuple(LABELS), default=list(LABELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default: the test's PRETRAIN_STEPS")
    parser.add_argument("--train-steps", type=int, default=None, help="default: the test's SCHEDULE")
    parser.add_argument("--configuration", choices=("2d", "3d_fullres"), default="2d")
    parser.add_argument("--slice-steps", type=int, nargs="+", default=None,
                        help="3d_fullres: the encoded-slice steps to compare (default: the trainer's)")
    parser.add_argument("--width-divisor", type=int, default=1,
                        help="3d_fullres: divide the 3D network's features per stage by this (default 1)")
    parser.add_argument("--root", type=Path, default=None,
                        help="folder for the blob set's raw/preprocessed data; reused when already planned")
    args = parser.parse_args()

    from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV, temporary_environ
    from tests import test_transfer as transfer

    if args.train_steps is not None:
        for family, (cases, _) in transfer.SCHEDULE.items():
            transfer.SCHEDULE[family] = (cases, args.train_steps)
    if (args.slice_steps or args.width_divisor != 1) and args.configuration == "2d":
        parser.error("--slice-steps and --width-divisor are for --configuration 3d_fullres")
    if args.width_divisor < 1:
        parser.error("--width-divisor must be 1 or more")
    transfer.load_plans = narrower(transfer.load_plans, args.width_divisor)
    rows = []
    with _common.planned_root(args.root, _common.synthetic_sets()["blobs"], ("2d", args.configuration)) as root, \
            tempfile.TemporaryDirectory(prefix="nnmsf_transfer_") as work, \
            temporary_environ(**{ENCODER_PRECISION_ENV: "fp32"}):
        for family in args.families:
            steps = transfer.PRETRAIN_STEPS[family] if args.pretrain_steps is None else args.pretrain_steps
            slice_steps = args.slice_steps or [transfer.TRAINERS[family].volume_slice_step]
            rows += family_rows(family, args.seeds, root, Path(work), steps, args.configuration, slice_steps)
    width = f", 3D features per stage / {args.width_divisor}" if args.width_divisor != 1 else ""
    print(f"validation Dice of the fused Tiny trainer on {args.configuration}{width} (tiny encoders pretrained on "
          "synthetic blob volumes; float32; one run per cell; s: the three runs' wall time)")
    step = ["slice step"] if args.configuration != "2d" else []
    header = ["encoder", *step, "seed", "pretrained", "untrained", "pretrained, misaligned", "gain",
              "misaligned − untrained", "s"]
    print(_common.markdown_table(header, rows, right=set(range(1, len(header)))))


if __name__ == "__main__":
    main()
