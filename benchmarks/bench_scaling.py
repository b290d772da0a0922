"""How the cost of Eigen-CAM's own step (decomposition + upsampling) grows with batch,
resolution and channel count, against pytorch-grad-cam's per-image SVD. Writes a plot.

Run:  python benchmarks/bench_scaling.py [--device cuda] [--plot docs/images/scaling.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_solvers import synthetic
from common import ROOT, environment, interleaved, save


def ours(acts: torch.Tensor, size: int):
    from eigencam import eigen_cam
    from eigencam.postprocess.maps import upsample_normalize

    return upsample_normalize(eigen_cam(acts, 1).projections, (size, size))


def peer(host):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    return get_2d_projection(host)


SWEEPS = {
    "batch": [(b, 2048, 7, 7) for b in (1, 2, 4, 8, 16, 32, 64)],
    "resolution": [(8, 256, s, s) for s in (7, 14, 28, 56, 80)],
    "channels": [(8, c, 14, 14) for c in (64, 128, 256, 512, 1024, 2048)],
}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--peer-max-positions", type=int, default=3136, help="skip the peer above h*w")
    p.add_argument("--plot", default=str(ROOT / "docs" / "images" / "scaling.png"))
    p.add_argument("--out", default="scaling")
    args = p.parse_args()
    rows = []
    for sweep, shapes in SWEEPS.items():
        for shape in shapes:
            acts = synthetic(*shape, device=args.device)
            fns = {"eigencam": lambda a=acts: ours(a, 224)}
            if args.device == "cpu" and shape[2] * shape[3] <= args.peer_max_positions:
                host = acts.numpy()
                fns["pytorch-grad-cam"] = lambda h=host: peer(h)
            reps = args.repeats if "pytorch-grad-cam" not in fns or shape[2] < 28 else 2
            stats = interleaved(fns, repeats=reps, warmup=1, device=args.device)
            row = {
                "sweep": sweep,
                "shape": list(shape),
                **{k: v["median"] for k, v in stats.items()},
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    path = save(
        args.out,
        {
            "benchmark": "scaling",
            "environment": environment(args.device),
            "args": vars(args),
            "rows": rows,
        },
    )
    print(f"wrote {path}")
    plot(rows, Path(args.plot))


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    labels = {
        "batch": ("batch size (2048 x 7 x 7)", 0),
        "resolution": ("h = w (8 x 256 x h x w)", 2),
        "channels": ("channels (8 x C x 14 x 14)", 1),
    }
    for ax, (sweep, (xlabel, dim)) in zip(axes, labels.items()):
        sel = [r for r in rows if r["sweep"] == sweep]
        xs = [r["shape"][dim] for r in sel]
        ax.plot(
            xs,
            [r["eigencam"] * 1e3 for r in sel],
            "o-",
            label="eigencam (decomposition + upsampling)",
        )
        peer_pts = [
            (x, r["pytorch-grad-cam"] * 1e3) for x, r in zip(xs, sel) if "pytorch-grad-cam" in r
        ]
        if peer_pts:
            ax.plot(*zip(*peer_pts), "s--", label="pytorch-grad-cam get_2d_projection")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ms per batch")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
