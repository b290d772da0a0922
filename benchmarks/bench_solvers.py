"""The decomposition step alone: eigencam's solvers versus pytorch-grad-cam's per-image SVD.

Part 1 (speed, high-resolution maps): batches of 8 ReLU activations of 256 x 56 x 56 and
256 x 80 x 80 (plus the classifier-head shapes), decomposed by every eigencam solver and by
``pytorch_grad_cam.utils.svd_on_activations.get_2d_projection`` (centered, numpy, full SVD).

Part 2 (exactness, real activations): activations of the embedded EfficientNet-Lite0 (real
ImageNet weights) on real photos, at several layers and resolutions; every solver's maps are
compared with an exact float64 SVD (Pearson correlation per map, first 3 components; the
minimum over maps is reported), together with the spectral gap sigma2/sigma1 that makes
iterative methods slow or wrong.

Part 3 (solver choice): time of each solver as a function of the Gram size m = min(h*w, C),
which is what ``solver="auto"`` uses to choose.

Run:  python benchmarks/bench_solvers.py [--device cuda] [--images DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, interleaved, save

SOLVERS = ["eigh", "svd", "squaring", "subspace", "auto"]


def synthetic(batch: int, c: int, h: int, w: int, device: str, seed: int = 0) -> torch.Tensor:
    """ReLU activations with a decaying spectrum, like real layers."""
    g = torch.Generator().manual_seed(seed)
    rank = 12
    spatial = torch.randn(batch, h * w, rank, generator=g) * torch.logspace(0, -1.5, rank)
    acts = torch.relu(
        spatial @ torch.randn(batch, rank, c, generator=g)
        + 0.2 * torch.randn(batch, h * w, c, generator=g)
    )
    return acts.transpose(1, 2).reshape(batch, c, h, w).contiguous().to(device)


def real_activations(images: list[Path], device: str) -> dict[str, torch.Tensor]:
    """Activations of the embedded model at several layers, at 224 and 320 px input."""
    from eigencam.capture import LayerRef, capture_outputs
    from eigencam.io import load_image
    from eigencam.models import load_model

    loaded = load_model(device=device)
    modules = dict(loaded.model.named_modules())
    names = ["_blocks.1", "_blocks.3._expand_conv", "_blocks.5", "_blocks.10", "_blocks.15", "_bn1"]
    pics = [load_image(p) for p in images]
    out = {}
    for size in (224, 320):
        pre = loaded.preprocessing.with_overrides(input_size=size)
        x = pre.batch(pics, device=device)
        refs = [LayerRef(n, modules[n]) for n in names]
        with torch.inference_mode(), capture_outputs(refs) as store:
            loaded.model(x)
        for n in names:
            a = store[n]
            out[f"{n}@{size} {tuple(a.shape[1:])}"] = a.float()
    return out


def exact_maps(acts: torch.Tensor, k: int, center: bool) -> np.ndarray:
    a = acts.double().cpu().numpy()
    b, c, h, w = a.shape
    maps = np.zeros((b, k, h * w))
    gaps = np.zeros(b)
    for i in range(b):
        o = a[i].reshape(c, h * w).T
        if center:
            o = o - o.mean(0)
        u, s, _ = np.linalg.svd(o, full_matrices=False)
        maps[i] = (u[:, :k] * s[:k]).T
        gaps[i] = s[1] / s[0] if s[0] > 0 else 0.0
    return maps, gaps


def min_abs_corr(got: np.ndarray, ref: np.ndarray) -> float:
    g = got - got.mean(-1, keepdims=True)
    r = ref - ref.mean(-1, keepdims=True)
    c = (g * r).sum(-1) / np.sqrt((g * g).sum(-1) * (r * r).sum(-1) + 1e-300)
    return float(np.abs(c).min())


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--peer-repeats", type=int, default=2)
    p.add_argument(
        "--images",
        default=None,
        help="folder of photos for real activations (default: bundled samples + dev data)",
    )
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--out", default="solvers")
    args = p.parse_args()
    from eigencam import eigen_cam

    dev = args.device
    result: dict = {"benchmark": "solvers", "environment": environment(dev), "args": vars(args)}

    # Part 1: speed on high-resolution maps and on classifier heads.
    speed = []
    for shape in [
        (8, 256, 56, 56),
        (8, 256, 80, 80),
        (16, 2048, 7, 7),
        (16, 1280, 7, 7),
        (16, 512, 14, 14),
    ]:
        acts = synthetic(*shape, device=dev)
        fns = {s: (lambda s=s, a=acts: eigen_cam(a, 1, center=True, solver=s)) for s in SOLVERS}
        stats = interleaved(fns, repeats=args.repeats, warmup=1, device=dev)
        row = {"shape": list(shape), "seconds": stats}
        if not args.no_peer:
            from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

            host = acts.cpu().numpy()
            peer = interleaved(
                {"pytorch-grad-cam": lambda h=host: get_2d_projection(h)},
                repeats=args.peer_repeats,
                warmup=0,
            )
            row["seconds"].update(peer)
            row["speedup_auto_vs_peer"] = (
                peer["pytorch-grad-cam"]["median"] / stats["auto"]["median"]
            )
        speed.append(row)
        print(
            json.dumps(
                {"shape": shape, **{k: round(v["median"], 5) for k, v in row["seconds"].items()}}
            ),
            flush=True,
        )
    result["speed"] = speed

    # Part 2: exactness on real activations.
    if args.images:
        images = sorted(Path(args.images).glob("*.*"))[:8]
    else:
        from eigencam.samples import sample_paths

        images = sample_paths()
        dev_dir = (
            Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-dev" / "images"
        )
        if dev_dir.is_dir():
            images += sorted(dev_dir.glob("*.JPEG"))[::97][:12]
    acc = []
    for label, acts in real_activations(images, dev).items():
        for center in (False, True):
            ref, gaps = exact_maps(acts, 3, center)
            row = {
                "layer": label,
                "center": center,
                "images": int(acts.shape[0]),
                "max_gap_ratio": float(gaps.max()),
                "min_corr": {},
            }
            for s in SOLVERS:
                got = (
                    eigen_cam(acts, 3, center=center, solver=s)
                    .projections.flatten(2)
                    .double()
                    .cpu()
                    .numpy()
                )
                row["min_corr"][s] = min_abs_corr(got, ref)
            acc.append(row)
            print(json.dumps(row), flush=True)
    result["accuracy"] = acc

    # Part 3: solver time against the Gram size m.
    choice = []
    for m in (16, 49, 100, 196, 400, 784, 1024, 1600):
        side = round(m**0.5)
        acts = synthetic(8, 2048, side, side, device=dev, seed=m)  # m = h*w < C
        fns = {
            s: (lambda s=s, a=acts: eigen_cam(a, 1, solver=s))
            for s in ("eigh", "svd", "squaring", "subspace")
        }
        stats = interleaved(fns, repeats=max(2, args.repeats // 2), warmup=1, device=dev)
        choice.append({"m": side * side, "seconds": {k: v["median"] for k, v in stats.items()}})
        print(json.dumps(choice[-1]), flush=True)
    result["solver_choice"] = choice
    print(f"wrote {save(args.out + ('' if dev == 'cpu' else '_' + dev.split(':')[0]), result)}")


if __name__ == "__main__":
    main()
