#!/usr/bin/env bash
# The paper's Table 1 on CAS 2023: convert -> plan/preprocess -> seven trainers x 5 folds -> nnmsf compare.
#
#   CAS2023=/data/CAS2023 bash examples/reproduce_paper.sh          # run it (days of GPU time)
#   DRY_RUN=1 CAS2023=/data/CAS2023 bash examples/reproduce_paper.sh  # print every command instead
#   TRAINERS="nnUNetTrainerMedSAMFusionTiny_demo nnUNetTrainerFocalDice_demo" DEVICE=cpu FOLDS=all \
#     CAS2023=/data/CAS2023 bash examples/reproduce_paper.sh          # a check of the pipeline on a CPU
#
# Needs nnU-Net's three folders (nnUNet_raw, nnUNet_preprocessed, nnUNet_results) and, for training the full-size
# fusion rows, the foundation weights (nnUNet_MedSAM_checkpoint, nnUNet_MedSAM2_checkpoint; never downloaded for
# you). Tiny trainers (random encoders) need none. Every step is a plain nnU-Net or nnmsf command: copy the ones
# you need.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # run, checkpoint_variable, require_weights

CAS2023=${CAS2023:?set CAS2023 to the unpacked CAS 2023 release (the folder holding data/ and mask/)}
DATASET_ID=${DATASET_ID:-120}
FOLDS=${FOLDS:-0 1 2 3 4}
DEVICE=${DEVICE:-cuda}
NPROC=${NPROC:-}  # processes for planning/preprocessing (nnU-Net's default: 8; fewer on a small CPU)
OUT=${OUT:-paper_tables}
# Table 1's rows, as this package declares them (nnU-Net's own nnUNetTrainer is the "nnUNet" row).
TRAINERS=${TRAINERS:-$(nnmsf trainers --table1)}
read -r -d '' -a trainers <<< "$TRAINERS" || true

if [ -z "${DRY_RUN:-}" ]; then
  : "${nnUNet_raw:?export nnUNet_raw, nnUNet_preprocessed and nnUNet_results first}"
fi
eval "$(nnmsf env)"   # nnU-Net finds our trainers through nnUNet_extTrainer (keeps folders you listed)

# 1. The release as an nnU-Net raw data set (images copied unchanged, masks checked against their images).
run nnmsf convert cas2023 "$CAS2023" --dataset-id "$DATASET_ID"

# 2. nnU-Net's fingerprint, plans and preprocessing; the paper trains 2D networks.
# shellcheck disable=SC2086  # NPROC adds two options when set
run nnUNetv2_plan_and_preprocess -d "$DATASET_ID" -c 2d --verify_dataset_integrity \
    ${NPROC:+-np $NPROC -npfp $NPROC}

# 3. Five-fold cross-validation of every row. Each fold ends by predicting its validation cases, so the five
#    folds predict every case once: those predictions are what step 4 scores. The weights are asked for here,
#    for the trainers that need them, before any training starts.
require_weights "${trainers[@]}"
for trainer in "${trainers[@]}"; do
  for fold in $FOLDS; do
    run nnUNetv2_train "$DATASET_ID" 2d "$fold" -tr "$trainer" -device "$DEVICE"
  done
done

# 3b. (optional) A held-out test set with labels: TEST_IMAGES (CASE_0000.nii.gz) and TEST_LABELS.
if [ -n "${TEST_IMAGES:-}" ]; then
  for trainer in "${trainers[@]}"; do
    # shellcheck disable=SC2086  # FOLDS is a list
    run nnUNetv2_predict -i "$TEST_IMAGES" -o "$OUT/test_predictions/$trainer" -d "$DATASET_ID" -c 2d \
        -tr "$trainer" -f $FOLDS -device "$DEVICE"
  done
fi

# 4. The paper's tables (Dice, IoU, HD95, ASD, precision, recall, F1; mean +- std; Wilcoxon against nnU-Net).
# shellcheck disable=SC2086
run nnmsf compare "$DATASET_ID" --trainers "${trainers[@]}" --folds $FOLDS --out "$OUT/cross_validation" \
    --figures --overwrite
if [ -n "${TEST_IMAGES:-}" ]; then
  run nnmsf compare "$DATASET_ID" --trainers "${trainers[@]}" --test-pred-root "$OUT/test_predictions" \
      --ref "${TEST_LABELS:?set TEST_LABELS to the test labels}" --out "$OUT/test" --overwrite
fi
