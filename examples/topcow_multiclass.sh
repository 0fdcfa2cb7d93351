#!/usr/bin/env bash
# TopCoW MR, 13 Circle-of-Willis classes, with a MedSAM2 fusion trainer that does not mirror.
#
#   TOPCOW=/data/TopCoW2024 bash examples/topcow_multiclass.sh
#   DRY_RUN=1 TOPCOW=/data/TopCoW2024 bash examples/topcow_multiclass.sh   # print every command instead
#   TRAINER=nnUNetTrainerMedSAM2FusionTiny_NoMirroring_smoke DEVICE=cpu FOLDS=all \
#     TOPCOW=/data/TopCoW2024 bash examples/topcow_multiclass.sh          # a check of the pipeline on a CPU
#
# Why no mirroring: TopCoW has left and right classes (R-PCA/L-PCA, ...). nnU-Net's mirroring flips images
# left-right without swapping those labels; the TopCoW organisers advise turning it off for multiclass
# training. nnU-Net ships nnUNetTrainerNoMirroring for its own U-Net; the fusion variant used here,
# nnUNetTrainerMedSAM2Fusion_NoMirroring, is the package's (every fusion trainer has a _NoMirroring variant);
# the CPU check's ..._NoMirroring_smoke is defined in examples/custom_trainer.py (found through nnUNet_extTrainer).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # run, checkpoint_variable, require_weights

TOPCOW=${TOPCOW:?set TOPCOW to the unpacked TopCoW release (the folder holding imagesTr/ and cow_seg_labelsTr/)}
DATASET_ID=${DATASET_ID:-130}
NAME=${NAME:-TopCoW_MR_multiclass}
FOLDS=${FOLDS:-0 1 2 3 4}
DEVICE=${DEVICE:-cuda}
NPROC=${NPROC:-}  # processes for planning/preprocessing (nnU-Net's default: 8; fewer on a small CPU)
TRAINER=${TRAINER:-nnUNetTrainerMedSAM2Fusion_NoMirroring}
OUT=${OUT:-topcow_predictions}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ -z "${DRY_RUN:-}" ]; then
  : "${nnUNet_raw:?export nnUNet_raw, nnUNet_preprocessed and nnUNet_results first}"
fi
# The folder of custom_trainer.py first (plus whatever you had), then the package's trainers.
export nnUNet_extTrainer="$HERE${nnUNet_extTrainer:+:$nnUNet_extTrainer}"
eval "$(nnmsf env)"

# 1. TopCoW values 1-12 and 15 become 1..13 (nnU-Net needs consecutive labels); the mapping is kept in the
#    data set's dataset.json and topcow_label_map.json.
run nnmsf convert topcow "$TOPCOW" --dataset-id "$DATASET_ID" --name "$NAME" --modality mr --labels multiclass

# shellcheck disable=SC2086  # NPROC adds two options when set
run nnUNetv2_plan_and_preprocess -d "$DATASET_ID" -c 2d --verify_dataset_integrity \
    ${NPROC:+-np $NPROC -npfp $NPROC}

# 2. Train; each fold predicts its validation cases at the end (with nnU-Net's label values). Full-size MedSAM2
#    trainers need the weights (asked for here, before training); Tiny ones use a random encoder.
if [[ "$TRAINER" == *MedSAM2Fusion* && "$TRAINER" != *FusionTiny* && -z "${DRY_RUN:-}" ]]; then
  : "${nnUNet_MedSAM2_checkpoint:?export nnUNet_MedSAM2_checkpoint=/path/to/MedSAM2_pretrain.pth for $TRAINER}"
fi
for fold in $FOLDS; do
  run nnUNetv2_train "$DATASET_ID" 2d "$fold" -tr "$TRAINER" -device "$DEVICE"
done

# 3. Back to TopCoW's label values (1-12, 15), e.g. for the challenge's evaluation code.
model="${nnUNet_results:-nnUNet_results}/Dataset$(printf %03d "$DATASET_ID")_${NAME}/${TRAINER}__nnUNetPlans__2d"
for fold in $FOLDS; do
  run nnmsf convert topcow-restore "$model/fold_$fold/validation" "$OUT/validation_fold_$fold" \
      --dataset-id "$DATASET_ID" --overwrite
done

# 4. (optional) New MR scans in SCANS (CASE_0000.nii.gz): predict with the five folds, then restore the values
#    (nnUNetv2_predict writes dataset.json, which holds the mapping).
if [ -n "${SCANS:-}" ]; then
  # shellcheck disable=SC2086
  run nnUNetv2_predict -i "$SCANS" -o "$OUT/scans_nnunet" -d "$DATASET_ID" -c 2d -tr "$TRAINER" -f $FOLDS \
      -device "$DEVICE"
  run nnmsf convert topcow-restore "$OUT/scans_nnunet" "$OUT/scans_topcow" --overwrite
fi
