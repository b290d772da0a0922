r"""``faithfulness``: do the maps point at what the classifier uses? Every faithfulness metric of
:mod:`eigencam.evaluation.metrics.faithfulness`, for every method, on a dataset.

Each method explains each image's top-1 predicted class (class-agnostic methods: their one
map), and the maps are scored with:

- deletion AUC (lower is better) and insertion AUC (higher is better): the predicted class's
  probability as pixels are removed from / revealed on a baseline (blurred image or a constant)
  in order of decreasing relevance, ``steps`` equal steps;
- average drop % (lower is better) and increase in confidence % (higher is better): the image
  multiplied by its map;
- ROAD (remove and debias, noisy linear imputation) at the given fractions, most relevant first
  (MoRF, lower is better) and least relevant first (LeRF, higher is better), and their
  combination :math:`(\mathrm{LeRF} - \mathrm{MoRF}) / 2` (higher is better; the convention of
  pytorch-grad-cam's ``ROADCombined``): a map must rank pixels well at both ends.

Two maps that know nothing of the model are always scored too (:mod:`eigencam.evaluation
.baselines`): a random map (seeded per image) and a centred Gaussian. A method is only
informative where it beats both.

Outputs: ``metrics.json`` (per method: mean, median, quartiles of every metric; the mean
deletion / insertion / ROAD curves), ``table.md``, ``per_image.csv``, ``curves.png``.
:func:`run_faithfulness` runs a :class:`FaithfulnessTask` on the run loop
(:func:`~eigencam.runs.run_task`): runs are resumable, and an interrupted run still writes the
outputs of what finished. An unreadable image is a recorded failure; a method failing on an
image (an :class:`~eigencam.errors.EigenCAMError`) leaves that method's cells empty.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.errors import check, check_choice, check_range
from eigencam.evaluation import benchmark as bm
from eigencam.evaluation.datasets import Dataset
from eigencam.evaluation.metrics.baselines import center_gaussian, key_seed, random_maps
from eigencam.evaluation.metrics.faithfulness import (
    Curve,
    average_drop_increase,
    deletion_insertion,
    road,
)
from eigencam.evaluation.metrics.stats import describe
from eigencam.io.outputs import atomic_write
from eigencam.methods.base import Explainer
from eigencam.models.preprocessing import Preprocessing
from eigencam.runs.folder import RunFolder, RunRecords
from eigencam.runs.loop import Part, RunStats, run_task
from eigencam.runs.options import RunOptions
from eigencam.runs.source import Batch, image_batches
from eigencam.runs.step import to_batch

BASELINE_KEYS = {"random": "random (baseline)", "center_gaussian": "centre Gaussian (baseline)"}
# (key, title, higher is better, shown as percent)
METRICS: tuple[tuple[str, str, bool, bool], ...] = (
    ("deletion_auc", "Deletion AUC ↓", False, False),
    ("insertion_auc", "Insertion AUC ↑", True, False),
    ("average_drop", "Average drop % ↓", False, True),
    ("increase", "Increase in confidence % ↑", True, True),
    ("road_morf", "ROAD MoRF ↓", False, False),
    ("road_lerf", "ROAD LeRF ↑", True, False),
    ("road_combined", "ROAD (LeRF − MoRF)/2 ↑", True, False),
)
CURVES = ("deletion", "insertion", "road_morf", "road_lerf")


# -- settings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaithfulnessSettings:
    """What is measured.

    Attributes:
        steps: deletion / insertion steps (steps + 1 points from 0 to all pixels).
        baseline: what deleted pixels become and insertion starts from: ``blur`` (the image
            blurred with sigma ``blur_sigma``, default 5% of the side) or ``constant``.
        constant: the constant's pixel value in [0, 1] (0 = black).
        blur_sigma: blur sigma in pixels, or None for 5% of the longer side.
        road_fractions: fractions of pixels imputed by ROAD.
        road_noise: standard deviation of ROAD's imputation noise (pixel units).
        seed: seed of the ROAD noise and of the random baseline (mixed with each image's key).
        gaussian_sigma: sigma of the centre-Gaussian baseline, as a fraction of each side.
        batch_size: model inputs per forward pass inside the metrics.
    """

    steps: int = 20
    baseline: str = "blur"
    constant: float = 0.0
    blur_sigma: float | None = None
    road_fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    road_noise: float = 0.01
    seed: int = 0
    gaussian_sigma: float = 0.25
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1)
        check_choice("baseline", self.baseline, ("blur", "constant"))
        check_range("constant", self.constant, 0.0, 1.0)
        check(
            self.blur_sigma is None or self.blur_sigma > 0,
            f"blur_sigma must be > 0, got {self.blur_sigma}",
        )
        fractions = self.road_fractions
        check(
            bool(fractions) and all(0 < f < 1 for f in fractions),
            f"road_fractions must be in (0, 1), got {fractions}",
        )
        check_range("road_noise", self.road_noise, 0)
        check(self.gaussian_sigma > 0, f"gaussian_sigma must be > 0, got {self.gaussian_sigma}")
        check_range("batch_size", self.batch_size, 1)


# -- scoring --------------------------------------------------------------------------------
def score_maps(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    targets: Tensor,
    keys: Sequence[str],
    pre: Preprocessing,
    settings: FaithfulnessSettings,
) -> dict[str, Any]:
    """Every metric for a batch of maps (B, H, W): per-image values (B,) and curves (B, S)."""
    common = dict(mean=pre.mean, std=pre.std, batch_size=settings.batch_size)
    di = dict(
        steps=settings.steps,
        baseline=settings.baseline,
        constant=settings.constant,
        blur_sigma=settings.blur_sigma,
        **common,
    )
    dele = deletion_insertion(model, x, maps, targets, mode="deletion", **di)
    ins = deletion_insertion(model, x, maps, targets, mode="insertion", **di)
    drop, inc = average_drop_increase(model, x, maps.clamp(0, 1), targets, **common)
    rd = dict(fractions=settings.road_fractions, noise=settings.road_noise, **common)
    morf = _road_per_key(model, x, maps, targets, keys, "morf", settings, rd)
    lerf = _road_per_key(model, x, maps, targets, keys, "lerf", settings, rd)
    return {
        "values": {
            "deletion_auc": dele.auc.numpy(),
            "insertion_auc": ins.auc.numpy(),
            "average_drop": 100 * drop.numpy(),
            "increase": 100 * inc.numpy().astype(np.float64),
            "road_morf": morf.auc.numpy(),
            "road_lerf": lerf.auc.numpy(),
            "road_combined": (lerf.auc.numpy() - morf.auc.numpy()) / 2,
        },
        "curves": {
            "deletion": dele.probs.numpy(),
            "insertion": ins.probs.numpy(),
            "road_morf": morf.probs.numpy(),
            "road_lerf": lerf.probs.numpy(),
        },
    }


def _road_per_key(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    targets: Tensor,
    keys: Sequence[str],
    order: str,
    settings: FaithfulnessSettings,
    kwargs: Mapping[str, Any],
) -> Curve:
    """:func:`road` image by image, each image's imputation noise seeded by its key.

    :func:`road` seeds image i of its batch with ``seed + i``; calling it per image with a
    seed drawn from the key makes an image's score independent of the batch it falls in (and of
    a resumed run's batching). The sparse imputation, not the model call, dominates its cost.
    """
    curves = [
        road(
            model,
            x[i : i + 1],
            maps[i : i + 1],
            targets[i : i + 1],
            order=order,
            seed=key_seed(str(k), settings.seed) % (2**31),
            **kwargs,
        )
        for i, k in enumerate(keys)
    ]
    return Curve(
        curves[0].fractions,
        torch.cat([c.probs for c in curves]),
        torch.cat([c.auc for c in curves]),
    )


def curve_fractions(settings: FaithfulnessSettings) -> dict[str, list[float]]:
    """The x values of the recorded curves."""
    counts = torch.linspace(0, 1, settings.steps + 1)
    return {
        "deletion": counts.tolist(),
        "insertion": counts.tolist(),
        "road_morf": [float(f) for f in settings.road_fractions],
        "road_lerf": [float(f) for f in settings.road_fractions],
    }


# -- the task -------------------------------------------------------------------------------
@dataclass
class FaithfulnessTask:
    """``eigencam faithfulness`` on the run loop: one part of rows and failures per batch; the
    outputs from the folder's records."""

    dataset: Dataset
    model: nn.Module
    pre: Preprocessing
    explainers: Mapping[str, Explainer]
    settings: FaithfulnessSettings
    run_info: Mapping[str, Any]
    labels: Sequence[str] | None
    device: Any

    def process(self, batch: Batch) -> Part:
        """Explain the batch with every method, add the baselines, score every map."""
        if not batch.items:
            return Part({"rows": [], "failures": batch.failures}, 0, len(batch.failures))
        items, pre, settings = batch.items, self.pre, self.settings
        x = to_batch([img.pixels for img, _ in items], pre, self.device)
        keys = [s.key for _, s in items]
        probs = bm.logits(self.model, x).softmax(1)
        pred = probs.argmax(1)
        size = tuple(x.shape[-2:])
        all_maps: dict[str, tuple[Tensor, dict[int, str]]] = {}
        for key, expl in self.explainers.items():
            specific = bool(getattr(expl, "class_specific", False))
            maps, errors = bm.method_maps(expl, x, pred[:, None] if specific else None)
            all_maps[key] = maps[:, 0], errors
        all_maps["random"] = (random_maps(keys, size, seed=settings.seed, device=x.device), {})
        all_maps["center_gaussian"] = (
            center_gaussian(len(keys), size, sigma=settings.gaussian_sigma, device=x.device),
            {},
        )
        per_method: dict[str, dict[int, dict[str, Any]]] = {}
        for key, (maps, errors) in all_maps.items():
            ok = [i for i in range(len(keys)) if i not in errors]
            entries: dict[int, dict[str, Any]] = {i: {"error": errors[i]} for i in errors}
            if ok:
                idx = torch.tensor(ok, device=x.device)
                scored = score_maps(
                    self.model, x[idx], maps[idx], pred[idx], [keys[i] for i in ok], pre, settings
                )
                for j, i in enumerate(ok):
                    entries[i] = {
                        "error": None,
                        **{k: bm.num(v[j]) for k, v in scored["values"].items()},
                        "curves": {
                            k: [round(float(p), 5) for p in v[j]]
                            for k, v in scored["curves"].items()
                        },
                    }
            per_method[key] = entries
        rows = []
        for i, (img, s) in enumerate(items):
            c = int(pred[i])
            rows.append(
                {
                    "key": s.key,
                    "file": str(img.path),
                    "label": s.label,
                    "predicted": c,
                    "predicted_name": bm.class_name(self.labels, c),
                    "prob": bm.num(probs[i, c]),
                    "methods": {k: v[i] for k, v in per_method.items()},
                }
            )
        return Part({"rows": rows, "failures": batch.failures}, len(rows), len(batch.failures))

    def finish(self, folder: RunFolder, stats: RunStats) -> dict[str, Any]:
        records = folder.records().restrict({s.key for s in self.dataset.samples})
        methods = [*self.explainers, *BASELINE_KEYS]
        metrics = bm.metrics_head(self.run_info, "faithfulness", self.settings, self.dataset, stats)
        metrics.update(summarize(records, methods, self.settings))
        header, rows = per_image_table(records, methods)
        bm.write_outputs(
            folder.path, metrics, table_markdown(metrics), header, rows, records.failures
        )
        if records.rows:
            curves_plot(folder.path / "curves.png", metrics)
        return metrics


def run_faithfulness(
    dataset: Dataset,
    model: nn.Module,
    preprocessing: Preprocessing,
    explainers: Mapping[str, Explainer],
    out_dir: str | Path,
    *,
    settings: FaithfulnessSettings | None = None,
    run_info: Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    run: RunOptions | None = None,
) -> dict[str, Any]:
    """Score every method's maps (and the two baselines) on ``dataset``; write every output.

    Args:
        dataset: the images (:func:`~eigencam.evaluation.open_dataset`; boxes are not used).
        model: the classifier ((B, classes) logits).
        preprocessing: its input preprocessing.
        explainers: {method key: explainer}, in table order.
        out_dir: output folder.
        settings: :class:`FaithfulnessSettings`.
        run_info: provenance for ``metrics.json``.
        labels: class names.
        run: batch size, workers, device, resume/overwrite, max_pixels, progress (default
            :class:`~eigencam.runs.RunOptions`).

    Returns:
        The ``metrics.json`` content (written also when the run is interrupted).
    """
    clash = [k for k in explainers if k in BASELINE_KEYS]
    check(not clash, f"method key(s) {clash} are reserved for the built-in baselines")
    settings = settings or FaithfulnessSettings()
    run = run or RunOptions()
    info = dict(run_info or {})
    identity = bm.run_identity(dataset, list(explainers), settings, preprocessing, info)
    folder = RunFolder(out_dir, identity, command="faithfulness")
    task = FaithfulnessTask(
        dataset, model, preprocessing, explainers, settings, info, labels, run.device
    )
    return run_task(
        task, folder, dataset.samples, run, lambda todo: image_batches(todo, preprocessing, run)
    )


# -- summary --------------------------------------------------------------------------------
def summarize(
    records: RunRecords, methods: Sequence[str], settings: FaithfulnessSettings
) -> dict[str, Any]:
    """Per method: :func:`~eigencam.evaluation.metrics.stats.describe` of every metric and the mean
    curves, over the images where the method ran."""
    rows = records.rows
    out: dict[str, Any] = {}
    fractions = curve_fractions(settings)
    for key in methods:
        ok = [r["methods"][key] for r in rows if not (r["methods"].get(key) or {}).get("error")]
        entry: dict[str, Any] = {
            "title": BASELINE_KEYS.get(key, key),
            "baseline": key in BASELINE_KEYS,
            "images": len(ok),
            "failed_images": len(rows) - len(ok),
        }
        for metric, *_ in METRICS:
            entry[metric] = describe([np.nan if e[metric] is None else e[metric] for e in ok])
        entry["curves"] = {
            c: {
                "fractions": fractions[c],
                "mean": np.mean([e["curves"][c] for e in ok], axis=0).round(5).tolist()
                if ok
                else None,
            }
            for c in CURVES
        }
        out[key] = entry
    labelled = [r for r in rows if r.get("label") is not None]
    return {
        "images": len(rows),
        "classification": {
            "top1_acc": float(np.mean([r["predicted"] == r["label"] for r in labelled]))
            if labelled
            else None,
        },
        "methods": out,
        "failures": records.failures,
    }


# -- report ---------------------------------------------------------------------------------
def table_markdown(metrics: Mapping[str, Any]) -> str:
    """``table.md``: means, then medians [interquartile range]."""
    s = metrics["settings"]
    base = "the blurred image" if s["baseline"] == "blur" else f"the constant {s['constant']}"
    note = (
        f"_{metrics['images']} images; the top-1 predicted class's probability. Deletion / "
        f"insertion: {s['steps']} steps, baseline {base}. ROAD: noisy linear imputation of "
        f"{', '.join(f'{100 * f:.0f}%' for f in s['road_fractions'])} of the pixels, mean "
        "probability over those fractions. Average drop / increase: the image multiplied by "
        "its map. ↓ lower is better, ↑ higher is better._"
    )
    titles = [t for _, t, _, _ in METRICS]
    lines = ["### Faithfulness (mean)", "", note, ""]
    lines.append("| Method | " + " | ".join(titles) + " | n |")
    lines.append("|---|" + "---:|" * (len(titles) + 1))
    for m in metrics["methods"].values():
        means = [(m[metric]["mean"], pct) for metric, _t, _hi, pct in METRICS]
        cells = ["-" if v is None else (f"{v:.1f}" if pct else f"{v:.3f}") for v, pct in means]
        lines.append(f"| {m['title']} | " + " | ".join(cells) + f" | {m['images']} |")
    lines += ["", "### Faithfulness (median [interquartile range])", ""]
    shown = [(k, t, p) for k, t, _h, p in METRICS if k != "increase"]
    lines.append("| Method | " + " | ".join(t for _, t, _ in shown) + " |")
    lines.append("|---|" + "---:|" * len(shown))
    for m in metrics["methods"].values():
        cells = [bm.cell(m[metric], 1 if pct else 3) for metric, _t, pct in shown]
        lines.append(f"| {m['title']} | " + " | ".join(cells) + " |")
    lines.append("")
    if metrics.get("failures"):
        lines += [f"_{len(metrics['failures'])} image(s) failed; see metrics.json `failures`._", ""]
    return "\n".join(lines)


def per_image_table(
    records: RunRecords, methods: Sequence[str]
) -> tuple[list[str], list[list[Any]]]:
    """``per_image.csv``: its header and one row per image and method, baselines included (the
    failed images are added by :func:`~eigencam.evaluation.benchmark.write_outputs`)."""
    names = [k for k, *_ in METRICS]
    header = ["file", "method", "label", "predicted", "prob", *names, "error"]
    rows = []
    for r in records.rows:
        for key in methods:
            m = r["methods"].get(key) or {"error": "not recorded"}
            head = [r["key"], key, r.get("label"), r["predicted"], r["prob"]]
            rows.append([*head, *(m.get(n) for n in names), m.get("error")])
    return header, rows


def curves_plot(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Mean deletion, insertion and ROAD curves of every method (``curves.png``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    panels = (
        ("deletion", "Deletion (most relevant removed first)"),
        ("insertion", "Insertion (most relevant revealed first)"),
        ("road", "ROAD: MoRF (solid), LeRF (dashed)"),
    )
    for i, (key, m) in enumerate(metrics["methods"].items()):
        style = dict(color="0.4" if m["baseline"] else colors[i % len(colors)])
        if m["baseline"]:
            style["linestyle"] = ":" if key == "random" else "-."
        for ax, (panel, _) in zip(axes, panels):
            if panel == "road":
                for c, ls in (("road_morf", "-"), ("road_lerf", "--")):
                    cur = m["curves"][c]
                    if cur["mean"] is not None:
                        st = {**style, "linestyle": style.get("linestyle", ls)}
                        ax.plot(cur["fractions"], cur["mean"], marker="o", ms=3, **st)
                continue
            cur = m["curves"][panel]
            if cur["mean"] is not None:
                ax.plot(cur["fractions"], cur["mean"], label=m["title"], **style)
    for ax, (_, title) in zip(axes, panels):
        ax.set(xlabel="fraction of pixels", ylabel="predicted class probability", title=title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    return atomic_write(path, lambda fh: fh.write(data))
