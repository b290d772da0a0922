"""The ground floor of the model registry: what a source returns (:class:`ModelEntry`) and what
loading gives back (:class:`LoadedModel`); it imports no source and no registry."""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import nn

from eigencam.errors import MissingDependencyError
from eigencam.models.preprocessing import Preprocessing


class RandomWeightsWarning(UserWarning):
    """A model was built with random weights: its maps show structure, not semantics."""


def warn_random_weights(name: str) -> None:
    """Warn, at the caller's caller, that model ``name`` has random weights."""
    warnings.warn(
        f"{name}: no weights given, the model has random weights; its maps show the "
        "architecture, not what a trained model looks at (pass --weights FILE)",
        RandomWeightsWarning,
        stacklevel=3,
    )


@dataclass(frozen=True)
class ModelEntry:
    """A model a source knows how to build.

    Attributes:
        name: registry name.
        description: one line for ``eigencam models``.
        build: ``build(**options)`` returns the model with its shipped weights (or random
            ones); the options go to the model's constructor.
        preprocessing: input size, mean, std, resize policy.
        labels: returns the class names, or None.
        pretrained: True when ``build`` loads real weights that ship with the install.
        task: ``classification``, ``detection`` or ``segmentation``.
        detections: output -> one :class:`~eigencam.models.outputs.Detections` per image.
        configure: ``configure(model) -> dict`` of fields computed from the built model (a
            ViT's input size, a detector's ``min_size``...).
    """

    name: str
    description: str
    build: Callable[..., nn.Module] = field(repr=False)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: Callable[[], list[str]] | None = field(default=None, repr=False)
    pretrained: bool = False
    task: str = "classification"
    detections: Callable[[Any], list] | None = field(default=None, repr=False)
    configure: Callable[[nn.Module], dict[str, Any]] | None = field(default=None, repr=False)


class LoadedModel(NamedTuple):
    """What :func:`~eigencam.models.load_model` returns.

    Attributes:
        model: the module, in eval mode, on the requested device.
        target_layer: the default target layer (``auto``: the family rules of
            :mod:`eigencam.capture.families`, then the last spatial map).
        pretrained: real weights (shipped or given), not random ones.
        preprocessing, labels, task, detections: those of its :class:`ModelEntry`.
    """

    model: nn.Module
    preprocessing: Preprocessing
    labels: list[str] | None
    target_layer: str
    name: str
    pretrained: bool
    task: str = "classification"
    detections: Callable[[Any], list] | None = None


def set_eval(model: nn.Module) -> nn.Module:
    """Eval mode by setting each module's ``training`` flag directly.

    ``model.eval()`` calls ``model.train(False)``, which some wrappers override with side
    effects (Ultralytics' ``YOLO.train`` starts a training run); this never calls either.
    """
    for module in model.modules():
        module.training = False
    return model


def require(module: str, extra: str, what: str) -> Any:
    """Import an optional package, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(module.split(".")[0], extra, what) from err


@functools.cache
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (from torchvision's metadata)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
