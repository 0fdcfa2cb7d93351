"""Validation Dice of the fused Tiny trainers with a pretrained, an untrained and a pretrained-but-misaligned tiny
encoder, for several seeds (docs/benchmarks.md, "Transfer of pretrained features", the seed tables), on ``2d``
or on ``3d_fullres`` (the 3D transfer search: depth images, widths, training cases, slice spacing, step counts).

The procedure is the slow tests' in ``tests/test_transfer.py``, which run seed 0 (Hiera on 2d; the ViT on 3d_fullres
with the last command below): ``nnunet_medsam_fusion/testing/transfer_procedure.py``'s ``blob_slices``,
``pretrain_and_save`` and ``train_and_validate``. The seed sets nnU-Net's initial weights and
batches; the pretraining does not depend on it, so each family is pretrained once, on slices of 8 blob volumes at
the test's 0.3 x 0.3 x 0.6 mm whatever ``--spacing`` says. The fused-training set is the test's (12 blob volumes
planned by ``nnUNetv2_plan_and_preprocess``; written here unless ``--root`` holds it; ``--spacing`` writes it with
other voxel sizes), encoders in float32 as in the test. Prints a Markdown table: pretrained, untrained, misaligned
(flipped in 2D, slabs shifted in 3D), the gain (pretrained - untrained) and misaligned - untrained per family,
depth image, seed and step count (``--train-steps 100 200 300``: Dice after each, in one run), with the three runs'
wall time. ``--families medical_sam2 --seeds 1`` is the quickest whole run. ``--pretrain-steps`` / ``--train-steps``
change the schedules (shorter: a quick check of the script, the figures then mean nothing); ``--width-divisor``
divides the 3D network's features per stage, to afford longer 3D schedules on a CPU (the 3D test divides by 4).

    python benchmarks/transfer_seeds.py [--families medsam medical_sam2] [--seeds 0 1 2] [--root DIR]
    python benchmarks/transfer_seeds.py --configuration 3d_fullres --families medical_sam2 --seeds 0 \
        --train-steps 400 --width-divisor 4
    python benchmarks/transfer_seeds.py --configuration 3d_fullres --families medical_sam2 --seeds 0 \
        --train-steps 100 150 200 250 300 --width-divisor 4 --depth-images mip centre
    python benchmarks/transfer_seeds.py --configuration 3d_fullres --families medsam --width-divisor 4 \
        --train-steps 50 75 100 150 --spacing 0.3 0.3 1.2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import tempfile
import time
from pathlib import Path

import _common

from nnunet_medsam_fusion.text import markdown_table

LABELS = {"medsam": "ViT tiny (`medsam`)", "medical_sam2": "Hiera tiny (`medical_sam2`)"}
RUNS = (("pretrained", True, False), ("untrained", False, False), ("misaligned", True, True))


def signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def family_rows(family: str, args: argparse.Namespace, root: Path, work: Path) -> list[list[str]]:
    """One row per depth image (3D), seed and step count: Dice pretrained / untrained / pretrained misaligned, the
    gain, misaligned - untrained, and the seconds the three runs took."""
    from nnunet_medsam_fusion.testing import transfer_procedure as transfer

    images, labels = transfer.blob_slices(range(100, 108))
    pretrained, untrained = work / f"{family}.pth", work / f"{family}_untrained.pth"
    pretrain_steps = transfer.PRETRAIN_STEPS[family] if args.pretrain_steps is None else args.pretrain_steps
    transfer.pretrain_and_save(family, images, labels, pretrained, pretrain_steps)
    transfer.pretrain_and_save(family, images, labels, untrained, steps=0)
    cases, default_steps = transfer.SCHEDULE[family]
    steps = sorted(set(args.train_steps or [default_steps]))
    rows = []
    for depth_image in args.depth_images or [transfer.TRAINERS[family].volume_depth_image]:
        for seed in args.seeds:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net narrates each build
                dice = {name: transfer.train_and_validate(
                    root, family, pretrained if pretrained_weights else untrained, work / f"{family}_{seed}_{name}",
                    misalign, args.configuration, seed, args.train_cases or cases, steps, args.width_divisor,
                    depth_image if args.configuration != "2d" else None)
                    for name, pretrained_weights, misalign in RUNS}
            seconds = f"{time.perf_counter() - start:.0f}"
            for index, count in enumerate(steps):
                value = {name: dice[name][index] for name, *_ in RUNS}
                label = LABELS[family] if not rows else ""
                step = [depth_image if index == 0 else ""] if args.configuration != "2d" else []
                rows.append([label, *step, str(seed) if index == 0 else "", str(count),
                             *(f"{value[name]:.3f}" for name, *_ in RUNS),
                             signed(value["pretrained"] - value["untrained"]),
                             signed(value["misaligned"] - value["untrained"]), seconds if index == 0 else ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=tuple(LABELS), default=list(LABELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default: the test's PRETRAIN_STEPS")
    parser.add_argument("--train-steps", type=int, nargs="+", default=None,
                        help="step counts after which to score, in one run (default: the test's SCHEDULE)")
    parser.add_argument("--train-cases", type=int, default=None,
                        help="fused-training cases of the 12, the rest validate (default: the test's SCHEDULE)")
    parser.add_argument("--configuration", choices=("2d", "3d_fullres"), default="2d")
    parser.add_argument("--depth-images", nargs="+", default=None,
                        help="3d_fullres: how each depth cell's slab becomes an encoder image, to compare: mip, mean, "
                             "centre, slicesK (default: the trainer's)")
    parser.add_argument("--width-divisor", type=int, default=1,
                        help="3d_fullres: divide the 3D network's features per stage by this (default 1)")
    parser.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                        help="voxel sizes in mm of the fused-training set (default: the test's 0.3 0.3 0.6)")
    parser.add_argument("--root", type=Path, default=None,
                        help="folder for the blob set's raw/preprocessed data; reused when already planned")
    args = parser.parse_args()
    if (args.depth_images or args.width_divisor != 1) and args.configuration == "2d":
        parser.error("--depth-images and --width-divisor are for --configuration 3d_fullres")
    if args.width_divisor < 1 or min(args.train_steps or [1]) < 1:
        parser.error("--width-divisor and --train-steps must be 1 or more")
    from nnunet_medsam_fusion.foundation.spec import DEPTH_IMAGES

    if any(not DEPTH_IMAGES.fullmatch(image) for image in args.depth_images or []):
        parser.error("--depth-images takes mip, mean, centre or slicesK (K = 2..9)")
    if args.train_cases is not None and not 1 <= args.train_cases <= 11:
        parser.error("--train-cases must be 1 to 11 (the set has 12 cases; at least one validates)")

    from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV, temporary_environ

    blobs = _common.synthetic_sets()["blobs"]
    if args.spacing:
        blobs = dataclasses.replace(blobs, spacing=tuple(args.spacing))
    rows = []
    with _common.planned_root(args.root, blobs, ("2d", args.configuration)) as root, \
            tempfile.TemporaryDirectory(prefix="nnmsf_transfer_") as work, \
            temporary_environ(**{ENCODER_PRECISION_ENV: "fp32"}):
        for family in args.families:
            rows += family_rows(family, args, root, Path(work))
    width = f", 3D features per stage / {args.width_divisor}" if args.width_divisor != 1 else ""
    spacing = f", voxels {' x '.join(f'{s:g}' for s in blobs.spacing)} mm"
    cases = f", training cases: {args.train_cases}" if args.train_cases else ""
    print(f"validation Dice of the fused Tiny trainer on {args.configuration}{width}{spacing}{cases} (tiny encoders "
          "pretrained on synthetic blob slices; float32; one run per cell; s: the three runs' wall time)")
    step = ["depth image"] if args.configuration != "2d" else []
    header = ["encoder", *step, "seed", "steps", "pretrained", "untrained", "pretrained, misaligned", "gain",
              "misaligned − untrained", "s"]
    print(markdown_table(header, rows, right=set(range(1, len(header)))))


if __name__ == "__main__":
    main()
