"""The accuracy side of the 3D slice-step default: how much vessel information survives encoding only every k-th
slice and interpolating the features along depth, as the 3D fused network does (docs/benchmarks.md, "The 3D
defaults' accuracy side").

A tiny encoder of the real class is pretrained as in the transfer test (``testing/transfer_procedure.py``,
``pretrain_and_save``: encoder + linear head predicting the vessel mask on slices of 8 blob volumes), so its
features carry vessel knowledge and its head is a vessel probe. On held-out blob volumes (64 x 64 x 16 at 0.3 x 0.3
x 0.6 mm, the through-plane spacing of TOF-MRA), the slices at ``fusion.slices.slice_positions(16, k)`` are the
encoded ones, and their features are interpolated to all 16 slices with ``fusion.slices.depth_weights``, the
network's own weights. Printed per encoder and slice step: the share of slices encoded, the probe's Dice on every
slice, its Dice on the slices that step leaves unencoded (had they been encoded, and interpolated), and the relative
L2 error of the interpolated features against encoding every slice. The encoder sees each slice alone, so the
features of the chosen slices are those of encoding every slice, selected. This measures the foundation path only:
nnU-Net's own 3D encoder still sees every slice.

    python benchmarks/slice_step_probe.py [--families medsam medical_sam2] [--steps 1 2 3 4] [--volumes 6]
    python benchmarks/slice_step_probe.py --input-sizes 96 160 --steps 1 2 4
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from nnunet_medsam_fusion.text import markdown_table

LABELS = {"medsam": "ViT tiny (`medsam`)", "medical_sam2": "Hiera tiny (`medical_sam2`)"}


def dice(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    return float(2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()).clamp(min=1))


def encoder_rows(family: str, input_size: int, steps: list[int], volumes: int, work: Path) -> list[list[str]]:
    """One row per slice step for the encoder pretrained at ``input_size``."""
    from nnunet_medsam_fusion.fusion.slices import depth_weights, slice_positions
    from nnunet_medsam_fusion.testing import transfer_procedure as transfer

    encoder, head = transfer.pretrain_and_save(family, *transfer.blob_slices(range(100, 108)),
                                               work / f"{family}_{input_size}.pth", transfer.PRETRAIN_STEPS[family],
                                               input_size)
    encoder.eval()
    images, labels = transfer.blob_volumes(range(200, 200 + volumes))  # seeds the pretraining never saw
    labels = labels.bool()
    depth = images.shape[1]
    with torch.no_grad():
        features = torch.stack([transfer.probe_features(encoder, volume) for volume in images])  # (V, 16, C, h, w)
        every_slice = head(features.flatten(0, 1)).view(labels.shape) > 0
        finest = max(m.shape[-1] for m in encoder.crop_to_patch(
            encoder.encode_images(encoder.preprocess(images[0, :1])), 64, 64))
    rows = []
    for step in steps:
        positions = slice_positions(depth, step)
        weights = depth_weights(positions, depth, depth)
        with torch.no_grad():
            interpolated = torch.einsum("jn,vnchw->vjchw", weights, features[:, positions])
            predicted = head(interpolated.flatten(0, 1)).view(labels.shape) > 0
        skipped = [z for z in range(depth) if z not in positions]
        on_skipped = [f"{dice(p[:, skipped], labels[:, skipped]):.3f}" if skipped else "-"
                      for p in (every_slice, predicted)]
        error = float((interpolated - features).norm() / features.norm())
        first = not rows
        rows.append([LABELS[family] if first else "", str(input_size) if first else "",
                     f"{64 / finest:.1f}" if first else "", str(step), f"{len(positions)} / {depth}",
                     f"{dice(predicted, labels):.3f}", *on_skipped, f"{error:.3f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=tuple(LABELS), default=list(LABELS))
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--input-sizes", type=int, nargs="+", default=None,
                        help="encoder input sizes, each pretrained anew (default: the transfer test's, 512 for "
                             "medsam and 256 for medical_sam2)")
    parser.add_argument("--volumes", type=int, default=6, help="held-out volumes (default 6)")
    args = parser.parse_args()
    if min(args.steps) < 1 or args.volumes < 1 or min(args.input_sizes or [1]) < 1:
        parser.error("--steps, --input-sizes and --volumes must be 1 or more")
    from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV, temporary_environ
    from nnunet_medsam_fusion.testing import transfer_procedure as transfer

    rows = []
    with tempfile.TemporaryDirectory(prefix="nnmsf_probe_") as work, \
            temporary_environ(**{ENCODER_PRECISION_ENV: "fp32"}):
        for family in args.families:
            for input_size in args.input_sizes or [transfer.TRAINERS[family].encoder_input_size]:
                rows += encoder_rows(family, input_size, sorted(set(args.steps)), args.volumes, Path(work))
    print(f"vessel probe of a pretrained tiny encoder on {args.volumes} held-out blob volumes (16 slices at 0.6 mm): "
          "every k-th slice encoded, features interpolated along depth as the 3D fused network does; float32")
    header = ["encoder", "input", "pixels per finest feature cell", "slice step", "slices encoded",
              "probe Dice, all slices",
              "unencoded slices: probe Dice if encoded", "unencoded slices: probe Dice interpolated",
              "feature error (rel. L2)"]
    print(markdown_table(header, rows, right=set(range(1, len(header)))))


if __name__ == "__main__":
    main()
