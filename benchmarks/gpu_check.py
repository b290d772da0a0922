"""GPU checks, run as one script on a CUDA machine: correctness, synchronisation, cost, memory.

A. CUDA maps equal CPU maps (every solver, same sign), fp16/bf16 autocast works.
B. No host synchronisation: ``EigenCAM(..., check_finite=False)`` runs under
   ``torch.cuda.set_sync_debug_mode("error")``; the default (``check_finite=True``) is reported.
C. Cost at batch 64, 224 px (ResNet-50, VGG-16, EfficientNet-Lite0): a pipelined loop of calls
   (one synchronisation at the end, as a data loop would run) for the plain forward pass,
   Eigen-CAM without and with the finiteness check, and pytorch-grad-cam's EigenCAM; peak
   allocated GPU memory of the forward pass and of Eigen-CAM.
D. Decomposition alone: every solver on high-resolution maps and classifier heads.
E. Grad-CAM (when registered) versus pytorch-grad-cam's GradCAM at batch 64.

Run:  python benchmarks/gpu_check.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, summarize

PEER_LAYER = {"resnet50": "layer4", "vgg16": "features.29", "efficientnet_lite0": "_bn1"}


def log(*a):
    print(*a, flush=True)


def load(name, device):
    from eigencam.models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name, device=device)


def part_a(dev):
    from eigencam import EigenCAM
    from eigencam.io import load_image
    from eigencam.samples import sample_paths

    cpu = load("efficientnet_lite0", "cpu")
    gpu = load("efficientnet_lite0", dev)
    x = cpu.preprocessing.batch([load_image(p) for p in sample_paths()])
    out = {}
    ref = EigenCAM(cpu.model, n_components=2, solver="svd")(x).raw
    for solver in ("auto", "eigh", "svd", "squaring", "subspace"):
        got = EigenCAM(gpu.model, n_components=2, solver=solver)(x.to(dev)).raw.cpu()
        a = got.flatten(2) - got.flatten(2).mean(-1, keepdim=True)
        b = ref.flatten(2) - ref.flatten(2).mean(-1, keepdim=True)
        corr = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
        out[solver] = {"min_corr_signed": float(corr.min())}
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cuda", dtype=dtype):
            r = EigenCAM(gpu.model)(x.to(dev))
        got = r.raw.cpu().flatten(1)
        a, b = (
            got - got.mean(-1, keepdim=True),
            ref[:, 0].flatten(1) - ref[:, 0].flatten(1).mean(-1, keepdim=True),
        )
        out[f"autocast_{dtype}"] = {
            "finite": bool(torch.isfinite(r.maps).all()),
            "min_corr_signed": float(((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).min()),
        }
    return out


def part_b(dev):
    from eigencam import EigenCAM

    model = load("resnet50", dev).model
    x = torch.randn(8, 3, 224, 224, device=dev)
    res = {}
    for flag in (False, True):
        cam = EigenCAM(model, check_finite=flag)
        cam(x)  # warm-up (auto-layer choice is made and cached here)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            cam(x)
            res[f"check_finite={flag}"] = "no synchronisation"
        except RuntimeError as err:
            res[f"check_finite={flag}"] = f"synchronises: {str(err).splitlines()[0][:160]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return res


def pipelined(fns, calls=10, repeats=5):
    for fn in fns.values():
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t0) / calls)
    return {k: summarize(v) for k, v in times.items()}


def peak_memory(fn):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def part_c(dev, batch):
    rows = []
    for name in ("resnet50", "vgg16", "efficientnet_lite0"):
        rows.append(cost_row(name, dev, batch))
        log(json.dumps({k: v for k, v in rows[-1].items() if k != "seconds"}))
        torch.cuda.empty_cache()
    return rows


def cost_row(name, dev, batch):
    from eigencam import EigenCAM

    model = load(name, dev).model
    x = torch.randn(batch, 3, 224, 224, device=dev)
    fast = EigenCAM(model, check_finite=False)
    checked = EigenCAM(model)

    def forward():
        with torch.inference_mode():
            model(x)

    fns = {
        "forward": forward,
        "eigencam_nosync": lambda: fast(x),
        "eigencam_checked": lambda: checked(x),
    }
    try:
        from pytorch_grad_cam import EigenCAM as Peer

        peer = Peer(model, target_layers=[dict(model.named_modules())[PEER_LAYER[name]]])
        fns["pytorch-grad-cam"] = lambda: peer(x)
    except ImportError:
        pass
    stats = pipelined(fns)
    floor = stats["forward"]["median"]
    row = {
        "model": name,
        "batch": batch,
        "seconds": stats,
        "nosync_over_forward": stats["eigencam_nosync"]["median"] / floor,
        "checked_over_forward": stats["eigencam_checked"]["median"] / floor,
        "peak_mib": {
            "forward": peak_memory(forward),
            "eigencam_nosync": peak_memory(lambda: fast(x)),
        },
    }
    if "pytorch-grad-cam" in stats:
        row["peer_over_forward"] = stats["pytorch-grad-cam"]["median"] / floor
        row["speedup_vs_peer"] = (
            stats["pytorch-grad-cam"]["median"] / stats["eigencam_nosync"]["median"]
        )
    row["peak_ratio"] = row["peak_mib"]["eigencam_nosync"] / row["peak_mib"]["forward"]
    return row


def part_d(dev):
    from bench_solvers import synthetic

    from eigencam import eigen_cam

    rows = []
    for shape in [
        (8, 256, 56, 56),
        (8, 256, 80, 80),
        (64, 2048, 7, 7),
        (64, 512, 14, 14),
        (64, 1280, 7, 7),
    ]:
        acts = synthetic(*shape, device="cpu").to(dev)
        fns = {
            s: (lambda s=s, a=acts: eigen_cam(a, 1, solver=s, check_finite=False))
            for s in ("eigh", "svd", "squaring", "subspace", "auto")
        }
        stats = pipelined(fns, calls=5, repeats=3)
        rows.append(
            {"shape": list(shape), "ms": {k: round(v["median"] * 1e3, 3) for k, v in stats.items()}}
        )
        log(json.dumps(rows[-1]))
    return rows


def part_e(dev, batch):
    from eigencam.methods import available_methods, get_method

    if "gradcam" not in available_methods():
        return "gradcam not registered"
    from pytorch_grad_cam import GradCAM

    rows = []
    for name in ("resnet50", "efficientnet_lite0"):
        rows.append(gradcam_row(name, dev, batch, get_method("gradcam"), GradCAM))
        log(json.dumps(rows[-1]))
    return rows


def gradcam_row(name, dev, batch, ours_cls, peer_cls):
    model = load(name, dev).model
    x = torch.randn(batch, 3, 224, 224, device=dev)
    layer = PEER_LAYER[name]
    ours = ours_cls(model, layer)
    peer = peer_cls(model, target_layers=[dict(model.named_modules())[layer]])
    stats = pipelined(
        {"eigencam.gradcam": lambda: ours(x), "pytorch-grad-cam": lambda: peer(x)},
        calls=5,
        repeats=3,
    )
    return {"model": name, "ms": {k: round(v["median"] * 1e3, 2) for k, v in stats.items()}}


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=".")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    dev = "cuda"
    result = {"environment": environment(dev)}
    log(json.dumps(result["environment"]))
    for key, fn in (
        ("A_correctness", lambda: part_a(dev)),
        ("B_sync", lambda: part_b(dev)),
        ("C_cost", lambda: part_c(dev, args.batch)),
        ("D_solvers", lambda: part_d(dev)),
        ("E_gradcam", lambda: part_e(dev, args.batch)),
    ):
        t0 = time.perf_counter()
        try:
            result[key] = fn()
        except Exception:
            result[key] = {"error": traceback.format_exc()}
        log(key, f"{time.perf_counter() - t0:.1f}s", json.dumps(result[key])[:2000])
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
