"""Two checkouts of eigencam timed in one sitting: each tree's own ``bench_overhead.py`` and
``bench_throughput.py``, run alternately (before, after, before, after...) so that a change in
the machine's load falls on both.

Each round runs both benchmarks of both trees with the tree's ``src`` first on ``PYTHONPATH``;
every tree writes its results into its own ``benchmarks/results/``. The summary quotes, per
tree, the median over rounds of Eigen-CAM's time over the forward pass (overhead) and of the
images per second of ``explain`` (throughput), with the range over rounds.

Run:  python benchmarks/compare_trees.py --before ../wt-before --after . --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, save

OVERHEAD = ["--models", "efficientnet_lite0,resnet50", "--batches", "1,16", "--no-peers"]
OVERHEAD += ["--no-memory", "--repeats", "3"]
THROUGHPUT = ["--limit", "128", "--repeats", "1"]


def run(tree: Path, script: str, args: list[str], out: str) -> dict:
    """Run ``tree``'s benchmark ``script`` on ``tree``'s package; its saved result."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [sys.executable, str(tree / "benchmarks" / script), *args, "--out", out]
    subprocess.run(cmd, env=env, check=True, cwd=tree, stdout=subprocess.DEVNULL)
    return json.loads((tree / "benchmarks" / "results" / f"{out}.json").read_text())


def overhead_ratios(result: dict) -> dict[str, float]:
    """Eigen-CAM's median time over the forward pass's, per ``model/batch``."""
    return {f"{r['model']}/b{r['batch']}": r["eigencam_over_forward"] for r in result["rows"]}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--before", type=Path, required=True, help="checkout of the earlier tree")
    p.add_argument("--after", type=Path, required=True, help="checkout of the later tree")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="redesign")
    args = p.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    overhead: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
    throughput: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
    for k in range(args.rounds):
        order = list(trees) if k % 2 == 0 else list(reversed(trees))
        for tag in order:
            result = run(trees[tag], "bench_overhead.py", OVERHEAD, f"cmp-overhead-{tag}")
            for key, ratio in overhead_ratios(result).items():
                overhead[tag].setdefault(key, []).append(ratio)
            result = run(trees[tag], "bench_throughput.py", THROUGHPUT, f"cmp-throughput-{tag}")
            for key in ("eigencam_npy", "eigencam_overlay_npy", result["floor"]):
                name = "dataloader_best" if key == result["floor"] else key
                throughput[tag].setdefault(name, []).append(result["median"][key])
            print(f"round {k + 1}/{args.rounds} {tag} done", flush=True)
    data = {
        "benchmark": "compare_trees",
        "environment": environment("cpu"),
        "trees": {t: str(p) for t, p in trees.items()},
        "rounds": args.rounds,
        "eigencam_over_forward": {
            t: {k: summary(v) for k, v in rows.items()} for t, rows in overhead.items()
        },
        "images_per_second": {
            t: {k: summary(v) for k, v in rows.items()} for t, rows in throughput.items()
        },
    }
    print(json.dumps(data, indent=2))
    print(f"wrote {save(args.out, data)}")


if __name__ == "__main__":
    main()
