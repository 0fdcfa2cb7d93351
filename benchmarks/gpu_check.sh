#!/usr/bin/env bash
# The GPU check of 2D and 3D fusion against nnU-Net, in one run on one GPU (under 10 minutes on an H100/H200):
# a CAS2023-like synthetic set (0.35 x 0.35 x 0.6 mm), nnU-Net's own plans, then `nnmsf benchmark` on 2d and
# 3d_fullres with the real-size encoders (random weights: timings and memory only), the plans' batch, eager and
# compiled, each trainer at its defaults (3D: one encoder image per depth cell of the finest fused stage, the
# cell's slab MIP; the encoder batch column shows the images per step). Prints the ratio tables and peak memory;
# JSON figures go to $OUT_DIR. The FLOPs side of the same defaults needs no GPU: python benchmarks/fusion_3d_flops.py
#
#   bash benchmarks/gpu_check.sh                # needs a CUDA GPU and the package installed with its extras
set -euo pipefail

WORK=${WORK:-$(mktemp -d)}
OUT_DIR=${OUT_DIR:-$WORK/figures}
mkdir -p "$OUT_DIR"
export nnUNet_raw=$WORK/raw nnUNet_preprocessed=$WORK/preprocessed nnUNet_results=$WORK/results
eval "$(nnmsf env)"

nnmsf synth --out "$nnUNet_raw" --dataset-id 990 --name CASLike --cases 4 --test-cases 1 \
    --shape 320 320 120 --spacing 0.35 0.35 0.6
nnUNetv2_plan_and_preprocess -d 990 -c 2d 3d_fullres -np 4

TRAINERS=(nnUNetTrainer nnUNetTrainerMedSAMFusion nnUNetTrainerMedSAM2Fusion)
for configuration in 2d 3d_fullres; do
  for compile in "" "--compile"; do
    name=$configuration${compile:+_compiled}
    echo "== $name"
    nnmsf benchmark 990 --configuration "$configuration" --trainers "${TRAINERS[@]}" --device cuda \
        --random-weights --medsam2-size hiera_t --iters 10 --warmup 3 $compile --out "$OUT_DIR/$name.json"
  done
done
