"""Eigen-CAM variants as object localizers on the ILSVRC dev set, one forward pass for all.

Every variant is an option of :class:`eigencam.EigenCAM` (``sign``, ``center``, ``relu``,
``n_components`` + ``combine``, ``fuse_layers``, ``flip``, ``smooth``). Running each with
``eigencam localize --methods ...`` repeats the same forward pass once per variant; this script
captures the needed layers once per batch (the batch and, when a variant flips, its mirror) and
hands the activations to each variant's own :meth:`EigenCAM.from_activations`, so the maps are
exactly those of ``EigenCAM(model, **options)(x)`` (checked on the first images before the run).
The localization runs, metrics and reports are those of ``eigencam localize``: part 1/2, then
part 2/2 with thresholds chosen on part 1/2, then part 1/2 re-scored with thresholds chosen on
part 2/2.

    python benchmarks/eigencam_variants.py OUT_DIR [--variants SPEC,SPEC...] [--box-grid GRID]

Results: docs/results.md, "Weakly-supervised localization".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from eigencam import EigenCAM
from eigencam.capture.hooks import capture_outputs, preserved_state
from eigencam.capture.layers import resolve_named
from eigencam.cli.common import Progress
from eigencam.evaluation.datasets import open_dataset
from eigencam.evaluation.localization import LocalizeSettings, localize
from eigencam.evaluation.metrics.protocols import parse_grid
from eigencam.methods import build_explainer
from eigencam.methods.base import CAMResult, Explainer
from eigencam.models import load_model
from eigencam.runs import RunOptions

DEFAULT_VARIANTS = ",".join(
    [
        "eigencam",
        "eigencam:center=true",
        "eigencam:center=true:sign=numpy:relu=true",
        "eigencam:n_components=2:combine=sum",
        "eigencam:n_components=3:combine=sum",
        "eigencam:n_components=2:combine=energy",
        "eigencam:fuse_layers=_blocks.10",
        "eigencam:flip=true",
        "eigencam:smooth=8",
        "eigencam:smooth=16",
        "eigencam:n_components=3:combine=energy",
        "eigencam:n_components=2:combine=energy:flip=true",
        "eigencam:n_components=2:combine=energy:smooth=8",
        "eigencam:target_layer=_blocks.15",
        "eigencam:fuse_layers=_blocks.15",
    ]
)
DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-dev"


class SharedForward:
    """Runs the model once per batch for a set of EigenCAM variants and caches their results."""

    def __init__(self, model: torch.nn.Module, variants: dict[str, EigenCAM]) -> None:
        self.model = model
        self.variants = variants
        self.verify = 3  # batches whose results are compared with the variants' own calls
        self._batch: torch.Tensor | None = None
        self._version = -1
        self._results: dict[str, CAMResult] = {}

    def result(self, key: str, x: torch.Tensor) -> CAMResult:
        # The batch itself is kept, so a later batch can never reuse its memory and be mistaken
        # for it (comparing data pointers would be).
        if x is not self._batch or x._version != self._version:
            self._results = self._compute(x)
            self._batch, self._version = x, x._version
            if self.verify > 0:
                self.verify -= 1
                self_check(self, x)
        return self._results[key]

    def _compute(self, x: torch.Tensor) -> dict[str, CAMResult]:
        auto = EigenCAM(self.model)(x[:1]).layer  # the auto layer, as the variants resolve it
        main = {
            key: auto
            if v.target_layer == "auto"
            else resolve_named(self.model, v.target_layer).label
            for key, v in self.variants.items()
        }
        labels = set(main.values())
        for v in self.variants.values():
            labels.update(ref.label for ref in v._fuse_refs())
        refs = [resolve_named(self.model, label) for label in sorted(labels)]
        flip = any(v.flip for v in self.variants.values())
        batch = x.shape[0]
        x2 = torch.cat([x, x.flip(-1)]) if flip else x
        with torch.inference_mode(), preserved_state(self.model), capture_outputs(refs) as store:
            output = self.model(x2)
        acts = {ref.label: store[ref.label] for ref in refs}
        out = {}
        for key, v in self.variants.items():
            rows = slice(None) if v.flip else slice(0, batch)
            layers = [main[key]] + [ref.label for ref in v._fuse_refs()]
            layer_acts = [(label, acts[label][rows]) for label in layers]
            out[key] = v.from_activations(x, output[rows], layer_acts)
        return out


class Variant(Explainer):
    """One variant's result from the shared forward pass."""

    class_specific = False

    def __init__(self, shared: SharedForward, key: str) -> None:
        super().__init__(shared.model)
        self.shared = shared
        self.key = key
        self.name = "eigencam"

    def __call__(self, inputs: torch.Tensor, targets=None) -> CAMResult:
        return self.shared.result(self.key, inputs)


def self_check(shared: SharedForward, x: torch.Tensor) -> None:
    """The shared pass gives exactly each variant's own result (maps and model output)."""
    for key, v in shared.variants.items():
        direct = v(x)
        shared_result = shared.result(key, x)
        torch.testing.assert_close(shared_result.maps, direct.maps, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(shared_result.output, direct.output, atol=1e-4, rtol=1e-4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, default=DEV)
    p.add_argument("--variants", default=DEFAULT_VARIANTS)
    p.add_argument("--thresholds", default="0.05:0.15:0.01")
    p.add_argument("--box-grid", default="0:0.99:0.01")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    loaded = load_model()
    variants = {
        spec: build_explainer(spec, loaded.model, loaded.target_layer)
        for spec in args.variants.split(",")
    }
    shared = SharedForward(loaded.model, variants)
    explainers = {key: Variant(shared, key) for key in variants}
    dataset = open_dataset(args.data).head(args.limit)
    from eigencam.io import load_image

    first = [load_image(s.path) for s in dataset.samples[:4]]
    self_check(shared, loaded.preprocessing.batch(first))
    settings = LocalizeSettings(
        thresholds=parse_grid(args.thresholds), box_grid=parse_grid(args.box_grid)
    )
    info = {"model": loaded.name, "weights": None, "argv": sys.argv[1:]}
    plan = [
        ("half1", 1, None, False),
        ("half2", 2, "half1", False),
        ("half1", 1, "half2", True),
    ]
    for name, part, calibrate, rescore in plan:
        out = args.out / name
        ds = dataset.part(part, 2)
        progress = Progress(None, name)
        try:
            metrics = localize(
                ds,
                loaded.model,
                loaded.preprocessing,
                explainers,
                out,
                settings=settings,
                calibration=None if calibrate is None else args.out / calibrate,
                run_info={**info, "name": name, "command": "benchmarks/eigencam_variants.py"},
                labels=loaded.labels,
                run=RunOptions(
                    batch_size=args.batch_size,
                    resume=rescore or (out / "run.json").is_file(),
                    progress=progress,
                ),
            )
        finally:
            progress.close()
        for key, m in metrics["methods"].items():
            a = m["paper"]["at_chosen"]
            print(
                f"{name} {key:48s} GT-known err {100 * a['gt_known_error']:5.1f}  "
                f"top-1 err {100 * a['top1_loc_error']:5.1f}  "
                f"MaxBoxAccV2 {100 * m['maxboxacc_v2']['value']:5.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
