#!/usr/bin/env bash
# A trained model applied to new scans: a model folder, or a zip made by nnUNetv2_export_model_to_zip.
# Works for releases without vessel masks too (IXI MRA, Lausanne TOF-MRA): prediction only.
#
#   MODEL=$nnUNet_results/Dataset120_CAS2023/nnUNetTrainerMedSAM2Fusion__nnUNetPlans__2d SCANS=/data/IXI-MRA \
#     bash examples/predict_only.sh
#   MODEL=cas2023_medsam2.zip DATASET_ID=120 TRAINER=nnUNetTrainerMedSAM2Fusion SCANS=... bash examples/predict_only.sh
#   DRY_RUN=1 ...   # print every command instead
#
# No foundation checkpoint is needed: the fused weights are inside checkpoint_final.pth.
set -euo pipefail

MODEL=${MODEL:?set MODEL to a trained model folder or an exported .zip}
SCANS=${SCANS:?set SCANS to a folder of scans (*.nii.gz)}
OUT=${OUT:-predictions}
FOLDS=${FOLDS:-0 1 2 3 4}
DEVICE=${DEVICE:-cuda}

run() {  # print a command, then run it unless DRY_RUN is set
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [ -z "${DRY_RUN:-}" ]; then "$@"; fi
}

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
