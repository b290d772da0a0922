"""Shared benchmark machinery: interleaved timing, medians and spread, environment record.

Timings on a shared CPU are noisy, so every benchmark interleaves its variants in one process
(variant order shuffled each repeat), excludes warm-up, and reports the median and the
interquartile range of the repeats, plus the same statistics for the floor (the plain forward
pass) so its stability can be judged.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def environment(device: str = "cpu") -> dict[str, Any]:
    """Versions, device, threads and CPU/GPU model, recorded with every result."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    for name in ("torchvision", "pytorch_grad_cam", "torchcam", "captum", "eigencam", "numpy"):
        try:
            mod = __import__(name)
            info[name] = getattr(mod, "__version__", "?")
        except ImportError:
            info[name] = None
    try:
        from importlib.metadata import version

        info["grad-cam"] = version("grad-cam")
    except Exception:
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(
    variants: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 2,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Time each variant ``repeats`` times, interleaved in shuffled order; seconds per call.

    Returns:
        {name: {"median": s, "q1": s, "q3": s, "min": s, "n": repeats}}
    """
    for fn in variants.values():
        for _ in range(warmup):
            fn()
        sync(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    rng = random.Random(seed)
    names = list(variants)
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            sync(device)
            t0 = time.perf_counter()
            variants[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: summarize(ts) for name, ts in times.items()}


def summarize(ts: list[float]) -> dict[str, float]:
    ts = sorted(ts)
    q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
    return {"median": statistics.median(ts), "q1": q[0], "q3": q[2], "min": ts[0], "n": len(ts)}


def spread(stats: dict[str, float]) -> float:
    """Relative interquartile range (IQR / median)."""
    return (stats["q3"] - stats["q1"]) / stats["median"] if stats["median"] else float("nan")


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def peak_rss_mb(code: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``code`` in a fresh Python; it must print a JSON line {"base": kB, "peak": kB}."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: v / 1024 for k, v in data.items()}
