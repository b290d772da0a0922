"""Capture of activations: target layers, one-call hooks, model state, reshape transforms."""

from eigencam.capture.hooks import LayerRef, capture_outputs, first_tensor, preserved_state
from eigencam.capture.layers import LayerInfo, list_layers, resolve_named
from eigencam.capture.reshape import tokens_to_grid

__all__ = [
    "LayerInfo",
    "LayerRef",
    "capture_outputs",
    "first_tensor",
    "list_layers",
    "preserved_state",
    "resolve_named",
    "tokens_to_grid",
]
