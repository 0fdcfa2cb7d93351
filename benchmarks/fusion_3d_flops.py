"""FLOPs of 3D foundation fusion against nnU-Net's 3d_fullres on nnU-Net's own plan for a CAS2023-sized data set.

The plan is made by nnU-Net: ``nnUNetv2_plan_experiment`` on a stand-in data set whose fingerprint says 100 cases of
150 x 560 x 560 voxels at 0.6 x 0.35 x 0.35 mm (z, y, x; CAS 2023's TOF-MRA), in a temporary folder. Prints one row
per encoder, input size, depth image and cells per image: FLOPs of a training step (forward + backward of the fused
network at the plan's batch, the frozen encoder forward only) and of predicting one volume (sliding window with
nnU-Net's step 0.5 and all eight mirrorings; encoder images counted with the exact reuse of images seen before: a
z-mirror sees the same slabs, z-overlapping tiles share the slabs they both hold), each with its ratio to nnU-Net's
own network on the same plan, and the encoder images per patch. ``--before`` adds the rule before per-cell encoding
(every 2nd slice encoded, interpolated along depth) for comparison. Everything runs on the ``meta`` device (shapes
only, no values, no time): a minute on a CPU. Encoders are the real-size classes; weights play no part in FLOPs.

    python benchmarks/fusion_3d_flops.py [--inputs 256 512] [--cells-per-image 1 2] [--before]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nnunet_medsam_fusion.foundation import FoundationSpec, build_foundation_encoder
from nnunet_medsam_fusion.fusion.network import FoundationFusionUNet
from nnunet_medsam_fusion.text import markdown_table

SPACING = (0.6, 0.35, 0.35)
VOLUME = (150, 560, 560)
CASES = 100
ENCODERS = {"ViT-B (MedSAM)": ("medsam", "vit_b", (0,)), "Hiera-T (MedSAM2)": ("medical_sam2", "hiera_t", (1, 2)),
            "Hiera-S (MedSAM2)": ("medical_sam2", "hiera_s", (1, 2))}
MIRRORS = 8


def cas2023_plan() -> dict:
    """nnU-Net's plans for the CAS2023-sized stand-in, made by nnUNetv2_plan_experiment in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="nnmsf_plan_") as folder:
        root, name = Path(folder), "Dataset990_CAS2023Size"
        raw, preprocessed = root / "raw" / name, root / "preprocessed" / name
        (raw / "imagesTr").mkdir(parents=True)
        (raw / "labelsTr").mkdir()
        preprocessed.mkdir(parents=True)
        image = sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32))  # read only to choose nnU-Net's reader
        image.SetSpacing(SPACING[::-1])
        sitk.WriteImage(image, str(raw / "imagesTr" / "cas_000_0000.nii.gz"))
        sitk.WriteImage(sitk.Cast(image, sitk.sitkUInt8), str(raw / "labelsTr" / "cas_000.nii.gz"))
        (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRA"}, "numTraining": 1,
                                                      "labels": {"background": 0, "vessel": 1},
                                                      "file_ending": ".nii.gz"}))
        intensities = {"max": 1, "mean": 0, "median": 0, "min": 0, "percentile_00_5": 0, "percentile_99_5": 1,
                       "std": 1}
        (preprocessed / "dataset_fingerprint.json").write_text(json.dumps({
            "spacings": [list(SPACING)] * CASES, "shapes_after_crop": [list(VOLUME)] * CASES,
            "foreground_intensity_properties_per_channel": {"0": intensities},
            "median_relative_size_after_cropping": 1.0}))
        env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
                   nnUNet_results=str(root / "results"))
        subprocess.run(["nnUNetv2_plan_experiment", "-d", "990"], env=env, check=True, capture_output=True)
        return json.loads((preprocessed / "nnUNetPlans.json").read_text())


def flops(run) -> float:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def training_step(network: nn.Module, batch: int, patch: tuple[int, ...]) -> float:
    x = torch.empty(batch, 1, *patch, device="meta")

    def step():
        outputs = network(x)
        sum(o.sum() for o in outputs).backward()

    return flops(step)


def tile_forward(network: nn.Module, patch: tuple[int, ...]) -> float:
    x = torch.empty(1, 1, *patch, device="meta")
    with torch.no_grad():
        return flops(lambda: network(x))


