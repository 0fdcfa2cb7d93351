#!/usr/bin/env bash
# A trained model applied to new scans: a model folder, or a zip made by nnUNetv2_export_model_to_zip.
# Works for releases without vessel masks too (IXI MRA, Lausanne TOF-MRA): prediction only.
#
#   MODEL=$nnUNet_results/Dataset120_CAS2023/nnUNetTrainerMedSAM2Fusion__nnUNetPlans__2d SCANS=/data/IXI-MRA \
#     bash examples/predict_only.sh
#   MODEL=cas2023_medsam2.zip DATASET_ID=120 TRAINER=nnUNetTrainerMedSAM2Fusion SCANS=... bash examples/predict_only.sh
#   DRY_RUN=1 ...   # print every command instead
#   FOLDS="0 1" ...  # some folds only (default: every fold the model holds)
#
# No foundation checkpoint is needed: the fused weights are inside checkpoint_final.pth.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # run, checkpoint_variable, require_weights

MODEL=${MODEL:?set MODEL to a trained model folder or an exported .zip}
SCANS=${SCANS:?set SCANS to a folder of scans (*.nii.gz)}
OUT=${OUT:-predictions}
DEVICE=${DEVICE:-cuda}

# The folds the model holds (fold_N/checkpoint_final.pth, in the folder or the zip): checked before any work.
if [[ "$MODEL" == *.zip ]]; then
  [ -f "$MODEL" ] || {
    echo "MODEL=$MODEL does not exist: give the .zip nnUNetv2_export_model_to_zip wrote" >&2; exit 2; }
  trained=$(python3 -m zipfile -l "$MODEL" | grep -o 'fold_[^/]*/checkpoint_final.pth' | sed 's|fold_||; s|/.*||' \
            | sort -u | tr '\n' ' ') || true
else
  [ -d "$MODEL" ] && [ -f "$MODEL/plans.json" ] || {
    echo "MODEL=$MODEL is not a trained model folder (no plans.json): give a folder" \
         "\$nnUNet_results/DatasetNNN_Name/TRAINER__nnUNetPlans__2d, or a .zip from nnUNetv2_export_model_to_zip" >&2
    exit 2; }
  trained=""
  for checkpoint in "$MODEL"/fold_*/checkpoint_final.pth; do
    if [ -e "$checkpoint" ]; then fold_dir=$(basename "$(dirname "$checkpoint")"); trained+="${fold_dir#fold_} "; fi
  done
fi
[ -n "${trained// /}" ] || { echo "MODEL=$MODEL holds no trained fold (fold_N/checkpoint_final.pth)" >&2; exit 2; }
trained=${trained% }
FOLDS=${FOLDS:-$trained}  # default: every fold the model holds
for fold in $FOLDS; do
  [[ " $trained " == *" $fold "* ]] || {
    echo "FOLDS=$FOLDS: MODEL=$MODEL has no fold $fold (it holds folds: $trained); set FOLDS to some of those" >&2
    exit 2; }
done

eval "$(nnmsf env)"   # nnU-Net rebuilds the network from the trainer's class name: it must find our trainers

# 1. nnU-Net wants CASE_0000.nii.gz (one file per channel). IXI names its scans IXI002-Guys-0828-MRA.nii.gz:
#    link each scan under an nnU-Net name instead of renaming your files.
inputs="$OUT/inputs"
run mkdir -p "$inputs"
for scan in "$SCANS"/*.nii.gz; do
  [ -e "$scan" ] || { echo "no .nii.gz file in $SCANS" >&2; exit 2; }
  case_name=$(basename "$scan" .nii.gz)
  case_name=${case_name%_0000}
  run ln -sf "$(cd "$(dirname "$scan")" && pwd)/$(basename "$scan")" "$inputs/${case_name}_0000.nii.gz"
done

# 2. Predict: a model folder directly; a zip is installed into $nnUNet_results first.
# shellcheck disable=SC2086
if [[ "$MODEL" == *.zip ]]; then
  run nnUNetv2_install_pretrained_model_from_zip "$MODEL"
  run nnUNetv2_predict -i "$inputs" -o "$OUT/masks" -d "${DATASET_ID:?set DATASET_ID for a zipped model}" -c 2d \
      -tr "${TRAINER:?set TRAINER of the zipped model}" -f $FOLDS -device "$DEVICE"
else
  run nnUNetv2_predict_from_modelfolder -i "$inputs" -o "$OUT/masks" -m "$MODEL" -f $FOLDS -device "$DEVICE"
fi

# 3. (optional) Scores, when you have reference masks named CASE.nii.gz.
if [ -n "${REF:-}" ]; then
  run nnmsf evaluate --pred "$OUT/masks" --ref "$REF" --overwrite
fi
# To share a model: nnUNetv2_export_model_to_zip -d 120 -o model.zip -c 2d -tr nnUNetTrainerMedSAM2Fusion
