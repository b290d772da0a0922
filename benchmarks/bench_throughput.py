"""Dataset throughput: ``eigencam explain`` over a folder versus a plain DataLoader + forward loop.

The floor is what a user would write to run the model over a folder: a ``torch.utils.data``
Dataset that decodes and resizes each image with Pillow, a DataLoader (the best of 0, 1 and 2
worker processes is taken), and ``model(x)`` under ``inference_mode``. eigencam does the same
decoding in threads, then explains each batch and writes per-image files (``--save`` as the CLI)
plus results.json. Images/s are compared in the same run, alternating the variants.

Run:  python benchmarks/bench_throughput.py [--images DIR] [--limit 256] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, environment, save

DEV = ROOT.parent / "shared" / "data" / "imagenet-val-dev" / "images"


class FolderDataset(torch.utils.data.Dataset):
    def __init__(self, paths, pre):
        self.paths, self.pre = paths, pre

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return torch.from_numpy(self.pre.resize_image(im.convert("RGB")))


def plain_loop(paths, model, pre, batch_size, workers) -> float:
    loader = torch.utils.data.DataLoader(
        FolderDataset(paths, pre), batch_size=batch_size, num_workers=workers, shuffle=False
    )
    t0 = time.perf_counter()
    with torch.inference_mode():
        for pixels in loader:
            model(pre.normalize_batch(pixels))
    return len(paths) / (time.perf_counter() - t0)


def eigencam_run(paths, loaded, batch_size, workers, save_kinds) -> float:
    from eigencam import EigenCAM
    from eigencam.pipeline import OutputOptions, explain_files
    from eigencam.runs import RunOptions

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        report = explain_files(
            paths,
            EigenCAM(loaded.model),
            loaded.preprocessing,
            out,
            labels=loaded.labels,
            options=OutputOptions(save=save_kinds),
            run=RunOptions(batch_size=batch_size, workers=workers),
        )
        rate = len(paths) / (time.perf_counter() - t0)
    if report.failed:
        raise RuntimeError(f"{len(report.failed)} images failed")
    return rate


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", default=str(DEV))
    p.add_argument("--limit", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="eigencam decoding/writing threads")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="throughput")
    args = p.parse_args()
    from eigencam.models import load_model

    paths = sorted(
        p for p in Path(args.images).iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png")
    )
    paths = paths[: args.limit]
    loaded = load_model()
    pre = loaded.preprocessing
    variants = {
        **{
            f"dataloader_w{w}": (
                lambda w=w: plain_loop(paths, loaded.model, pre, args.batch_size, w)
            )
            for w in (0, 1, 2)
        },
        "eigencam_npy": lambda: eigencam_run(
            paths, loaded, args.batch_size, args.workers, ("npy",)
        ),
        "eigencam_overlay_npy": lambda: eigencam_run(
            paths, loaded, args.batch_size, args.workers, ("overlay", "npy")
        ),
    }
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm-up: page cache, allocator, auto-layer cache
        fn()
    for _ in range(args.repeats):
        for name, fn in variants.items():
            rates[name].append(fn())
            print(name, round(rates[name][-1], 2), "img/s", flush=True)
    med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
    floor_name = max((k for k in med if k.startswith("dataloader")), key=med.get)
    result = {
        "benchmark": "throughput",
        "environment": environment("cpu"),
        "args": vars(args),
        "images": len(paths),
        "images_per_second": rates,
        "median": med,
        "floor": floor_name,
        "ratio_npy": med["eigencam_npy"] / med[floor_name],
        "ratio_overlay_npy": med["eigencam_overlay_npy"] / med[floor_name],
    }
    print(
        json.dumps(
            {k: result[k] for k in ("median", "floor", "ratio_npy", "ratio_overlay_npy")}, indent=2
        )
    )
    print(f"wrote {save(args.out, result)}")


if __name__ == "__main__":
    main()
