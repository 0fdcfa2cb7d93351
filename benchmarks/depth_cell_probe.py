"""The accuracy side of the 3D depth-image default: how much vessel information a fused stage's depth cell gets
from each way of turning the cell's slab of slices into encoder input (docs/benchmarks.md, "The 3D defaults'
accuracy side").

A tiny encoder of the real class is pretrained as in the transfer test (``nnunet_medsam_fusion/testing/
transfer_procedure.py``, ``pretrain_and_save``: encoder + linear head predicting the vessel mask on slices of 8 blob
volumes), so its features carry vessel knowledge. Blob volumes (64 x 64 x 16 at 0.3 x 0.3 x 0.6 mm, the
through-plane spacing of TOF-MRA) are cut into depth cells of ``--cells`` slices, as a fused stage of that depth
stride sees them, and each cell gets its features the way the 3D fused network gives them
(``fusion.depth_cells.depth_plan``): ``centre`` slice, ``slicesK`` (K slices, features averaged), slab ``mip`` or
``mean``, one cell per image or a slab of two cells whose features both take; and, for comparison, the rule
before per-cell encoding (every 2nd slice encoded, features interpolated linearly to the cell centre:
``step2-interpolated``). A linear probe (logistic regression on a pixel's features) is fitted per
representation on a fixed sample of the cell pixels of 8 training volumes and scored on every pixel of 6 held-out
ones: Dice against the cell's vessel mask (a pixel is
vessel when any slice of the cell has vessel there: what a cell can know). Printed: images the encoder computes
per volume, and the probe's Dice. This measures the foundation path only: nnU-Net's own 3D encoder still sees
every slice.

    python benchmarks/depth_cell_probe.py [--families medsam medical_sam2] [--cells 2 4 8] [--input-sizes 192 256]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from nnunet_medsam_fusion.text import markdown_table

LABELS = {"medsam": "ViT tiny (`medsam`)", "medical_sam2": "Hiera tiny (`medical_sam2`)"}
# (depth image, cells per image); "step2-interpolated": the rule before per-cell encoding
REPRESENTATIONS = (("centre", 1), ("slices2", 1), ("slices4", 1), ("mip", 1), ("mean", 1), ("mip", 2),
                   ("step2-interpolated", 1))
TRAIN_SEEDS, TEST_SEEDS = range(300, 308), range(200, 206)  # neither is a pretraining seed (100-107)
PROBE_PIXELS = 65_536  # training pixels the probe is fitted on (a fixed random sample)


def dice(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    return float(2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()).clamp(min=1))


def interpolated_weights(depth: int, cells: int) -> torch.Tensor:
    """The rule before per-cell encoding: slices at the centres of ceil(depth / 2) equal bins, features
    interpolated linearly from them to each cell's centre (constant beyond the ends). (cells, slices) weights."""
    count = -(-depth // 2)
    half = [int((i + 0.5) * depth / count) for i in range(count // 2)]  # bin centres, mirror-symmetric
    positions = half + ([(depth - 1) // 2] if count % 2 else []) + [depth - 1 - p for p in reversed(half)]
    weights = torch.zeros(cells, depth, dtype=torch.float64)
    for j in range(cells):
        t = min(max((j + 0.5) * depth / cells - 0.5, positions[0]), positions[-1])
        upper = next(i for i, p in enumerate(positions) if p >= t)
        lower = max(upper - 1, 0)
        if positions[upper] == positions[lower]:
            weights[j, positions[upper]] = 1.0
        else:
            fraction = (t - positions[lower]) / (positions[upper] - positions[lower])
            weights[j, positions[lower]], weights[j, positions[upper]] = 1 - fraction, fraction
    return weights


def cell_features(encoder, volumes: torch.Tensor, cells: int, representation: str, cells_per_image: int = 1
                  ) -> tuple[torch.Tensor, int]:
    """(V * cells, C, 64, 64) features of every cell of (V, Z, 1, 64, 64) volumes, and encoder images per volume."""
    from nnunet_medsam_fusion.fusion.depth_cells import depth_plan
    from nnunet_medsam_fusion.testing.transfer_procedure import probe_features

    depth = volumes.shape[1]
    if representation == "step2-interpolated":
        weights = interpolated_weights(depth, cells)
        used = weights.abs().sum(0) > 0
        images = volumes[:, used]  # only the slices the rule encodes
        weights = weights[:, used]
    else:
        plan = depth_plan(depth, [cells], representation, cells_per_image)
        images = plan.images(volumes.transpose(1, 2)).view(len(volumes), -1, 1, *volumes.shape[-2:])
        weights = plan.weights[0]
    with torch.no_grad():
        features = torch.stack([probe_features(encoder, v) for v in images])  # (V, n, C, 64, 64)
        per_cell = torch.einsum("jn,vnchw->vjchw", weights.float(), features)
    return per_cell.flatten(0, 1), images.shape[1]


def cell_truth(labels: torch.Tensor, cells: int) -> torch.Tensor:
    """(V * cells, 1, 64, 64): vessel where any slice of the cell has vessel."""
    volumes, depth = labels.shape[:2]
    return labels.view(volumes, cells, depth // cells, 1, *labels.shape[-2:]).amax(2).flatten(0, 1).bool()


def fitted_probe_dice(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]) -> float:
    """A linear probe (logistic regression on a pixel's features) fitted on a fixed sample of the training cells'
    pixels (full batch, Adam), its Dice over every pixel of the test cells."""
    features, truth = train
    pixels = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    labels = truth.reshape(-1).float()
    sample = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(0))[:PROBE_PIXELS]
    pixels, labels = pixels[sample], labels[sample]
    torch.manual_seed(0)
    head = torch.nn.Linear(pixels.shape[1], 1)
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        loss = F.binary_cross_entropy_with_logits(head(pixels)[:, 0], labels, pos_weight=torch.tensor(5.0))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        logits = test[0].permute(0, 2, 3, 1) @ head.weight[0] + head.bias
        return dice(logits > 0, test[1][:, 0])


def encoder_rows(family: str, input_size: int, cells_list: list[int], work: Path) -> list[list[str]]:
    from nnunet_medsam_fusion.testing import transfer_procedure as transfer

    encoder, _ = transfer.pretrain_and_save(family, *transfer.blob_slices(range(100, 108)),
                                            work / f"{family}_{input_size}.pth", transfer.PRETRAIN_STEPS[family],
                                            input_size)
    encoder.eval()
    train_images, train_labels = transfer.blob_volumes(TRAIN_SEEDS)
    test_images, test_labels = transfer.blob_volumes(TEST_SEEDS)
    depth = train_images.shape[1]
    rows = []
    for cells_thick in cells_list:
        cells = depth // cells_thick
        train_truth, test_truth = cell_truth(train_labels, cells), cell_truth(test_labels, cells)
        for representation, per_image in REPRESENTATIONS:
            if per_image > cells:
                continue
            train, count = cell_features(encoder, train_images, cells, representation, per_image)
            test, _ = cell_features(encoder, test_images, cells, representation, per_image)
            score = fitted_probe_dice((train, train_truth), (test, test_truth))
            first = not rows
            rows.append([LABELS[family] if first else "", str(input_size) if first else "",
                         str(cells_thick) if representation == "centre" else "",
                         representation + (f", {per_image} cells per image" if per_image > 1 else ""), str(count),
                         f"{score:.3f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=tuple(LABELS), default=list(LABELS))
    parser.add_argument("--input-sizes", type=int, nargs="+", default=None,
                        help="encoder input sizes, each pretrained anew (default: the transfer test's, 512 for "
                             "medsam and 256 for medical_sam2)")
    parser.add_argument("--cells", type=int, nargs="+", default=[2, 4, 8],
                        help="slices per depth cell (divisors of the 16 slices; default 2 4 8)")
    args = parser.parse_args()
    if any(c < 1 or 16 % c for c in args.cells):
        parser.error("--cells must divide the volumes' 16 slices (1, 2, 4, 8 or 16)")
    from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV, temporary_environ

    rows = []
    with tempfile.TemporaryDirectory(prefix="nnmsf_probe_") as work, \
            temporary_environ(**{ENCODER_PRECISION_ENV: "fp32"}):
        for family in args.families:
            from nnunet_medsam_fusion.testing.transfer_procedure import TRAINERS

            for input_size in args.input_sizes or [TRAINERS[family].encoder_input_size]:
                rows += encoder_rows(family, input_size, sorted(set(args.cells)), Path(work))
    print(f"linear vessel probe on depth-cell features of a pretrained tiny encoder: fitted on {len(TRAIN_SEEDS)} "
          f"blob volumes, scored on {len(TEST_SEEDS)} held-out ones (16 slices at 0.6 mm); float32")
    header = ["encoder", "input", "slices per cell", "cell features from", "encoder images per volume",
              "probe Dice (cell's vessel mask)"]
    print(markdown_table(header, rows, right={1, 2, 4, 5}))


if __name__ == "__main__":
    main()
