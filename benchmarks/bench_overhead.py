"""Eigen-CAM end to end versus the plain forward pass and pytorch-grad-cam's EigenCAM.

For each model and batch size, times (interleaved, medians over repeats):

- ``forward``: ``model(x)`` under ``torch.inference_mode()`` (the floor);
- ``eigencam``: ``EigenCAM(model)(x)``, forward + decomposition + maps upsampled to the input
  size and normalised (our default configuration, automatic layer);
- ``pytorch-grad-cam``: ``pytorch_grad_cam.EigenCAM`` on the same layer shape, maps upsampled
  to the input size (its own end-to-end call).

and, in fresh processes, the peak resident memory of each variant.

Run:  python benchmarks/bench_overhead.py            (CPU, ResNet-50, VGG-16, EfficientNet-Lite0)
      python benchmarks/bench_overhead.py --device cuda --batches 64 --no-peers
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, interleaved, peak_rss_mb, save, spread

# Layer given to pytorch-grad-cam (same output shape as our automatic choice; EfficientNet-Lite0's
# automatic layer is a ReLU6 module called twice, which pytorch-grad-cam mishandles, so the peer
# gets the head BatchNorm of the same 1280 x 7 x 7 shape).
PEER_LAYER = {"resnet50": "layer4", "vgg16": "features.29", "efficientnet_lite0": "_bn1"}


def build(name: str, device: str) -> torch.nn.Module:
    import warnings

    from eigencam.models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name, device=device).model


def variants(model, x, name, device, peers: bool, check_finite: bool):
    from eigencam import EigenCAM

    ours = EigenCAM(model, check_finite=check_finite)

    def forward():
        with torch.inference_mode():
            model(x)

    def eigencam():
        ours(x)

    out = {"forward": forward, "eigencam": eigencam}
    if peers:
        from pytorch_grad_cam import EigenCAM as PeerEigenCAM

        layer = dict(model.named_modules())[PEER_LAYER[name]]
        peer = PeerEigenCAM(model, target_layers=[layer])

        def grad_cam():
            peer(x, targets=None)

        out["pytorch-grad-cam"] = grad_cam
    return out


MEMORY_CODE = r"""
import json, sys, warnings, torch
from pathlib import Path
sys.path.insert(0, {bench!r})
torch.set_num_threads({threads})
from bench_overhead import build, variants
def status(key):  # kB, from /proc/self/status
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
model = build({name!r}, "cpu")
x = torch.randn({batch}, 3, {size}, {size})
fn = variants(model, x, {name!r}, "cpu", {peers}, True)[{variant!r}]
fn()  # warm-up: allocator pools, lazy imports, auto-layer cache
base = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
for _ in range(2):
    fn()
peak = status("VmHWM")
print(json.dumps({{"base": base, "peak": peak}}))
"""


def measure_memory(name: str, batch: int, size: int, peers: bool, names) -> dict:
    """Peak resident memory of each variant in a fresh process (MB): ``base`` is the resident
    set after building the model and one warm-up call, ``peak`` the highest resident set
    during two further calls (the kernel's high-water mark, reset after the warm-up)."""
    mem = {}
    for variant in names:
        code = MEMORY_CODE.format(
            bench=str(Path(__file__).resolve().parent),
            threads=torch.get_num_threads(),
            name=name,
            batch=batch,
            size=size,
            peers=peers,
            variant=variant,
        )
        mem[variant] = peak_rss_mb(code)
    return mem


def memory_fields(mem: dict) -> dict:
    fwd = mem["forward"]
    return {
        "peak_rss_mb": mem,
        "eigencam_peak_over_forward": mem["eigencam"]["peak"] / fwd["peak"],
        "eigencam_working_over_forward": (mem["eigencam"]["peak"] - mem["eigencam"]["base"])
        / max(fwd["peak"] - fwd["base"], 1e-9),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="resnet50,vgg16,efficientnet_lite0")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-check-finite", action="store_true", help="eigencam without the NaN check")
    p.add_argument("--out", default="overhead")
    p.add_argument(
        "--memory-only",
        action="store_true",
        help="re-measure only the memory columns of an existing results/<out>.json",
    )
    args = p.parse_args()
    if args.memory_only:
        remeasure_memory(args)
        return
    torch.manual_seed(0)
    rows = []
    for name in args.models.split(","):
        model = build(name, args.device)
        for batch in map(int, args.batches.split(",")):
            x = torch.randn(batch, 3, args.size, args.size, device=args.device)
            reps = args.repeats if batch > 1 else args.repeats * 4
            stats = interleaved(
                variants(model, x, name, args.device, not args.no_peers, not args.no_check_finite),
                repeats=reps,
                device=args.device,
            )
            floor = stats["forward"]["median"]
            row = {
                "model": name,
                "batch": batch,
                "size": args.size,
                "seconds": stats,
                "eigencam_over_forward": stats["eigencam"]["median"] / floor,
                "forward_spread": spread(stats["forward"]),
            }
            if "pytorch-grad-cam" in stats:
                row["peer_over_forward"] = stats["pytorch-grad-cam"]["median"] / floor
                row["speedup_vs_peer"] = (
                    stats["pytorch-grad-cam"]["median"] / stats["eigencam"]["median"]
                )
            if not args.no_memory and args.device == "cpu":
                mem = measure_memory(name, batch, args.size, not args.no_peers, stats)
                row.update(memory_fields(mem))
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "seconds"}), flush=True)
    path = save(
        args.out,
        {
            "benchmark": "overhead",
            "environment": environment(args.device),
            "args": vars(args),
            "rows": rows,
        },
    )
    print(f"wrote {path}")


def remeasure_memory(args) -> None:
    from common import RESULTS

    path = RESULTS / f"{args.out}.json"
    data = json.loads(path.read_text())
    for row in data["rows"]:
        mem = measure_memory(
            row["model"],
            row["batch"],
            row["size"],
            "pytorch-grad-cam" in row["seconds"],
            row["seconds"],
        )
        row.update(memory_fields(mem))
        print(json.dumps({k: v for k, v in row.items() if k != "seconds"}), flush=True)
    data["memory_args"] = vars(args)
    print(f"wrote {save(args.out, data)}")


if __name__ == "__main__":
    main()
