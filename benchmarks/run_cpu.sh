#!/usr/bin/env bash
# Every CPU benchmark of docs/benchmarks.md, then the document's tables re-rendered from the
# JSON results. Run it on a quiet machine (nothing else on the cores): each script interleaves
# its variants, so the ratios hold under moderate noise, but the absolute times do not.
#
#   benchmarks/run_cpu.sh            (about 30 minutes on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
"$py" benchmarks/bench_overhead.py
"$py" benchmarks/bench_solvers.py
"$py" benchmarks/bench_scaling.py
"$py" benchmarks/bench_gradients.py
"$py" benchmarks/bench_throughput.py
"$py" benchmarks/summarize.py
