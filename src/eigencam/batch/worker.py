"""The work of one shard, the same in both engines: decode, explain, summarise, write.

:class:`BatchSpec` holds everything a worker needs (it is small and picklable, so a Ray actor
gets a copy); :class:`ShardWorker` loads the model and the explainer once and then turns each
shard's encoded images (:class:`~eigencam.batch.inputs.ShardData`) into rows
(:data:`eigencam.batch.shards.result_schema`) and writes them as one Parquet file, atomically.
The local engine runs one worker in the calling process; the Ray engine runs one per actor.

A shard's images are explained in batches of ``batch_size`` consecutive readable images, so
both engines put the same images in the same forward passes: with the same device and the same
number of torch threads their outputs are identical bit for bit.

Per image, the row records the top-5 classes, the explained variance, and:

- the map at the layer's resolution as uint8: the raw map (after the method's ReLU, if any)
  min-max normalised per component and quantised, :math:`u = \\lfloor 255\\, m \\rfloor`;
- the box: the map at the model's input size (the explainer's ``maps``) quantised the same way
  and thresholded at ``u > \\tau \\max u``; the bounding box of the largest 8-connected
  component, mapped to the original image's pixels and clipped to it
  (:mod:`eigencam.evaluation.boxes`, the localization benchmark's extraction);
- optionally the map at the original resolution as an 8-bit PNG, and an overlay file.
"""

from __future__ import annotations

import inspect
import os
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from eigencam.batch.inputs import ShardData
from eigencam.batch.shards import (
    DEFAULT_SAVE,
    SAVE_KINDS,
    overlay_dir,
    result_schema,
    shard_metadata,
    shard_path,
    write_shard,
)
from eigencam.errors import BatchInputError
from eigencam.io.images import DEFAULT_MAX_PIXELS, EncodedImage
from eigencam.io.png import encode_png, write_png
from eigencam.viz.overlay import colormap_lut, overlay

