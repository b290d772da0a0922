"""Explanation methods. Importing this package registers every method in the registry.

Families (one file each): :mod:`~eigencam.methods.eigencam` (Eigen-CAM),
:mod:`~eigencam.methods.cam` (CAM), :mod:`~eigencam.methods.gradients` (Grad-CAM, Grad-CAM++,
XGrad-CAM, LayerCAM, HiResCAM, Eigen-Grad-CAM), :mod:`~eigencam.methods.saliency` (gradient
saliency), :mod:`~eigencam.methods.fixations` (CNN-Fixations),
:mod:`~eigencam.methods.excitation` (c-MWP), :mod:`~eigencam.methods.perturbation` (Score-CAM,
Ablation-CAM).
"""

# ruff: noqa: I001  (import order is the registry order: the order of the docs and the CLI)
# The public names: each imported as itself (``X as X``, the explicit re-export).
from eigencam.methods.base import CAMResult as CAMResult, Explainer as Explainer
from eigencam.methods.eigencam import EigenCAM as EigenCAM
from eigencam.methods.cam import CAM as CAM
from eigencam.methods.gradients import (
    EigenGradCAM as EigenGradCAM,
    GradCAM as GradCAM,
    GradCAMPlusPlus as GradCAMPlusPlus,
    HiResCAM as HiResCAM,
    LayerCAM as LayerCAM,
    XGradCAM as XGradCAM,
)
from eigencam.methods.saliency import Saliency as Saliency
from eigencam.methods.fixations import CNNFixations as CNNFixations
from eigencam.methods.excitation import ContrastiveMWP as ContrastiveMWP
from eigencam.methods.perturbation import AblationCAM as AblationCAM, ScoreCAM as ScoreCAM
from eigencam.methods.registry import (
    MethodSpec as MethodSpec,
    available_methods as available_methods,
    build_explainer as build_explainer,
    get_method as get_method,
    method_info as method_info,
    parse_spec as parse_spec,
    parse_value as parse_value,
    register as register,
)
