"""FLOPs of 3D foundation fusion against nnU-Net's 3d_fullres on a CAS2023-like plan (torch FlopCounterMode).

Prints one row per encoder, encoder input size and slice step: FLOPs of a training step (forward + backward of
the fused network, the frozen encoder forward only) and of predicting one volume (sliding window with nnU-Net's
step 0.5 and all eight mirrorings, encoder calls counted with and without the exact reuse of slices seen
before), each with its ratio to nnU-Net's own network on the same plan. Everything runs on the ``meta`` device
(shapes only, no values, no time): a minute on a CPU. Encoders are the real-size classes; weights play no part in
FLOPs.

The plan: nnU-Net's topology rule (``get_pool_and_conv_props``) for spacing 0.6 x 0.35 x 0.35 mm (z, y, x) and
the patch 80 x 192 x 160, batch 2, nnU-Net's default widths (32 doubling to 320); a volume of 150 x 560 x 560.

    python benchmarks/fusion_3d_flops.py
"""

from __future__ import annotations

import argparse
import itertools

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nnunet_medsam_fusion.foundation import FoundationSpec, build_foundation_encoder
from nnunet_medsam_fusion.fusion.network import FoundationFusionUNet
from nnunet_medsam_fusion.fusion.slices import slice_positions

SPACING = (0.6, 0.35, 0.35)
PATCH = (80, 192, 160)
BATCH = 2
VOLUME = (150, 560, 560)
ENCODERS = {"ViT-B (MedSAM)": ("medsam", "vit_b", (0,)), "Hiera-T (MedSAM2)": ("medical_sam2", "hiera_t", (1, 2)),
            "Hiera-S (MedSAM2)": ("medical_sam2", "hiera_s", (1, 2))}
MIRRORS = 8


def nnunet_3d_unet() -> PlainConvUNet:
    """nnU-Net's PlainConvUNet for the plan, as its planner would build it."""
    _, pool, kernels, patch, _ = get_pool_and_conv_props(SPACING, PATCH, 4, 999999)
    assert tuple(patch) == PATCH, patch
    stages = len(pool)
    widths = [min(32 * 2**i, 320) for i in range(stages)]
    return PlainConvUNet(1, stages, widths, nn.Conv3d, kernels, pool, [2] * stages, 2, [2] * (stages - 1),
                         conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                         nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True)


def flops(run) -> float:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def training_step(network: nn.Module) -> float:
    x = torch.empty(BATCH, 1, *PATCH, device="meta")

    def step():
        outputs = network(x)
        sum(o.sum() for o in outputs).backward()

    return flops(step)


def tile_forward(network: nn.Module) -> float:
    x = torch.empty(1, 1, *PATCH, device="meta")
    with torch.no_grad():
        return flops(lambda: network(x))


def encoder_images_per_volume(step: int) -> tuple[int, int]:
    """Slice images the encoder computes for one volume: without reuse, and with exact reuse (a z-mirror only
    reverses the slices; z-overlapping tiles share the slices they both encode; in-plane mirrors are new images)."""
    steps = compute_steps_for_sliding_window(VOLUME, PATCH, 0.5)
    positions = slice_positions(PATCH[0], step)
    tiles = len(steps[0]) * len(steps[1]) * len(steps[2])
    without = tiles * MIRRORS * len(positions)
    distinct = {(z0 + p, y0, x0) for z0, y0, x0 in itertools.product(*steps) for p in positions}
    return without, len(distinct) * MIRRORS // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    unet = nnunet_3d_unet().to("meta")
    base_step, base_tile = training_step(unet), tile_forward(unet)
    tiles = len(list(itertools.product(*compute_steps_for_sliding_window(VOLUME, PATCH, 0.5))))
    base_volume = tiles * MIRRORS * base_tile
    print(f"nnU-Net 3d_fullres: patch {PATCH}, batch {BATCH}, strides {[list(s) for s in unet.encoder.strides]}")
    print(f"training step {base_step / 1e12:.2f} TF; volume {VOLUME}: {tiles} tiles x {MIRRORS} mirrorings, "
          f"{base_volume / 1e12:.0f} TF\n")
    print("| encoder | input | slice step | encoder GF / slice | step TF | step x nnU-Net | volume TF (reuse) "
          "| volume x nnU-Net | encoder images / volume (without reuse) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (family, size, levels) in ENCODERS.items():
        for input_size, step in itertools.product(args.inputs, args.steps):
            encoder = build_foundation_encoder(FoundationSpec(family, size, input_size, (-2.0, 4.0))).to("meta")
            fused = FoundationFusionUNet(nnunet_3d_unet(), encoder, PATCH, levels, slice_step=step).to("meta")
            image = torch.empty(1, 1, *PATCH[1:], device="meta")
            with torch.no_grad():
                per_slice = flops(lambda enc=encoder, img=image: enc.encode_images(enc.preprocess(img)))
            fused_step = training_step(fused)
            fusion_per_tile = tile_forward(fused) - per_slice * len(slice_positions(PATCH[0], step))
            without, with_reuse = encoder_images_per_volume(step)
            volume = tiles * MIRRORS * fusion_per_tile + with_reuse * per_slice
            print(f"| {name} | {input_size} | {step} | {per_slice / 1e9:.0f} | {fused_step / 1e12:.2f} | "
                  f"{fused_step / base_step:.2f} | {volume / 1e12:.0f} | {volume / base_volume:.2f} | "
                  f"{with_reuse} ({without}) |")


if __name__ == "__main__":
    main()
