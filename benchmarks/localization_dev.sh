#!/usr/bin/env bash
# Weakly-supervised localization on the ILSVRC dev set (978 images), thresholds chosen on one
# half and reported on the other (docs/results.md, "Weakly-supervised localization").
#
#   benchmarks/localization_dev.sh OUT_DIR METHODS [extra localize args...]
#
# Runs `eigencam localize` on part 1/2, then on part 2/2 with its thresholds chosen on part 1/2
# (--calibrate-on), then re-scores part 1/2 with the thresholds chosen on part 2/2 (--resume: no
# image is recomputed). Each metrics.json then holds numbers measured on images whose thresholds
# were chosen on the other half, next to the optimistic best-on-this-half values. Re-running
# resumes a killed run.
set -euo pipefail
out="${1:?usage: $0 OUT_DIR METHODS [localize args...]}"
methods="${2:?usage: $0 OUT_DIR METHODS [localize args...]}"
shift 2
data="${EIGENCAM_DEV_DATA:-$(dirname "$0")/../../shared/data/imagenet-val-dev}"
common=(--methods "$methods" --batch-size 32 --gallery 4 "$@")
run() {  # run NAME PART [args...]: fresh run, or resume a killed one
  local dir="$out/$1" part="$2"
  shift 2
  local resume=()
  [ -f "$dir/run.json" ] && resume=(--resume)
  "${PYTHON:-python}" -m eigencam localize "$data" --part "$part" "${common[@]}" "${resume[@]}" \
    --out "$dir" --name "$(basename "$dir")" "$@"
}
run half1 1/2
run half2 2/2 --calibrate-on "$out/half1"
run half1 1/2 --calibrate-on "$out/half2"
