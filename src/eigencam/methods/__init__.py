"""Explanation methods. Importing this package registers every method in the registry.

Families (one file each): :mod:`~eigencam.methods.eigencam` (Eigen-CAM),
:mod:`~eigencam.methods.cam` (CAM), :mod:`~eigencam.methods.gradients` (Grad-CAM, Grad-CAM++,
XGrad-CAM, LayerCAM, HiResCAM, Eigen-Grad-CAM), :mod:`~eigencam.methods.saliency` (gradient
saliency), :mod:`~eigencam.methods.fixations` (CNN-Fixations),
:mod:`~eigencam.methods.excitation` (c-MWP), :mod:`~eigencam.methods.perturbation` (Score-CAM,
Ablation-CAM).
"""

# ruff: noqa: I001  (import order is the registry order: the order of the docs and the CLI)
from eigencam.methods.base import CAMResult, Explainer
from eigencam.methods.eigencam import EigenCAM
from eigencam.methods.cam import CAM
from eigencam.methods.gradients import (
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from eigencam.methods.saliency import Saliency
from eigencam.methods.fixations import CNNFixations
from eigencam.methods.excitation import ContrastiveMWP
from eigencam.methods.perturbation import AblationCAM, ScoreCAM
from eigencam.methods.registry import (
    MethodSpec,
    available_methods,
    build_explainer,
    get_method,
    method_info,
    parse_spec,
    parse_value,
    register,
)

__all__ = [
    "CAM",
    "AblationCAM",
    "CAMResult",
    "CNNFixations",
    "ContrastiveMWP",
    "EigenCAM",
    "EigenGradCAM",
    "Explainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "MethodSpec",
    "Saliency",
    "ScoreCAM",
    "XGradCAM",
    "available_methods",
    "build_explainer",
    "get_method",
    "method_info",
    "parse_spec",
    "parse_value",
    "register",
]