# Eigen-CAM's box threshold: 15 % of the map's maximum, the best threshold of the default
# Eigen-CAM on the embedded EfficientNet-Lite0 over the ILSVRC dev set under both protocols of
# docs/results.md (the paper's 5-15 % sweep, and Choe et al.'s MaxBoxAcc grid: 63.2 % at 0.15 on
# half 1, 62.4 % at 0.20). See docs/scale.md.
DEFAULT_THRESHOLD = 0.15
TOP_K = 5


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class BatchSpec:
    """What to compute for every image, and how.

    Attributes:
        model: a model name for :func:`eigencam.models.load_model` (files as absolute paths:
            workers may run in another folder).
        weights: state-dict file for the model, or None.
        model_args: options for the model's constructor.
        input_size, mean, std, resize: preprocessing overrides (None: the model's own).
        method: registry name of the explanation method.
        method_options: its constructor options (``n_components``, ``center``, ``solver``...).
        layer: target layer (None: the model's default).
        reshape: ``--reshape`` spec (``tokens``, ``tokens:N``, ``channels-last``, ``pyramid``).
        target: ``predicted``, a class index or ``top<k>`` (class-specific methods).
        threshold: box threshold fraction :math:`\\tau` of the map's maximum.
        save: what to store, a subset of :data:`~eigencam.batch.shards.SAVE_KINDS`.
        colormap, alpha: overlays.
        max_pixels: decompression-bomb guard.
        batch_size: images per forward pass.
        decode_threads: image decoding threads per worker.
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
        object.__setattr__(self, "model_args", _frozen(self.model_args))
        object.__setattr__(self, "method_options", _frozen(self.method_options))
        object.__setattr__(self, "save", tuple(self.save))

    def __reduce__(self):  # MappingProxyType does not pickle; Ray actors get a copy of the spec
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values["model_args"] = dict(self.model_args)
        values["method_options"] = dict(self.method_options)
        return (_rebuild_spec, (values,))

    def validate(self) -> BatchSpec:
        """Check the settings that need no model; returns self.

        Raises:
            ValueError: a setting out of range, an unknown save kind or colormap.
            MethodNotFoundError: unknown method.
            TypeError: a method option the method does not take.
        """
        from eigencam.methods import get_method

        bad = [s for s in self.save if s not in SAVE_KINDS]
        if bad or not self.save:
            raise ValueError(
                f"save: unknown kind(s) {bad or '(none given)'}; choose from "
                + ", ".join(SAVE_KINDS)
            )
        if not 0.0 <= float(self.threshold) < 1.0:
            raise ValueError(f"threshold must be a fraction in [0, 1), got {self.threshold}")
        for name in ("batch_size", "decode_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an integer >= 1 or None, got {self.threads!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if "overlays" in self.save:
            colormap_lut(self.colormap)
        cls = get_method(self.method)
        accepted = inspect.signature(cls.__init__).parameters
        unknown = sorted(k for k in self.method_options if k not in accepted or k == "model")
        if unknown:
            options = sorted(
                k
                for k, p in accepted.items()
                if k not in ("self", "model", "target_layer", "reshape_transform")
                and p.kind is not inspect.Parameter.VAR_KEYWORD
            )
            raise TypeError(
                f"method {self.method!r} takes no option(s) {unknown}; its options: "
                f"{', '.join(options) or 'none'}"
            )
        if self.target != "predicted" and not cls.class_specific:
            raise ValueError(
                f"target applies to class-specific methods; {cls.name} is class-agnostic "
                "(see eigencam methods)"
            )
        return self

    def identity(self) -> dict[str, Any]:
        """The settings that decide what a row holds: a run resumes only when these match."""
        return {
            "model": self.model,
            "weights": None if self.weights is None else _file_identity(self.weights),
            "model_args": dict(self.model_args),
            "input_size": None if self.input_size is None else list(self.input_size),
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "resize": self.resize,
            "method": self.method,
            "method_options": dict(self.method_options),
            "layer": self.layer,
            "reshape": self.reshape,
            "target": self.target,
            "threshold": float(self.threshold),
            "save": list(self.save),
            "colormap": self.colormap if "overlays" in self.save else None,
            "alpha": self.alpha if "overlays" in self.save else None,
            "max_pixels": self.max_pixels,
        }

    def numerics(self, device: str) -> dict[str, Any]:
        """What can change the last bits of the floats: device, threads, batch size."""
        import torch

        return {
            "device": device,
            "threads": torch.get_num_threads() if device.startswith("cpu") else None,
            "batch_size": self.batch_size,
            "torch": torch.__version__,
        }


def _rebuild_spec(values: dict[str, Any]) -> BatchSpec:
    return BatchSpec(**values)


def _file_identity(path: str) -> dict[str, Any]:
    try:
        st = os.stat(path)
        return {"path": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": str(path)}


@dataclass
class ShardSummary:
    """What a worker reports for a finished shard (the driver's progress and manifest)."""

    shard: int
    rows: int
    ok: int
    failed: int
    seconds: float
    layer: str | None
    path: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ShardWorker:
    """A loaded model and explainer that turns shards into rows and shard files.

    Build it with :meth:`load` (the constructor takes what is already loaded).

    Args:
        spec: the run's settings.
        loaded: the :class:`~eigencam.models.LoadedModel`.
        preprocessing: its preprocessing with the spec's overrides.
        explainer: the configured explainer.
        device: where batches go.
    """

    def __init__(self, spec: BatchSpec, loaded: Any, preprocessing: Any, explainer: Any, device):
        self.spec = spec
        self.loaded = loaded
        self.preprocessing = preprocessing
        self.explainer = explainer
        self.device = device
        self.schema = result_schema(spec.save)

    @classmethod
    def load(cls, spec: BatchSpec) -> ShardWorker:
        """Load the model on the spec's device and configure the explainer (once per worker).

        Sets torch's thread count when ``spec.threads`` is given (the worker owns its process:
        a Ray actor, or the local engine, which restores the count when the run ends).
        """
        import torch

        from eigencam.models import RandomWeightsWarning, load_model

        spec.validate()
        if spec.threads is not None:
            torch.set_num_threads(spec.threads)
        device = torch.device(spec.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with warnings.catch_warnings():  # the driver warns once (run_batch), not every worker
            warnings.simplefilter("ignore", RandomWeightsWarning)
            loaded = load_model(spec.model, weights=spec.weights, device=device, **spec.model_args)
        pre = loaded.preprocessing.with_overrides(
            input_size=spec.input_size, mean=spec.mean, std=spec.std, resize=spec.resize
        )
        return cls(spec, loaded, pre, _build_explainer(spec, loaded), device)

    @property
    def targets(self) -> Any:
        return None if self.spec.target == "predicted" else self.spec.target

    def explain(self, data: ShardData, out: str | Path | None = None) -> list[dict[str, Any]]:
        """The rows of one shard, in item order (overlays are written under ``out``).

        Unreadable and undecodable images, and images whose activations are not finite, get
        an ``error`` row; any other exception (the model failing on a whole batch) propagates,
        so the shard is not written and a rerun retries it.
        """
        from eigencam.pipeline.explain import slice_result
        from eigencam.runs.source import iter_batches
        from eigencam.runs.step import isolate, to_batch

        def explain(images: list) -> list:
            x = to_batch([img.pixels for img in images], self.preprocessing, self.device)
            res = self.explainer(x) if self.targets is None else self.explainer(x, self.targets)
            return [slice_result(res, i) for i in range(len(images))]

        spec = self.spec
        n = len(data)
        rows: list[dict[str, Any] | None] = [None] * n
        readable = []
        for i in range(n):
            if data.errors[i] is not None:
                rows[i] = self._failure(data, i, data.errors[i])
            else:
                readable.append(i)
        items = [EncodedImage(data.ids[i] or f"#{i}", data.data[i]) for i in readable]  # type: ignore[arg-type]
        keep = "overlays" in spec.save
        for images, fails in iter_batches(
            items,
            self.preprocessing,
            batch_size=spec.batch_size,
            workers=spec.decode_threads,
            max_pixels=spec.max_pixels,
            keep_original=keep,
        ):
            for f in fails:
                rows[readable[f.index]] = self._failure(data, readable[f.index], f.error)
            done = []
            for img, res, error in isolate(explain, images):
                pos = readable[img.index]
                if error is not None:
                    rows[pos] = self._failure(data, pos, str(error))
                else:
                    done.append((pos, img, res))
            for pos, row in self._rows(data, done, out):
                rows[pos] = row
        return [r for r in rows if r is not None]

    def run(self, data: ShardData, out: str | Path, fingerprint: str) -> ShardSummary:
        """Explain a shard and write ``shards/part-NNNNN.parquet`` atomically."""
        start = time.perf_counter()
        rows = self.explain(data, out)
        numerics = self.spec.numerics(str(self.device))
        path = write_shard(
            shard_path(out, data.shard),
            rows,
            self.schema,
            shard_metadata(fingerprint, data.shard, numerics),
        )
        ok = sum(r["status"] == "ok" for r in rows)
        layer = next((r["layer"] for r in rows if r["status"] == "ok"), None)
        return ShardSummary(
            shard=data.shard,
            rows=len(rows),
            ok=ok,
            failed=len(rows) - ok,
            seconds=time.perf_counter() - start,
            layer=layer,
            path=str(path),
        )

    # -- rows ------------------------------------------------------------------------------
    def _base(self, data: ShardData, i: int) -> dict[str, Any]:
        row = {name: None for name in self.schema.names}
        row.update(
            shard=data.shard,
            position=i,
            id=data.ids[i],
            source=data.sources[i],
            model=self.spec.model,
            method=self.spec.method,
        )
        return row

    def _failure(self, data: ShardData, i: int, error: str | None) -> dict[str, Any]:
        return self._base(data, i) | {"status": "error", "error": error or "unknown error"}

    def _rows(self, data: ShardData, done: list, out: str | Path | None):
        """Rows of the explained images of one batch (boxes computed for the batch at once)."""
        if not done:
            return []
        import torch

        from eigencam.evaluation.metrics import boxes as bx
        from eigencam.pipeline.explain import top_predictions
        from eigencam.postprocess import maps_at_original, normalize

        spec, pre = self.spec, self.preprocessing
        labels = self.loaded.labels
        boxes = None
        if "boxes" in spec.save:
            maps = torch.cat([res.maps[:, 0] for _, _, res in done]).detach().float().cpu()
            u8 = bx.quantize(maps.numpy())
            comps = bx.connected_components(u8, np.array([spec.threshold]))
            regions = np.array([pre.crop_region(*img.size) for _, img, _ in done], dtype=np.float64)
            boxes = bx.to_original(comps.largest, regions, u8.shape[-2:])[:, 0]
        rows = []
        for j, (pos, img, res) in enumerate(done):
            row = self._base(data, pos)
            width, height = img.size
            relu = bool(res.params.get("relu", False))
            preds = top_predictions(res.output, labels, TOP_K)
            evr = res.explained_variance_ratio
            row.update(
                status="ok",
                width=width,
                height=height,
                layer=res.layer,
                explained_variance=None if evr is None else evr[0].float().cpu().tolist(),
                target=None if res.targets is None else res.targets[0].cpu().tolist(),
            )
            if preds:
                row.update(
                    top5_index=[p["index"] for p in preds[0]],
                    top5_label=[p["label"] for p in preds[0]],
                    top5_prob=[p["probability"] for p in preds[0]],
                )
            raw = res.raw[0].detach().float().cpu()
            if "maps" in spec.save:
                u = bx.quantize(normalize(raw, relu=relu).numpy())
                row.update(map=u.tobytes(), map_shape=list(u.shape))
            if boxes is not None:
                b = boxes[j]
                if np.isfinite(b).all():
                    b = np.clip(b, 0, [width, height, width, height])
                    row["box"] = [float(v) for v in b]
            if "map-png" in spec.save or "overlays" in spec.save:
                full = maps_at_original(raw, pre, img.size, relu=relu, extent=res.extent)
                if "map-png" in spec.save:
                    # Stored maps: Pillow's smaller files (see encode_png) over speed.
                    row["map_png"] = [encode_png(u, compress_level=6) for u in bx.quantize(full)]
                if "overlays" in spec.save and out is not None:
                    row["overlay"] = self._write_overlay(out, data, pos, img, full[0])
            rows.append((pos, row))
        return rows

    def _write_overlay(self, out, data: ShardData, pos: int, img: Any, heat: np.ndarray) -> str:
        folder = overlay_dir(out, data.shard)
        name = f"{pos:06d}-{_safe_stem(data.ids[pos])}.png"
        rgb = overlay(
            np.asarray(img.original), heat, alpha=self.spec.alpha, colormap=self.spec.colormap
        )
        write_png(folder / name, rgb)
        return str(Path(folder.parent.name) / folder.name / name)


def _safe_stem(id_: str) -> str:
    stem = Path(id_.replace("\\", "/").rstrip("/")).stem or "image"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:60]


def _build_explainer(spec: BatchSpec, loaded: Any) -> Any:
    """The explainer for ``spec.method`` on the loaded model, as ``eigencam explain`` builds it."""
    from eigencam.cli.common import parse_reshape
    from eigencam.methods import get_method

    cls = get_method(spec.method)
    kwargs = dict(spec.method_options)
    accepted = inspect.signature(cls.__init__).parameters
    if not cls.uses_layer:
        if spec.layer not in (None, "auto"):
            raise BatchInputError(f"{spec.method} explains the input pixels; layer does not apply")
        return cls(loaded.model, **kwargs)
    layer = spec.layer or loaded.target_layer
    reshape = parse_reshape(spec.reshape) or getattr(loaded, "reshape_transform", None)
    if reshape is not None:
        if "reshape_transform" not in accepted:
            raise ValueError(f"{spec.method} does not take a reshape transform (reshape)")
        kwargs["reshape_transform"] = reshape
    return cls(loaded.model, layer, **kwargs)
