"""Capture of activations: target layers, one-call hooks, model state, reshape transforms."""

from eigencam.capture.adapters import runner_for
from eigencam.capture.families import Family, family_of
from eigencam.capture.hooks import LayerRef, capture_outputs, first_tensor, preserved_state
from eigencam.capture.layers import LayerInfo, list_layers, resolve_named
from eigencam.capture.reshape import FeaturePyramid, tokens_to_grid
from eigencam.capture.scripted import ScriptedModel

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
    "preserved_state",
    "resolve_named",
    "runner_for",
    "tokens_to_grid",
]
