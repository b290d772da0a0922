"""Grad-CAM cost: our gradient capture versus pytorch-grad-cam, torchcam and Captum.

Our gradient methods record the autograd graph only above the target layer (parameters frozen
for the call, the layer's output made a fresh leaf); the peers record it for the whole network.
For each model this measures, in one process, interleaved:

- time of one Grad-CAM call for the predicted class (medians over repeats), each library's
  own end-to-end call on the same layer, and for three classes per image (``top3``: one call
  for us, three for the peers, which take one target per image);
- graph memory: the bytes autograd saves for the backward pass during the call (counted with
  ``torch.autograd.graph.saved_tensors_hooks``, unique storages, any device);
- on CUDA, the peak allocated GPU memory of the call.

Run:  python benchmarks/bench_gradients.py                       (CPU, batch 4, 224 px)
      python benchmarks/bench_gradients.py --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, interleaved, save, spread

LAYER = {"resnet50": "layer4", "vgg16": "features.29"}


@contextmanager
def saved_bytes():
    """Count the bytes of the distinct storages autograd saves for backward in the block."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[(t.device.type, storage.data_ptr())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield seen


def calls(model, layer: str, x: torch.Tensor, k: int) -> dict[str, Callable[[], object]]:
    """Each library's Grad-CAM for the top-k classes (k = 1: the predicted class)."""
    from eigencam.methods import GradCAM

    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        top = model(x).topk(k, dim=1).indices  # (B, k)
    ours = GradCAM(model, layer)
    out: dict[str, Callable[[], object]] = {
        "eigencam": lambda: ours(x, targets="top1" if k == 1 else f"top{k}")
    }
    try:
        from pytorch_grad_cam import GradCAM as PGC
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        peer = PGC(model=model, target_layers=[module])

        def pgc():
            for j in range(k):
                peer(x, targets=[ClassifierOutputTarget(int(t)) for t in top[:, j]])

        out["pytorch-grad-cam"] = pgc
    except ImportError:
        pass
    try:
        from torchcam.methods import GradCAM as TC

        def torchcam():
            with TC(model, layer, input_shape=tuple(x.shape[1:])) as extractor:
                for j in range(k):
                    scores = model(x)
                    extractor(top[:, j].tolist(), scores)

        out["torchcam"] = torchcam
    except ImportError:
        pass
    try:
        from captum.attr import LayerGradCam

        lgc = LayerGradCam(model, module)

        def captum():
            for j in range(k):
                lgc.attribute(x, target=top[:, j].tolist())

        out["captum"] = captum
    except ImportError:
        pass
    return out


def graph_memory(fn: Callable[[], object], device: str) -> dict[str, float]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with saved_bytes() as seen:
        fn()
    row = {"saved_mb": sum(seen.values()) / 2**20}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        row["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="resnet50,vgg16")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="result file name (default: by device)")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name in args.models.split(","):
        from eigencam.models import load_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_model(name, device=args.device).model
        x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
        for k in (1, 3):
            variants = calls(model, LAYER[name], x, k)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                times = interleaved(variants, args.repeats, warmup=1, device=args.device)
                memory = {v: graph_memory(fn, args.device) for v, fn in variants.items()}
            for p in model.parameters():  # the peers leave .grad behind; keep runs independent
                p.grad = None
            ours = times["eigencam"]["median"]
            for v in variants:
                row = {
                    "model": name,
                    "targets": k,
                    "method": v,
                    "median_s": round(times[v]["median"], 5),
                    "iqr_rel": round(spread(times[v]), 3),
                    "time_vs_ours": round(times[v]["median"] / ours, 2),
                    **{m: round(val, 1) for m, val in memory[v].items()},
                }
                rows.append(row)
                print(row, flush=True)
    path = save(
        args.out or f"gradients_{args.device.split(':')[0]}",
        {"environment": environment(args.device), "args": vars(args), "rows": rows},
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
