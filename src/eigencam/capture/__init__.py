"""Capture of activations: target layers, one-call hooks, model state, reshape transforms."""

from eigencam.capture.adapters import runner_for
from eigencam.capture.families import Family, family_of
from eigencam.capture.hooks import LayerRef, capture_outputs, preserved_state
from eigencam.capture.layers import LayerInfo, list_layers, resolve_named
from eigencam.capture.reshape import FeaturePyramid, tokens_to_grid
from eigencam.capture.scripted import ScriptedModel
from eigencam.capture.tree import first_tensor, map_tensors

__all__ = [
    "Family",
    "FeaturePyramid",
    "LayerInfo",
    "LayerRef",
    "ScriptedModel",
    "capture_outputs",
    "family_of",
    "first_tensor",
    "list_layers",
    "map_tensors",
    "preserved_state",
    "resolve_named",
    "runner_for",
    "tokens_to_grid",
]
