"""eigencam: gradient-free class activation maps (Eigen-CAM) and the CAMs it is compared with.

Quick start::

    import eigencam
    loaded = eigencam.load_model("efficientnet_lite0")       # embedded ImageNet weights
    x = loaded.preprocessing.batch([image])                   # (1, 3, 224, 224)
    result = eigencam.EigenCAM(loaded.model)(x)               # result.maps: (1, 1, 224, 224)

Heavy modules (torch, the models) load on first use, so ``import eigencam`` is fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# The module each public name is imported from on first use.
_SOURCES = {
    "eigencam.methods": (
        "EigenCAM CAM GradCAM GradCAMPlusPlus XGradCAM LayerCAM HiResCAM EigenGradCAM Saliency "
        "CNNFixations ContrastiveMWP ScoreCAM AblationCAM CAMResult Explainer get_method "
        "available_methods"
    ),
    "eigencam.decomposition": "eigen_cam Decomposition",
    "eigencam.capture": "tokens_to_grid FeaturePyramid list_layers LayerRef",
    "eigencam.methods.segmentation_target": "SegmentationTarget",
    "eigencam.models": "OnnxModel Detections load_model available_models Preprocessing",
    "eigencam.postprocess.maps": "normalize upsample",
    "eigencam.errors": "errors",
    "eigencam.samples": "samples",
}
# Names that are the module itself.
_MODULES = {"errors", "samples"}
_LAZY = {name: module for module, names in _SOURCES.items() for name in names.split()}
__all__ = [
    "CAM",
    "AblationCAM",
    "CAMResult",
    "CNNFixations",
    "ContrastiveMWP",
    "Decomposition",
    "Detections",
    "EigenCAM",
    "EigenGradCAM",
    "Explainer",
    "FeaturePyramid",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "LayerRef",
    "OnnxModel",
    "Preprocessing",
    "Saliency",
    "ScoreCAM",
    "SegmentationTarget",
    "XGradCAM",
    "__version__",
    "available_methods",
    "available_models",
    "eigen_cam",
    "errors",
    "get_method",
    "list_layers",
    "load_model",
    "normalize",
    "samples",
    "tokens_to_grid",
    "upsample",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eigencam' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name in _MODULES else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from eigencam import errors
    from eigencam.capture import FeaturePyramid, LayerRef, list_layers, tokens_to_grid
    from eigencam.decomposition import Decomposition, eigen_cam
    from eigencam.methods import (
        CAM,
        AblationCAM,
        CAMResult,
        CNNFixations,
        ContrastiveMWP,
        EigenCAM,
        EigenGradCAM,
        Explainer,
        GradCAM,
        GradCAMPlusPlus,
        HiResCAM,
        LayerCAM,
        Saliency,
        ScoreCAM,
        XGradCAM,
        available_methods,
        get_method,
    )
    from eigencam.methods.segmentation_target import SegmentationTarget
    from eigencam.models import (
        Detections,
        OnnxModel,
        Preprocessing,
        available_models,
        load_model,
    )
    from eigencam.postprocess.maps import normalize, upsample
