"""Models: the registry (embedded default, torchvision classifiers, detectors and segmenters,
timm, Ultralytics YOLO, ONNX, TorchScript, user factories), one source module per family in
:mod:`eigencam.models.sources`, weights, preprocessing, and the outputs models return."""

from eigencam.models.entry import LoadedModel, ModelEntry, RandomWeightsWarning, imagenet_labels
from eigencam.models.outputs import Detections
from eigencam.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from eigencam.models.registry import (
    DEFAULT_MODEL,
    available_models,
    load_model,
    model_entry,
    register_model,
    registered_models,
)
from eigencam.models.sources.detection import detections_of
from eigencam.models.sources.onnx import OnnxModel, export_onnx
from eigencam.models.weights import load_weights, read_state_dict

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Detections",
    "LoadedModel",
    "ModelEntry",
    "OnnxModel",
    "Preprocessing",
    "RandomWeightsWarning",
    "available_models",
    "detections_of",
    "export_onnx",
    "imagenet_labels",
    "load_model",
    "load_weights",
    "model_entry",
    "read_state_dict",
    "register_model",
    "registered_models",
]
