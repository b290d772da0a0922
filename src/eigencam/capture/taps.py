"""Taps: stand-in modules through which models that cannot be hooked expose their layers.

A TorchScript or ONNX graph runs outside Python, so hooks on its layers never fire. Its runner
(:class:`eigencam.capture.scripted.ScriptedModel`, :class:`eigencam.models.OnnxModel`) holds one
:class:`Tap` per layer, named like it; it runs the graph with the values of the hooked taps
(:func:`hooked_taps`) as extra outputs and calls each tap with its value, so hooks fire as on
an eager module and every explainer and ``list_layers`` work unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import nn


class Tap(nn.Module):
    """Identity module standing for a layer of a graph model; ``layer_type`` names the layer."""

    def __init__(self, layer_type: str) -> None:
        super().__init__()
        self.layer_type = layer_type

    def forward(self, value: Any) -> Any:
        return value

    def extra_repr(self) -> str:
        return self.layer_type


def hooked_taps(root: nn.Module) -> dict[str, Tap]:
    """Taps under ``root`` with at least one forward (pre-)hook, by dotted name."""
    return {
        name: module
        for name, module in root.named_modules()
        if isinstance(module, Tap) and (module._forward_hooks or module._forward_pre_hooks)
    }


def layer_type(module: nn.Module) -> str:
    """The type shown for a layer: the tapped layer's own type for a :class:`Tap`."""
    return module.layer_type if isinstance(module, Tap) else type(module).__name__
