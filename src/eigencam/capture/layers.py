"""Target-layer resolution: by module, by dotted name, or automatically.

Automatic choice ("auto"): the last module, in forward-execution order, whose output is a
spatial map (4-D, more than one position) that is not the output of a pooling layer; when a
container re-emits its last child's tensor (``layer4`` of a ResNet), the outermost name is
used. This is the last convolutional feature map before the global pooling / flatten: ``layer4``
for ResNets, ``features.29`` (conv5_3 + ReLU, 14 x 14) for VGG-16, the head activation of
EfficientNets. Models that declare their feature layers (timm's ``feature_info``) use the last
declared one. With a ``reshape_transform`` (vision transformers), the last module whose output
the transform turns into a spatial map is chosen instead.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from eigencam.capture.hooks import ForwardRecorder, LayerRef, preserved_state, spatial_map
from eigencam.errors import LayerNotFoundError, LayerSelectionError

LayerSpec = str | nn.Module | LayerRef

_AUTO_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Any, LayerRef]] = weakref.WeakKeyDictionary()


def resolve_named(model: nn.Module, spec: LayerSpec) -> LayerRef | None:
    """Resolve a module, dotted name (optionally ``name#call``) or LayerRef; None for "auto"."""
    if isinstance(spec, LayerRef):
        return spec
    if isinstance(spec, nn.Module):
        for name, module in model.named_modules():
            if module is spec:
                return LayerRef(name, module)
        raise LayerSelectionError(
            f"target_layer is a {type(spec).__name__} that is not a submodule of the model; "
            "pass one of model's own modules or its dotted name"
        )
    if not isinstance(spec, str):
        raise TypeError(
            f"target_layer must be a module, a dotted name or 'auto', got {type(spec).__name__}"
        )
    if spec == "auto":
        return None
    name, call = _split_call(spec)
    modules = dict(model.named_modules())
    if name not in modules:
        raise LayerNotFoundError(name, [n for n in modules if n])
    return LayerRef(name, modules[name], call)


def _split_call(spec: str) -> tuple[str, int | None]:
    if "#" not in spec:
        return spec, None
    name, _, idx = spec.rpartition("#")
    if not idx.isdigit():
        raise LayerSelectionError(
            f"target_layer {spec!r}: the part after '#' must be a call index, e.g. 'relu#2'"
        )
    return name, int(idx)


def declared_layer(model: nn.Module) -> LayerRef | None:
    """The last feature layer a model declares (timm's ``feature_info``), if it resolves."""
    info = getattr(model, "feature_info", None)
    if info is None:
        return None
    try:
        last = info[-1]
        name = last["module"] if isinstance(last, dict) else getattr(last, "module", None)
    except (IndexError, KeyError, TypeError):
        return None
    if not isinstance(name, str):
        return None
    modules = dict(model.named_modules())
    if name not in modules:
        return None
    return LayerRef(name, modules[name])


def acceptor(reshape_transform: Callable[[Any], Tensor] | None) -> Callable[[Tensor], bool]:
    """The test a module output must pass to be an automatic target layer."""
    if reshape_transform is None:
        return spatial_map

    def accept(t: Tensor) -> bool:
        if t.ndim != 3 or not t.is_floating_point():
            return False
        try:
            return spatial_map(reshape_transform(t))
        except Exception:  # a transform that cannot take this output: not a candidate
            return False

    return accept


def cached_auto(model: nn.Module, key: Any) -> LayerRef | None:
    """An automatic choice made earlier for this model and input signature, if still valid."""
    ref = _AUTO_CACHE.get(model, {}).get(key)
    if ref is None:
        return None
    if dict(model.named_modules()).get(ref.name) is not ref.module:  # model was edited
        return None
    return ref


def remember_auto(model: nn.Module, key: Any, ref: LayerRef) -> None:
    _AUTO_CACHE.setdefault(model, {})[key] = ref


def auto_key(inputs: Tensor, reshape_transform: Any) -> tuple:
    return (tuple(inputs.shape[1:]), inputs.dtype, id(reshape_transform))


def no_candidate_error(recorder: ForwardRecorder, transformed: bool) -> LayerSelectionError:
    shapes = [f"{n} {s}" for n, _, s, _ in recorder.events if s is not None][-5:]
    what = (
        "token output (B, N, C) the reshape_transform accepts"
        if transformed
        else ("4-D spatial output (B, C, h, w) with h*w > 1")
    )
    return LayerSelectionError(
        f"target_layer='auto' found no module with a {what}; the last outputs were: "
        f"{'; '.join(shapes) or 'none'}. Pass target_layer= explicitly (see `eigencam layers`)."
    )


@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`list_layers`."""

    name: str
    type: str
    shape: tuple[int, ...] | None
    calls: int
    candidate: bool
    auto: bool


def list_layers(
    model: nn.Module,
    example: Tensor,
    reshape_transform: Callable[[Any], Tensor] | None = None,
) -> list[LayerInfo]:
    """Every submodule with its output shape on ``example``, marking candidates and the auto choice.

    Args:
        model: the model.
        example: an input batch (B, C, H, W); one image is enough.
        reshape_transform: as for the explainers.

    Returns:
        One :class:`LayerInfo` per module that ran, in completion order.
    """
    accept = acceptor(reshape_transform)
    recorder = ForwardRecorder(model, accept)
    with torch.inference_mode(), preserved_state(model), recorder.recording():
        model(example)
    auto = declared_layer(model) or recorder.chosen()
    seen: dict[str, LayerInfo] = {}
    order: list[str] = []
    for name, type_name, shape, call in recorder.events:
        if name not in seen:
            order.append(name)
        is_candidate = shape is not None and (
            (len(shape) == 4 and shape[-1] * shape[-2] > 1)
            if reshape_transform is None
            else len(shape) == 3
        )
        seen[name] = LayerInfo(
            name=name,
            type=type_name,
            shape=shape,
            calls=call + 1,
            candidate=is_candidate,
            auto=auto is not None and auto.name == name,
        )
    return [seen[n] for n in order]
