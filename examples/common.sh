# Shell functions the example scripts share; each script sources this file from its own folder.

run() {  # print a command, then run it unless DRY_RUN is set
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [ -z "${DRY_RUN:-}" ]; then "$@"; fi
}

checkpoint_variable() {  # the foundation weights a trainer needs to start training ('' for none)
  case "$1" in
    *FusionTiny*) ;;  # tiny random encoders (tests, CPU checks)
    *MedSAM2Fusion*) echo nnUNet_MedSAM2_checkpoint ;;
    *MedSAMFusion*) echo nnUNet_MedSAM_checkpoint ;;
  esac
}

require_weights() {  # exit 2, naming the variable, unless every trainer given has the weights it needs
  local trainer variable
  for trainer in "$@"; do
    variable=$(checkpoint_variable "$trainer")
    if [ -n "$variable" ] && [ -z "${DRY_RUN:-}" ] && [ -z "${!variable:-}" ]; then
      echo "$trainer needs foundation weights: export $variable=/path/to/the/file (docs/failure_modes.md)" >&2
      exit 2
    fi
  done
}