def distinct_images(slabs: list[tuple[int, int]], patch: tuple[int, ...]) -> int:
    """Encoder images one volume needs with exact reuse: distinct (slab, in-plane tile origin) per in-plane
    mirroring (the z-mirror reverses the slabs, which are the same images)."""
    steps = compute_steps_for_sliding_window(VOLUME, patch, 0.5)
    distinct = {(z0 + a, z0 + b, y0, x0) for z0, y0, x0 in itertools.product(*steps) for a, b in slabs}
    return len(distinct) * MIRRORS // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, nargs="+", default=[256, 384, 512])
    parser.add_argument("--cells-per-image", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--before", action="store_true", help="add the every-2nd-slice rule before per-cell encoding")
    args = parser.parse_args()

    plans = PlansManager(cas2023_plan())
    configuration = plans.get_configuration("3d_fullres")
    patch, batch = tuple(configuration.patch_size), configuration.batch_size

    def unet() -> nn.Module:
        return nnUNetTrainer.build_network_architecture(plans, configuration, 1, 2, True).to("meta")

    base = unet()
    base_step, base_tile = training_step(base, batch, patch), tile_forward(base, patch)
    tiles = math.prod(len(s) for s in compute_steps_for_sliding_window(VOLUME, patch, 0.5))
    base_volume = tiles * MIRRORS * base_tile
    strides = [list(s) for s in configuration.network_arch_init_kwargs["strides"]]
    print(f"nnU-Net's 3d_fullres plan for {CASES} cases of {VOLUME} voxels at {SPACING} mm: patch {patch}, batch "
          f"{batch}, strides {strides}")
    print(f"nnU-Net: training step {base_step / 1e12:.2f} TF; volume: {tiles} tiles x {MIRRORS} mirrorings, "
          f"{base_volume / 1e12:.0f} TF\n")
    rows = []
    for name, (family, size, levels) in ENCODERS.items():
        for input_size in args.inputs:
            if input_size % (16 if family == "medsam" else 32):
                continue
            encoder = build_foundation_encoder(FoundationSpec(family, size, input_size, (-2.0, 4.0),
                                                              depth_image="mip")).to("meta")
            image = torch.empty(1, 1, *patch[1:], device="meta")
            with torch.no_grad():
                per_image = flops(lambda enc=encoder, img=image: enc.encode_images(enc.preprocess(img)))
            for cells in args.cells_per_image:
                encoder.spec = FoundationSpec(family, size, input_size, (-2.0, 4.0), depth_image="mip",
                                              cells_per_image=cells)
                fused = FoundationFusionUNet(unet=unet(), foundation=encoder, patch_size=patch,
                                             feature_levels=levels).to("meta")
                plan = fused.depth_plan(patch)
                images = plan.images_per_patch
                fused_step = training_step(fused, batch, patch)
                rest = tile_forward(fused, patch) - per_image * images  # nnU-Net + fusion layers per tile
                volume = tiles * MIRRORS * rest + distinct_images(list(plan.slabs), patch) * per_image
                variants = [(f"mip, {cells}", images, fused_step, volume)]
                if args.before and cells == 1:
                    old = math.ceil(patch[0] / 2)  # every 2nd slice; the fusion layers cost the same
                    half = [int((i + 0.5) * patch[0] / old) for i in range(old // 2)]  # its symmetric bin centres
                    positions = half + ([(patch[0] - 1) // 2] if old % 2 else []) + [patch[0] - 1 - p for p in half]
                    old_slabs = [(z, z + 1) for z in positions]
                    variants.append(("every 2nd slice (before)", old, fused_step + batch * (old - images) * per_image,
                                     tiles * MIRRORS * rest + distinct_images(old_slabs, patch) * per_image))
                for label, count, step, total in variants:
                    rows.append([name, str(input_size), label, str(count), f"{per_image / 1e9:.0f}",
                                 f"{step / 1e12:.2f}", f"{step / base_step:.2f}", f"{total / 1e12:.0f}",
                                 f"{total / base_volume:.2f}"])
    print(markdown_table(["encoder", "input", "depth image, cells per image", "encoder images / patch",
                          "encoder GF / image", "step TF", "step x nnU-Net", "volume TF (reuse)",
                          "volume x nnU-Net"], rows, right={1, 3, 4, 5, 6, 7, 8}))


if __name__ == "__main__":
    main()
