"""Peak tensor memory of one call, as PyTorch's allocator sees it, on the CPU.

``torch.cuda.max_memory_allocated`` is what the GPU check reports; on the CPU the same quantity
(bytes held by live tensors, ignoring the allocator's cache and the interpreter) comes from the
profiler's memory events: every allocation and free, in order, summed into a timeline whose
maximum is the peak. It depends only on which tensors a call creates and when it frees them,
not on the device, so it measures on this CPU what the GPU target is about: with the code of
an earlier stop it gave 715.8 and 813.8 MiB for EfficientNet-Lite0's forward pass and Eigen-CAM
call at batch 64, where an H200 measured 716.5 and 814.5 MiB.

For each model: the plain forward pass under ``torch.inference_mode()``, ``EigenCAM(model)``
(automatic layer, ``check_finite=False`` as in the GPU check) and ``GradCAM(model)`` (automatic
layer, predicted class; its backward pass needs memory the forward pass does not), each after a
warm-up call.

Run:  python benchmarks/bench_allocator.py [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import build
from common import environment, save


def peak_mib(fn) -> float:
    """Highest total of live tensor bytes during ``fn()``, relative to its start (MiB)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.events() if e.self_cpu_memory_usage),
        key=lambda e: e.time_range.start,
    )
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="resnet50,vgg16,efficientnet_lite0")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--out", default="allocator")
    args = p.parse_args()
    from eigencam import EigenCAM
    from eigencam.methods import GradCAM

    rows = []
    for name in args.models.split(","):
        model = build(name, "cpu")
        x = torch.randn(args.batch, 3, args.size, args.size)
        cam = EigenCAM(model, check_finite=False)
        gradcam = GradCAM(model)

        def forward(model=model, x=x):
            with torch.inference_mode():
                model(x)

        layer = cam(x).layer  # warm-up: picks and caches the layer and its call count
        gradcam(x)
        forward()
        row = {
            "model": name,
            "batch": args.batch,
            "layer": layer,
            "peak_mib": {
                "forward": peak_mib(forward),
                "eigencam": peak_mib(lambda cam=cam, x=x: cam(x)),
                "gradcam": peak_mib(lambda gradcam=gradcam, x=x: gradcam(x)),
            },
        }
        row["ratio"] = row["peak_mib"]["eigencam"] / row["peak_mib"]["forward"]
        row["gradcam_ratio"] = row["peak_mib"]["gradcam"] / row["peak_mib"]["forward"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    payload = {
        "benchmark": "allocator",
        "environment": environment("cpu"),
        "args": vars(args),
        "rows": rows,
    }
    print(f"wrote {save(args.out, payload)}")


if __name__ == "__main__":
    main()
