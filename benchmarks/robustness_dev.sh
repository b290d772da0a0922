#!/usr/bin/env bash
# Adversarial robustness (DeepFool) and faithfulness on the ILSVRC dev set with the embedded
# EfficientNet-Lite0: every table of docs/results.md's sections "Adversarial robustness
# (DeepFool)" and "Faithfulness".
#
#   benchmarks/robustness_dev.sh OUT_DIR LOCALIZE_RUN [LOCALIZE_RUN_2]
#
# LOCALIZE_RUN: a finished `eigencam localize` run on the dev set whose per-method thresholds
# the attack's boxes use. The published tables used the thresholds chosen on half 1 of
# benchmarks/localization_dev.sh: pass RUNS/methods/half2 (run with --calibrate-on half1, so its
# chosen thresholds are half 1's; half1/metrics.json itself is re-scored with half 2's at the
# end of that script). A second run fills in methods the first lacks (Score-CAM / Ablation-CAM
# at _blocks.15). Every step resumes when rerun. One thread per process: on a shared 2-core
# machine OpenMP threads that contend for busy cores are slower than one.
# COSTLY=0 skips the Score-CAM / Ablation-CAM runs (the published numbers did not include them).
set -euo pipefail
out="${1:?usage: $0 OUT_DIR LOCALIZE_RUN [LOCALIZE_RUN_2]}"
loc="${2:?usage: $0 OUT_DIR LOCALIZE_RUN [LOCALIZE_RUN_2]}"
loc2="${3:-$loc}"
data="${EIGENCAM_DEV_DATA:-$(dirname "$0")/../../shared/data/imagenet-val-dev}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# The 11 methods that run in seconds per image; Score-CAM and Ablation-CAM (one forward pass
# per channel) on the 320-channel output of the last block, on a smaller subset.
cheap=eigencam,cam,gradcam,gradcampp,xgradcam,layercam,hirescam,eigengradcam,saliency,cnnfixations,cmwp
costly=eigencam,gradcam,scorecam:target_layer=_blocks.15,ablationcam:target_layer=_blocks.15
run() {  # run COMMAND DIR [args...]: fresh run, or resume a killed one
  local cmd="$1" dir="$out/$2"
  shift 2
  local resume=()
  [ -f "$dir/run.json" ] && resume=(--resume)
  python -m eigencam "$cmd" "$data" --seed 0 --quiet --out "$dir" "${resume[@]}" "$@"
}
# 3 images per class (60), all cheap methods, with the noise control
run attack attack --per-class 3 --methods "$cheap" --thresholds-from "$loc" --noise-control \
  --batch-size 8
# 2 images per class (40), all cheap methods + the two baselines
run faithfulness faith --per-class 2 --methods "$cheap" --steps 20 --baseline blur --batch-size 8
[ "${COSTLY:-1}" = 0 ] && exit 0
# Score-CAM and Ablation-CAM: 1 image per class (20)
run attack attack-perturbation --per-class 1 --methods "$costly" --thresholds-from "$loc" \
  --thresholds-from "$loc2" --batch-size 4
run faithfulness faith-perturbation --per-class 1 --methods "$costly" --steps 20 --batch-size 4
