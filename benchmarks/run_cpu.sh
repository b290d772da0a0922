#!/usr/bin/env bash
# Every CPU benchmark of docs/benchmarks.md, then the document's tables re-rendered from the
# JSON results. Run it on a quiet machine (nothing else on the cores): each script interleaves
# its variants, so the ratios hold under moderate noise, but the absolute times do not.
#
#   benchmarks/run_cpu.sh            (about 35 minutes on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
status=0
for bench in overhead solvers scaling gradients throughput allocator; do  # one failure does not stop the rest
  "$py" "benchmarks/bench_$bench.py" || { echo "bench_$bench.py failed" >&2; status=1; }
done
"$py" benchmarks/summarize.py
exit $status
