"""One registry of models: the names registered (the embedded default first), then the sources
of :data:`SOURCES`, tried in order. A model name is a registered name (``efficientnet_lite0``,
the embedded default with real ImageNet weights); ``timm:NAME``; an ``.onnx`` file; an
Ultralytics yaml (``yolov8n.yaml`` or a path); a TorchScript archive; a torchvision classifier
(``resnet50``, ``torchvision:resnet50``), detector or segmenter; or ``package.module:factory`` /
``path/to/file.py:factory``, a function returning a module.

Nothing is ever downloaded: only the embedded default has trained weights out of the box, the
others have random weights unless ``weights=`` points at a state dict. Adding a family is one
module in :mod:`eigencam.models.sources` and one line in :data:`SOURCES`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from eigencam.errors import ModelNotFoundError, check
from eigencam.models.entry import LoadedModel, ModelEntry, set_eval, warn_random_weights
from eigencam.models.sources import (
    detection,
    embedded,
    factory,
    onnx,
    segmentation,
    timm,
    torchscript,
    torchvision,
    yolo,
)
from eigencam.models.sources.embedded import DEFAULT_MODEL
from eigencam.models.weights import load_weights

SOURCES = (timm, onnx, yolo, torchscript, torchvision, detection, segmentation, factory)
"""The sources tried, in order, for a name that is not registered (``timm:`` before a file
suffix, files before names, the ``module:factory`` catch-all last)."""

_REGISTRY: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a model to the registry (names are unique)."""
    check(entry.name not in _REGISTRY, f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


register_model(embedded.EFFICIENTNET_LITE0)


def registered_models() -> list[ModelEntry]:
    """Models registered by name (the embedded default first)."""
    return list(_REGISTRY.values())


def available_models() -> list[str]:
    """Model names :func:`load_model` accepts by name: registered, torchvision classifiers,
    detectors and segmenters (plus the patterns ``timm:NAME``, ``*.yaml``, ``*.onnx``,
    TorchScript files and ``module:factory``)."""
    listed = [source.names() for source in SOURCES if hasattr(source, "names")]
    return [*_REGISTRY, *(name for names in listed for name in names)]


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` for a model name (see the module docstring for the forms)."""
    check(
        isinstance(name, str) and bool(name), f"model name must be a non-empty string, got {name!r}"
    )
    if name in _REGISTRY:
        return _REGISTRY[name]
    for source in SOURCES:
        found = source.entry(name)
        if found is not None:
            return found
    raise ModelNotFoundError(name, available_models())


def load_model(
    name: str = DEFAULT_MODEL,
    weights: str | Path | None = None,
    device: Any = "cpu",
    **options: Any,
) -> LoadedModel:
    """Build a model by name, load weights, move it to ``device``, in eval mode.

    Args:
        name: registry name, torchvision name, ``timm:NAME``, Ultralytics yaml, ``.onnx`` or
            TorchScript file, or ``module:factory`` (see the module docstring).
        weights: optional state-dict file (``.pt``/``.pth`` read with ``weights_only=True``, or
            ``.safetensors``) loaded strictly.
        device: where to put the model.
        **options: passed to the model's constructor (``image_size=64`` for a torchvision
            ViT, ``min_size=320`` for a detector, ``nc=3`` for a YOLO yaml...).

    Returns:
        A :class:`LoadedModel`.

    Example:
        >>> loaded = load_model("fasterrcnn_resnet50_fpn", min_size=512)
        >>> loaded.task, loaded.preprocessing.input_size
        ('detection', (512, 512))
    """
    entry = model_entry(name)
    model = entry.build(**options)
    kind = type(model).__name__
    check(isinstance(model, nn.Module), f"{name} built a {kind}, expected a torch.nn.Module")
    pretrained = entry.pretrained
    if weights is not None:
        load_weights(model, weights)
        pretrained = True
    elif not pretrained:
        warn_random_weights(name)
    model = set_eval(model.to(device))
    if entry.configure is not None:  # fields that depend on the built model
        entry = replace(entry, **entry.configure(model))
    labels = entry.labels() if callable(entry.labels) else entry.labels
    return LoadedModel(
        model,
        entry.preprocessing,
        labels,
        target_layer="auto",
        name=entry.name,
        pretrained=pretrained,
        task=entry.task,
        detections=entry.detections,
    )
