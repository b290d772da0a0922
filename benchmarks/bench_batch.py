"""Throughput of ``eigencam batch`` (local engine, Ray engine with 1 and 2 actors) against
``eigencam explain`` on the same dev images, each as the command a user runs (a fresh process).

Every command runs at two sizes (``--sizes``, default 64 and 256 images); a straight line
through the two wall times, ``wall = fixed + n / rate``, separates the fixed cost of a run
(interpreter, model, Ray start-up and actor pool) from the marginal throughput ``rate``.
Writes ``benchmarks/results/batch.json``.

Run:  python benchmarks/bench_batch.py [--data ../shared/data/imagenet-val-dev] [--sizes 64 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, environment, save

BATCH = ["--batch-size", "32", "--shard-size", "32", "--quiet"]
CONFIGS = {
    "explain": ["explain", "--batch-size", "32", "--workers", "2", "--save", "npy", "--quiet"],
    "local-2threads": ["batch", *BATCH, "--engine", "local", "--threads", "2"],
    "local-1thread": ["batch", *BATCH, "--engine", "local", "--threads", "1"],
    "ray-1actor-2cpus": [
        "batch",
        *BATCH,
        "--engine",
        "ray",
        "--num-workers",
        "1",
        "--num-cpus-per-worker",
        "2",
    ],
    "ray-2actors-1cpu": [
        "batch",
        *BATCH,
        "--engine",
        "ray",
        "--num-workers",
        "2",
        "--num-cpus-per-worker",
        "1",
    ],
}


def images(data: Path, n: int) -> list[str]:
    files = sorted(p for p in (data / "images").rglob("*") if p.suffix.lower() in {".jpeg", ".jpg"})
    if len(files) < n:
        raise SystemExit(f"{data}: {len(files)} images, {n} asked")
    return [str(p) for p in files[:n]]


def run(name: str, argv: list[str], paths: list[str], work: Path) -> dict:
    out = work / f"{name}-{len(paths)}"
    if argv[0] == "batch":
        listing = work / f"paths-{len(paths)}.txt"
        listing.write_text("\n".join(paths) + "\n")
        cmd = [sys.executable, "-m", "eigencam", *argv, str(listing), "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", "eigencam", *argv, *paths, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    row = {"config": name, "images": len(paths), "wall_s": round(wall, 2)}
    manifest = out / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        row["run_s"] = m["runs"][-1]["seconds"]
        row["ok"] = m["counts"]["ok"]
    return row


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imagenet-val-dev"))
    p.add_argument("--sizes", type=int, nargs=2, default=[64, 256])
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma list of CONFIGS keys")
    p.add_argument("--out", default="batch")
    args = p.parse_args()
    names = [c for c in args.configs.split(",") if c]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        for n in args.sizes:
            paths = images(Path(args.data), n)
            for name in names:
                row = run(name, CONFIGS[name], paths, work)
                print(json.dumps(row), flush=True)
                rows.append(row)
    small, large = args.sizes
    fits = {}
    for name in names:
        w = {r["images"]: r["wall_s"] for r in rows if r["config"] == name}
        rate = (large - small) / (w[large] - w[small]) if w[large] > w[small] else float("nan")
        fits[name] = {
            "wall_images_per_s": round(large / w[large], 2),
            "marginal_images_per_s": round(rate, 2),
            "fixed_s": round(w[large] - large / rate, 1),
        }
        print(f"{name:18s} {fits[name]}")
    path = save(
        args.out,
        {"environment": environment("cpu"), "load": os.getloadavg(), "rows": rows, "fits": fits},
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
