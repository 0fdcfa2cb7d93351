#!/usr/bin/env bash
# 3D: CAS 2023 -> nnU-Net's 3d_fullres -> nnU-Net with Skeleton Recall and both fusion trainers with Skeleton Recall
# (the frozen 2D encoder fused into nnU-Net's 3D U-Net; not in the paper, which is 2D) -> nnmsf compare.
#
#   CAS2023=/data/CAS2023 bash examples/train_3d.sh              # run it (GPU days)
#   DRY_RUN=1 CAS2023=/data/CAS2023 bash examples/train_3d.sh    # print every command instead
#   TRAINERS="nnUNetTrainerMedSAM2FusionTiny_SkelRecall_demo" DEVICE=cpu FOLDS=0 \
#     CAS2023=/data/CAS2023 bash examples/train_3d.sh            # a check of the pipeline on a CPU
#
# Needs nnU-Net's three folders and, for the full-size fusion trainers, the foundation weights
# (nnUNet_MedSAM_checkpoint, nnUNet_MedSAM2_checkpoint; never downloaded for you). Tiny trainers need none.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # run, checkpoint_variable, require_weights

CAS2023=${CAS2023:?set CAS2023 to the unpacked CAS 2023 release (the folder holding data/ and mask/)}
DATASET_ID=${DATASET_ID:-121}
FOLDS=${FOLDS:-0 1 2 3 4}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-tables_3d}
TRAINERS=${TRAINERS:-nnUNetTrainerSkelRecall nnUNetTrainerMedSAMFusion_SkelRecall nnUNetTrainerMedSAM2Fusion_SkelRecall}
read -r -d '' -a trainers <<< "$TRAINERS" || true

if [ -z "${DRY_RUN:-}" ]; then
  : "${nnUNet_raw:?export nnUNet_raw, nnUNet_preprocessed and nnUNet_results first}"
fi
eval "$(nnmsf env)"

# 1. The release as an nnU-Net raw data set, unless it is there already.
if [ -n "${DRY_RUN:-}" ] || ! ls -d "$nnUNet_raw"/Dataset"$(printf %03d "$DATASET_ID")"_* >/dev/null 2>&1; then
  run nnmsf convert cas2023 "$CAS2023" --dataset-id "$DATASET_ID"
fi

# 2. nnU-Net's 3d_fullres plans (the same trainers would also run on 3d_lowres where the planner makes one).
run nnUNetv2_plan_and_preprocess -d "$DATASET_ID" -c 3d_fullres --verify_dataset_integrity

# 3. Cross-validation; the first fold of each model folder records the encoder, its input size and depth images.
#    The weights are asked for here, for the trainers that need them, before any training starts.
require_weights "${trainers[@]}"
for trainer in "${trainers[@]}"; do
  for fold in $FOLDS; do
    run nnUNetv2_train "$DATASET_ID" 3d_fullres "$fold" -tr "$trainer" -device "$DEVICE"
  done
done

# 4. The tables, scored on the validation predictions of the folds.
# shellcheck disable=SC2086
run nnmsf compare "$DATASET_ID" -c 3d_fullres --trainers "${trainers[@]}" --folds $FOLDS --out "$OUT" --overwrite
