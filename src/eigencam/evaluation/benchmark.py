"""What the three benchmarks (``localize``, ``attack``, ``faithfulness``) share.

Each is a :class:`Benchmark`: a task of the run loop (:func:`~eigencam.runs.run_task`) over a
dataset, whose :meth:`Benchmark.run` is the command's function. Here too: the maps of a method
under the isolation policy, the head of ``metrics.json``, and the writing of the outputs.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.errors import InputMismatchError, OutputError, check
from eigencam.evaluation.datasets import Dataset, Sample
from eigencam.evaluation.tables import write_csv, write_text
from eigencam.io.outputs import atomic_write, write_json
from eigencam.methods.base import Explainer
from eigencam.methods.targets import logits_of
from eigencam.models.preprocessing import Preprocessing
from eigencam.runs.folder import RunFolder, RunRecords
from eigencam.runs.loop import Part, RunStats, run_task
from eigencam.runs.options import RunOptions
from eigencam.runs.source import Batch, LoadedImage, image_batches, size_mismatch
from eigencam.runs.step import classify, isolate

#: Errors of a method that stop a benchmark; any other EigenCAMError of a method (it cannot
#: explain this model or layer, say) leaves that method's cells of the image empty, as in
#: ``eigencam compare``: the other methods are still measured. An input the model cannot take
#: fails every method alike, so it stops the run too.
METHOD_RUN_ERRORS: tuple[type[Exception], ...] = (OutputError, InputMismatchError)


@dataclass
class Benchmark:
    """A benchmark as a task of the run loop; ``Subclass.run`` is the command's function.

    A subclass names its ``command`` and ``settings_class`` and adds its own options as fields
    with defaults. By default (``attack``, ``faithfulness``) each batch becomes one json part
    ``{"rows": measure(batch), "failures"}``, and ``finish`` writes ``metrics.json`` (the head,
    then :meth:`summarize`) and the files of :meth:`write`.

    Attributes:
        dataset: the images (:func:`~eigencam.evaluation.open_dataset`).
        model: the classifier ((B, classes) logits).
        pre: its input preprocessing.
        explainers: {method key: explainer}, in table order.
        out: the output folder, also the run folder (``run.json``, ``records/``).
        settings: what is measured (a ``settings_class``).
        run_info: provenance for ``metrics.json`` (model, weights, command...).
        labels: class names.
        options: batch size, workers, device, resume/overwrite, max_pixels, progress.
    """

    command: ClassVar[str]
    settings_class: ClassVar[type]
    codec: ClassVar[str] = "json"
    batch_size: ClassVar[int] = 8
    #: The boxes are used: an image annotated for another size fails, and ``metrics.json``
    #: records the preprocessing (it places the boxes) and the skipped annotations.
    uses_boxes: ClassVar[bool] = True

    dataset: Dataset
    model: nn.Module
    pre: Preprocessing
    explainers: Mapping[str, Explainer]
    out: Path
    settings: Any
    run_info: dict[str, Any]
    labels: Sequence[str] | None
    options: RunOptions

    def __post_init__(self) -> None:
        check(bool(self.explainers), f"{self.command} needs at least one method")

    @classmethod
    def run(
        cls,
        dataset: Dataset,
        model: nn.Module,
        preprocessing: Preprocessing,
        explainers: Mapping[str, Explainer],
        out_dir: str | Path,
        *,
        settings: Any = None,
        run_info: Mapping[str, Any] | None = None,
        labels: Sequence[str] | None = None,
        run: RunOptions | None = None,
        **options: Any,
    ) -> Any:
        """Evaluate every explainer on ``dataset``; write the outputs into ``out_dir``.

        The arguments are the attributes (``settings`` defaults to ``settings_class()``, ``run``
        to :class:`~eigencam.runs.RunOptions` with the class's ``batch_size``); ``options`` are
        the subclass's fields. Runs are resumable.

        Returns:
            What ``finish`` returns: the ``metrics.json`` content (``attack`` and
            ``faithfulness`` write it also when the run is interrupted).
        """
        run = run or RunOptions(batch_size=cls.batch_size)
        settings = settings or cls.settings_class()
        info = dict(run_info or {})
        out = Path(out_dir)
        task = cls(
            dataset, model, preprocessing, explainers, out, settings, info, labels, run, **options
        )
        task.prepare()
        folder = RunFolder(out, task.identity(), command=cls.command, codec=cls.codec)
        return run_task(
            task,
            folder,
            dataset.samples,
            run,
            lambda todo: image_batches(todo, preprocessing, run),
            in_flight=task.in_flight,
        )

    @property
    def in_flight(self) -> int:
        """Parts processed ahead of the one being written."""
        return 2

    def prepare(self) -> None:
        """Work before the run starts (``localize``: the calibration run)."""

    def identity(self) -> dict[str, Any]:
        """What must not change between a run and its resumption."""
        return {
            "dataset": {
                "root": str(Path(self.dataset.root).resolve()),
                "format": self.dataset.format,
            },
            "methods": list(self.explainers),
            "settings": settings_dict(self.settings),
            "preprocessing": self.pre.describe(),
            "model": {k: self.run_info.get(k) for k in ("model", "weights")},
        }

    def sized(self, batch: Batch) -> list[tuple[LoadedImage, Sample]]:
        """The batch's images whose annotation fits them; the others fail in ``batch``."""
        items = []
        for img, sample in batch.items:
            why = size_mismatch(img, sample)
            if why is None:
                items.append((img, sample))
            else:
                batch.fail(sample, why)
        return items

    def process(self, batch: Batch) -> Part | Future[Part]:
        rows = self.measure(batch)
        return Part({"rows": rows, "failures": batch.failures}, len(rows), len(batch.failures))

    def measure(self, batch: Batch) -> list[dict[str, Any]]:
        """One row per image that could be measured (the others fail in ``batch``)."""
        raise NotImplementedError

    def advance(self, images: float) -> None:
        """Move the run's progress within a batch (a progress object with ``advance``, as
        :class:`eigencam.cli.common.Progress`), by ``images`` (fractions allowed)."""
        advance = getattr(self.options.progress, "advance", None)
        if callable(advance):
            advance(images)

    def summarize(self, records: RunRecords) -> dict[str, Any]:
        """The aggregates of ``metrics.json``."""
        raise NotImplementedError

    def write(self, metrics: Mapping[str, Any], records: RunRecords) -> None:
        """Every output file but ``metrics.json``."""
        raise NotImplementedError

    def finish(self, folder: RunFolder, stats: RunStats) -> Any:
        """``metrics.json`` (provenance, settings, dataset, timing, the summary) and the rest."""
        records = folder.records().restrict({s.key for s in self.dataset.samples})
        n = stats.ok + stats.failed
        head = {**self.run_info, "command": self.run_info.get("command", self.command)}
        head["settings"] = settings_dict(self.settings)
        if self.uses_boxes:
            head["preprocessing"] = self.pre.describe()
        ds = self.dataset
        head["dataset"] = {"root": str(ds.root), "format": ds.format, "images": len(ds.samples)}
        if self.uses_boxes:
            head["dataset"]["skipped_annotations"] = [list(s) for s in ds.skipped]
        head["timing"] = {
            "seconds_this_call": round(stats.seconds, 2),
            "images_this_call": n,
            "seconds_per_image": round(stats.seconds / n, 3) if n else None,
            "resumed_images": stats.resumed,
        }
        metrics = {**head, **self.summarize(records)}
        write_json(self.out / "metrics.json", metrics)
        self.write(metrics, records)
        return metrics


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as JSON (tuples as lists, mappings as dicts)."""
    raw = {f.name: getattr(settings, f.name) for f in fields(settings)}
    return json.loads(json.dumps(raw, default=dict))


def logits(model: nn.Module, x: Tensor) -> Tensor:
    """The classifier's float logits for a batch (eval mode, flags restored)."""
    return logits_of(classify(model, x)).float()


def method_maps(
    explainer: Explainer, x: Tensor, targets: Tensor | None
) -> tuple[Tensor, dict[int, str]]:
    """(B, k, H, W) maps of one method on a batch and ``{image index: error}``.

    A batch that fails is retried image by image (:func:`~eigencam.runs.isolate`); the maps of
    the images a method still fails on are NaN.
    """

    def explain(rows: list[int]) -> list[Tensor]:
        xs = x[rows]
        res = explainer(xs) if targets is None else explainer(xs, targets=targets[rows])
        return list(res.maps.detach().float())

    outcomes = isolate(explain, list(range(x.shape[0])), METHOD_RUN_ERRORS)
    k = 1 if targets is None else targets.shape[1]
    blank = torch.full((k, *x.shape[-2:]), float("nan"), device=x.device)
    maps = torch.stack([blank if m is None else m.to(x.device) for _, m, _ in outcomes])
    return maps, {i: error_text(e) for i, _, e in outcomes if e is not None}


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def num(x: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    v = float(x)
    return None if not np.isfinite(v) else v


def class_name(labels: Sequence[str] | None, c: int) -> str:
    return labels[c] if labels is not None and 0 <= c < len(labels) else str(c)


def failures_note(metrics: Mapping[str, Any]) -> list[str]:
    """The last lines of a ``table.md``: how many images failed, if any."""
    n = len(metrics.get("failures") or [])
    return [f"_{n} image(s) failed; see metrics.json `failures`._", ""] if n else []


def write_outputs(
    out: Path,
    table: str,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    failures: Sequence[Mapping[str, Any]],
) -> None:
    """``table.md`` and ``per_image.csv`` (``rows``, then one row per failed image with its
    error in the last column), each written atomically."""
    write_text(out / "table.md", table)
    blank = [""] * (len(header) - 2)
    failed = ([f["key"], *blank, f["error"]] for f in failures)
    write_csv(out / "per_image.csv", header, [*rows, *failed])


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (loaded when a plot is drawn)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(path: str | Path, fig: Any) -> Path:
    """Atomically write a matplotlib figure as PNG and close it."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    data = buf.getvalue()
    return atomic_write(path, lambda fh: fh.write(data))


def slug(text: str) -> str:
    """``text`` as a file name: runs of other characters than ``A-Za-z0-9_.-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")
