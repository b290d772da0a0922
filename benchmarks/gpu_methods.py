"""GPU check of every registered method: CUDA results equal CPU results, nothing leaks.

For each model (tiny CNN, ResNet-18, VGG-11, MobileNet-V2; random weights, seeded) and each
method in the registry: run on CPU and on CUDA (TF32 off, so both compute in full float32),
and check that

- every result tensor is on the input's device;
- the raw maps agree (Pearson correlation per map; CNN-Fixations compares fixation maps, whose
  argmax choices can flip on near-ties);
- the model's training / requires_grad flags and hooks are as before, no ``.grad`` was left;

then time each method on CUDA at batch 32 (ResNet-50, 224 px; Score-CAM and Ablation-CAM, which
run B x C forward passes, at batch 4), and report the peak allocated GPU memory of the call.

Run:  python benchmarks/gpu_methods.py --out DIR
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
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import environment, summarize


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.flatten(1).double().cpu()
    b = b.flatten(1).double().cpu()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    c = torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), 1.0)
    return float(c.min())


def hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def check_models():
    from tiny_models import TinyCNN

    torch.manual_seed(0)
    return {
        "tiny": (TinyCNN(channels=4), 32),
        "resnet18": (torchvision.models.resnet18(), 64),
        "vgg11": (torchvision.models.vgg11(), 32),
        "mobilenet_v2": (torchvision.models.mobilenet_v2(), 32),
    }


def part_a() -> list[dict]:
    from eigencam.methods import available_methods, get_method

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for mname, (model, size) in check_models().items():
        model.eval()
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
        for name in available_methods():
            cls = get_method(name)
            kwargs = {"batch_size": 64} if name in ("scorecam", "ablationcam") else {}
            targets = "top2" if cls.class_specific else None
            row = {"model": mname, "method": name}
            try:
                cpu = cls(model.cpu(), **kwargs)(x, targets)
                gpu_model = model.cuda()
                training = [m.training for m in gpu_model.modules()]
                flags = [p.requires_grad for p in gpu_model.parameters()]
                t0 = time.perf_counter()
                gpu = cls(gpu_model, **kwargs)(x.cuda(), targets)
                torch.cuda.synchronize()
                row["gpu_s"] = round(time.perf_counter() - t0, 4)
                row["on_device"] = all(
                    t.device.type == "cuda" for t in (gpu.maps, gpu.raw, gpu.output)
                )
                row["corr_raw"] = round(corr(cpu.raw, gpu.raw), 6)
                row["max_abs_diff_maps"] = float((cpu.maps - gpu.maps.cpu()).abs().max())
                row["same_targets"] = cpu.targets is None or torch.equal(
                    cpu.targets, gpu.targets.cpu()
                )
                row["state_kept"] = (
                    training == [m.training for m in gpu_model.modules()]
                    and flags == [p.requires_grad for p in gpu_model.parameters()]
                    and hooks(gpu_model) == 0
                    and all(p.grad is None for p in gpu_model.parameters())
                )
                threshold = 0.95 if name == "cnnfixations" else 0.999
                row["ok"] = bool(
                    row["on_device"]
                    and row["same_targets"]
                    and row["state_kept"]
                    and row["corr_raw"] >= threshold
                )
            except Exception as err:
                row["ok"] = False
                row["error"] = f"{type(err).__name__}: {err}"
                traceback.print_exc()
            print(row, flush=True)
            rows.append(row)
    return rows


def part_b(batch: int, repeats: int) -> list[dict]:
    """Every method on CUDA, ResNet-50 at 224 px: time (median) and peak allocated memory."""
    from eigencam.methods import available_methods, get_method

    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval().cuda()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    rows = []

    def forward():
        with torch.inference_mode():
            model(x)

    runs = {"forward": forward}
    perturbation = ("scorecam", "ablationcam")
    for name in available_methods():
        kwargs = {"batch_size": 256} if name in perturbation else {}
        explainer = get_method(name)(model, **kwargs)
        xb = x[:4] if name in perturbation else x
        runs[name] = lambda e=explainer, xb=xb: e(xb)
    for name, fn in runs.items():
        try:
            n = 1 if name in perturbation else repeats
            if name not in perturbation:
                fn()  # warm-up
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            row = {
                "method": name,
                "batch": 4 if name in perturbation else batch,
                **summarize(times),
                "peak_mb": round(peak, 1),
            }
        except Exception as err:
            row = {"method": name, "error": f"{type(err).__name__}: {err}"}
            traceback.print_exc()
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    warnings.simplefilter("ignore")
    result = {"environment": environment("cuda")}
    result["A_cuda_equals_cpu"] = part_a()
    result["B_cost_resnet50"] = part_b(args.batch, args.repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_methods.json").write_text(json.dumps(result, indent=2) + "\n")
    failed = [r for r in result["A_cuda_equals_cpu"] if not r.get("ok")]
    print(f"A: {len(failed)} failure(s)", [(r["model"], r["method"]) for r in failed])


if __name__ == "__main__":
    main()
