"""The work of one shard, the same in both engines: decode, explain, write one Parquet part.

:class:`BatchSpec` holds everything a worker needs (small and picklable: a Ray actor gets a
copy); :class:`ShardWorker` loads the model and the explainer once, then turns each shard's
encoded images into rows and writes them as one part of the run folder, atomically. A shard's
images are explained in batches of ``batch_size`` consecutive readable images, so both engines
put the same images in the same forward passes: with the same device and torch threads their
outputs are identical bit for bit.

Per image, the row holds the top-5 classes, the explained variance, and: the map at the layer's
resolution, min-max normalised per component and quantised, :math:`u = \\lfloor 255\\, m
\\rfloor`; the box, the bounding box of the largest 8-connected component of
:math:`u > \\tau \\max u` on the map at the model's input size, in the original image's pixels
(the localization benchmark's extraction); optionally the map at the original size as PNG, and
an overlay file.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from eigencam.batch.inputs import ShardData, file_identity
from eigencam.batch.shards import DEFAULT_SAVE, SAVE_KINDS, overlay_dir, result_schema, shard_folder
from eigencam.capture.reshape import parse_reshape
from eigencam.errors import InvalidParameterError, check
from eigencam.io.images import DEFAULT_MAX_PIXELS, EncodedImage
from eigencam.io.png import encode_png, write_png
from eigencam.methods import MethodSpec, build_explainer, get_method
from eigencam.methods.base import param_names
from eigencam.models import RandomWeightsWarning, load_model
from eigencam.pipeline.explain import slice_result, top_predictions
from eigencam.postprocess import maps_at_original, normalize
from eigencam.postprocess.boxes import connected_components, quantize, to_original
from eigencam.runs.loop import Part
from eigencam.runs.source import iter_batches
from eigencam.runs.step import isolate, to_batch
from eigencam.viz import colormap_lut, overlay

# Eigen-CAM's box threshold: 15 % of the map's maximum, the best of the default Eigen-CAM on the
# embedded model over the ILSVRC dev set under both protocols of docs/results.md (docs/scale.md).
DEFAULT_THRESHOLD = 0.15
TOP_K = 5


def absolute_model(name: str) -> str:
    """A model name whose file part is absolute (workers may run in another folder)."""
    target, sep, attr = name.rpartition(":")
    if sep and target.endswith(".py") and Path(target).is_file():
        return f"{Path(target).absolute()}:{attr}"
    return str(Path(name).absolute()) if Path(name).is_file() else name


@dataclass(frozen=True)
class BatchSpec:
    """What to compute for every image, and how.

    Attributes:
        model, weights: a name for :func:`eigencam.models.load_model` and a state-dict file or
            None (files are made absolute: workers may run in another folder).
        model_args: options for the model's constructor.
        input_size, mean, std, resize: preprocessing overrides (None: the model's own).
        method, method_options: the registry name of the explanation method and its options.
        layer: target layer (None: the model's default).
        reshape: ``--reshape`` spec (``tokens``, ``tokens:N``, ``channels-last``, ``pyramid``).
        target: ``predicted``, a class index or ``top<k>`` (class-specific methods).
        threshold: box threshold fraction :math:`\\tau` of the map's maximum.
        save: what to store, a subset of :data:`~eigencam.batch.shards.SAVE_KINDS`.
        colormap, alpha: overlays.
        max_pixels: decompression-bomb guard.
        batch_size, decode_threads: images per forward pass, decoding threads per worker.
        device: ``cpu``, ``cuda``... (None: CUDA when the worker sees a GPU).
        threads: torch intra-op threads per worker (None: torch's default). On CPU the result
            bits depend on it; keep it equal to compare or resume runs.
    """

    model: str = "efficientnet_lite0"
    weights: str | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: str | None = None
    method: str = "eigencam"
    method_options: Mapping[str, Any] = field(default_factory=dict)
    layer: str | None = None
    reshape: str | None = None
    target: str | int = "predicted"
    threshold: float = DEFAULT_THRESHOLD
    save: tuple[str, ...] = DEFAULT_SAVE
    colormap: str = "jet"
    alpha: float = 0.5
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    batch_size: int = 32
    decode_threads: int = 2
    device: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "model", absolute_model(self.model))
        set_(self, "weights", None if self.weights is None else str(Path(self.weights).absolute()))
        set_(self, "model_args", MappingProxyType(dict(self.model_args or {})))
        set_(self, "method_options", MappingProxyType(dict(self.method_options or {})))
        set_(self, "save", tuple(self.save))

    def __reduce__(self):  # MappingProxyType does not pickle; Ray actors get a copy of the spec
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(model_args=dict(self.model_args), method_options=dict(self.method_options))
        return (functools.partial(BatchSpec, **values), ())

    def validate(self) -> BatchSpec:
        """Check the settings that need no model; returns self.

        Raises:
            InvalidParameterError: a setting out of range, an unknown save kind or colormap, a
                method option the method does not take, a target for a class-agnostic method.
            MethodNotFoundError: unknown method.
        """
        bad = [s for s in self.save if s not in SAVE_KINDS]
        check(
            not bad and bool(self.save),
            f"save: unknown kind(s) {bad or '(none given)'}; choose from {', '.join(SAVE_KINDS)}",
        )
        check(
            0.0 <= float(self.threshold) < 1.0,
            f"threshold must be a fraction in [0, 1), got {self.threshold}",
        )
        for name in ("batch_size", "decode_threads", "threads"):
            value = getattr(self, name)
            whole = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            check(
                whole or (name == "threads" and value is None),
                f"{name} must be an integer >= 1, got {value!r}",
            )
        check(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}")
        if "overlays" in self.save:
            colormap_lut(self.colormap)
        cls = get_method(self.method)
        accepted = [k for k in param_names(cls) if k not in ("target_layer", "reshape_transform")]
        unknown = sorted(k for k in self.method_options if k not in accepted)
        if unknown:
            raise InvalidParameterError(
                f"method {self.method!r} takes no option(s) {unknown}; its options: "
                f"{', '.join(sorted(accepted)) or 'none'}"
            )
        check(
            self.target == "predicted" or cls.class_specific,
            f"target applies to class-specific methods; {cls.name} is class-agnostic "
            "(see eigencam methods)",
        )
        return self

    def identity(self) -> dict[str, Any]:
        """The settings that decide what a row holds (JSON-ready): a run resumes only when these
        match."""
        values = {name: getattr(self, name) for name in IDENTITY}
        values["weights"] = None if self.weights is None else file_identity(self.weights)
        values["threshold"] = float(self.threshold)
        if "overlays" not in self.save:
            values.update(colormap=None, alpha=None)
        return json.loads(json.dumps(values, default=dict))

    def numerics(self, device: str) -> dict[str, Any]:
        """What can change the last bits of the floats: device, threads, batch size."""
        return {
            "device": device,
            "threads": torch.get_num_threads() if device.startswith("cpu") else None,
            "batch_size": self.batch_size,
            "torch": torch.__version__,
        }


# The fields of :meth:`BatchSpec.identity`, in the manifest's order.
IDENTITY = (
    "model", "weights", "model_args", "input_size", "mean", "std", "resize", "method",
    "method_options", "layer", "reshape", "target", "threshold", "save", "colormap", "alpha",
    "max_pixels",
)  # fmt: skip


@dataclass
class ShardSummary:
    """What a worker reports for a finished shard (the driver's progress and manifest)."""

    shard: int
    rows: int
    ok: int
    failed: int


@dataclass
class ShardPart(Part):
    """The loop's part of one shard: the worker has written the file, ``summary`` says what."""

    summary: ShardSummary | None = None


class ShardWorker:
    """The ``process`` step of a batch run: one shard's images in, one shard file (stamped with
    the run's ``fingerprint``) out, under the run folder ``out``. The model and the explainer
    are loaded on the first shard (:meth:`load`), once per worker; a finished run loads nothing.
    """

    def __init__(self, spec: BatchSpec, out: str | Path, fingerprint: str) -> None:
        self.spec = spec
        self.folder = shard_folder(out, fingerprint)
        self.schema = result_schema(spec.save)
        self.loaded: Any = None

    def load(self) -> ShardWorker:
        """Load the model on the spec's device and configure the explainer (once); set torch's
        thread count when ``spec.threads`` is given (the worker owns its process: a Ray actor,
        or the local engine, which restores the count when the run ends)."""
        if self.loaded is not None:
            return self
        spec = self.spec.validate()
        if spec.threads is not None:
            torch.set_num_threads(spec.threads)
        self.device = torch.device(spec.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with warnings.catch_warnings():  # the driver warns once (run_batch), not every worker
            warnings.simplefilter("ignore", RandomWeightsWarning)
            loaded = load_model(
                spec.model, weights=spec.weights, device=self.device, **spec.model_args
            )
        self.pre = loaded.preprocessing.with_overrides(
            input_size=spec.input_size, mean=spec.mean, std=spec.std, resize=spec.resize
        )
        self.explainer = build_explainer(  # as ``eigencam explain`` builds it
            MethodSpec(spec.method, spec.method, dict(spec.method_options)),
            loaded.model,
            spec.layer or loaded.target_layer,
            reshape_transform=parse_reshape(spec.reshape),
        )
        self.targets = None if spec.target == "predicted" else spec.target
        self.loaded = loaded
        return self

    def process(self, data: ShardData) -> ShardPart:
        """Explain a shard and write ``shards/part-NNNNN.parquet`` atomically."""
        rows = self.load().explain(data)
        numerics = self.spec.numerics(str(self.device))
        table = self.folder.codec.table(rows, self.schema, data.shard, numerics)
        self.folder.write(table, self.folder.part_path(data.shard))
        ok = sum(r["status"] == "ok" for r in rows)
        summary = ShardSummary(data.shard, len(rows), ok, len(rows) - ok)
        return ShardPart(None, ok=1, summary=summary)

    def explain(self, data: ShardData) -> list[dict[str, Any]]:
        """The rows of one shard, in item order (overlays are written into the run folder).

        Unreadable images and those whose explanation raises an
        :class:`~eigencam.errors.EigenCAMError` of their own (:func:`eigencam.runs.isolate`) get
        an ``error`` row; any other exception propagates: the shard is not written, a rerun
        retries it."""
        rows = [None if e is None else self._failure(data, i, e) for i, e in enumerate(data.errors)]
        readable = [i for i, row in enumerate(rows) if row is None]
        items = [EncodedImage(data.ids[i] or f"#{i}", data.data[i]) for i in readable]  # type: ignore[arg-type]
        for images, fails in iter_batches(
            items,
            self.pre,
            batch_size=self.spec.batch_size,
            workers=self.spec.decode_threads,
            max_pixels=self.spec.max_pixels,
            keep_original="overlays" in self.spec.save,
        ):
            for f in fails:
                rows[readable[f.index]] = self._failure(data, readable[f.index], f.error)
            done = []
            for img, res, error in isolate(self._explain, images):
                pos = readable[img.index]
                if error is None:
                    done.append((pos, img, res))
                else:
                    rows[pos] = self._failure(data, pos, str(error))
            for pos, row in self._rows(data, done):
                rows[pos] = row
        return [r for r in rows if r is not None]

    def _explain(self, images: list) -> list:
        x = to_batch([img.pixels for img in images], self.pre, self.device)
        res = self.explainer(x) if self.targets is None else self.explainer(x, self.targets)
        return [slice_result(res, i) for i in range(len(images))]

    # -- rows ------------------------------------------------------------------------------
    def _base(self, data: ShardData, i: int) -> dict[str, Any]:
        row = dict.fromkeys(self.schema.names)
        row.update(shard=data.shard, position=i, id=data.ids[i], source=data.sources[i])
        return row | {"model": self.spec.model, "method": self.spec.method}

    def _failure(self, data: ShardData, i: int, error: str | None) -> dict[str, Any]:
        return self._base(data, i) | {"status": "error", "error": error or "unknown error"}

    def _rows(self, data: ShardData, done: list) -> list[tuple[int, dict[str, Any]]]:
        """Rows of the explained images of one batch (boxes computed for the batch at once)."""
        if not done:
            return []
        save, pre = self.spec.save, self.pre
        boxes = None
        if "boxes" in save:
            u8 = quantize(torch.cat([res.maps[:, 0] for *_, res in done]).detach().float().cpu())
            comps = connected_components(u8, np.array([self.spec.threshold]))
            regions = np.array([pre.crop_region(*img.size) for _, img, _ in done], np.float64)
            boxes = to_original(comps.largest, regions, u8.shape[-2:])[:, 0]
        rows = []
        for j, (pos, img, res) in enumerate(done):
            width, height = img.size
            relu = bool(res.params.get("relu", False))
            evr = res.explained_variance_ratio
            row = self._base(data, pos) | {
                "status": "ok",
                "width": width,
                "height": height,
                "layer": res.layer,
                "explained_variance": None if evr is None else evr[0].float().cpu().tolist(),
                "target": None if res.targets is None else res.targets[0].cpu().tolist(),
            }
            preds = top_predictions(res.output, self.loaded.labels, TOP_K)
            for column, key in (("index", "index"), ("label", "label"), ("prob", "probability")):
                row[f"top5_{column}"] = [p[key] for p in preds[0]] if preds else None
            raw = res.raw[0].detach().float().cpu()
            if "maps" in save:
                u = quantize(normalize(raw, relu=relu).numpy())
                row.update(map=u.tobytes(), map_shape=list(u.shape))
            if boxes is not None and np.isfinite(boxes[j]).all():
                row["box"] = [float(v) for v in np.clip(boxes[j], 0, [width, height] * 2)]
            if "map-png" in save or "overlays" in save:
                full = maps_at_original(raw, pre, img.size, relu=relu, extent=res.extent)
                if "map-png" in save:
                    # Stored maps: Pillow's smaller files (see encode_png) over speed.
                    row["map_png"] = [encode_png(u, compress_level=6) for u in quantize(full)]
                if "overlays" in save:
                    row["overlay"] = self._write_overlay(data, pos, img, full[0])
            rows.append((pos, row))
        return rows

    def _write_overlay(self, data: ShardData, pos: int, img: Any, heat: np.ndarray) -> str:
        folder = overlay_dir(self.folder.path, data.shard)
        stem = Path(data.ids[pos].replace("\\", "/").rstrip("/")).stem or "image"
        name = f"{pos:06d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', stem)[:60]}.png"
        spec = self.spec
        write_png(
            folder / name,
            overlay(np.asarray(img.original), heat, alpha=spec.alpha, colormap=spec.colormap),
        )
        return str(Path(folder.parent.name) / folder.name / name)
