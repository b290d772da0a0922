"""Target-layer resolution: by module, by dotted name, or automatically.

``"auto"``: the last module to complete whose output is a spatial map (4-D, more than one
position) and not a pooling output, under its outermost name when containers re-emit it: the
last feature map before the global pooling (``layer4`` for ResNets, ``features.29`` for VGG-16).
Models that declare feature layers (timm's ``feature_info``) use the last declared one; with a
``reshape_transform``, the last module whose output it turns into a spatial map is chosen.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from eigencam.capture.adapters import runner_for
from eigencam.capture.families import declared_feature_name, family_of, fit_to_output
from eigencam.capture.hooks import (
    ForwardRecorder,
    LayerRef,
    preserved_state,
    spatial_map,
    submodule,
)
from eigencam.capture.reshape import pyramid_levels
from eigencam.capture.tree import first_tensor
from eigencam.errors import InvalidParameterError, LayerNotFoundError, LayerSelectionError

LayerSpec = str | nn.Module | LayerRef

_AUTO_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Any, LayerRef]] = weakref.WeakKeyDictionary()
# Per model: (layer label, input signature) -> calls of that module in the last forward pass.
_CALL_COUNTS: weakref.WeakKeyDictionary[nn.Module, dict[Any, int]] = weakref.WeakKeyDictionary()


def resolve_named(model: nn.Module, spec: LayerSpec) -> LayerRef | None:
    """Resolve a module, dotted name (optionally ``name#call``) or LayerRef; None for "auto".

    A model that stands in for another (a TorchScript or ONNX runner) may define
    ``eigencam_resolve(spec) -> str | None`` to translate the other model's modules or names
    (ONNX tensor names) into its own layer names.
    """
    if isinstance(spec, LayerRef):
        return spec
    translate = getattr(model, "eigencam_resolve", None)
    if callable(translate) and not (isinstance(spec, str) and spec == "auto"):
        alias = translate(spec)
        if alias is not None:
            spec = alias
    if isinstance(spec, nn.Module):
        for name, module in model.named_modules():
            if module is spec:
                return LayerRef(name, module)
        raise LayerSelectionError(
            f"target_layer is a {type(spec).__name__} that is not a submodule of the model; "
            "pass one of model's own modules or its dotted name"
        )
    if not isinstance(spec, str):
        raise InvalidParameterError(
            f"target_layer must be a module, a dotted name or 'auto', got {type(spec).__name__}"
        )
    if spec == "auto":
        return None
    name, call = _split_call(spec)
    module = submodule(model, name)
    if module is None:
        raise LayerNotFoundError(name, [n for n, _ in model.named_modules() if n])
    return LayerRef(name, module, call)


def _split_call(spec: str) -> tuple[str, int | None]:
    if "#" not in spec:
        return spec, None
    name, _, idx = spec.rpartition("#")
    if not idx.isdigit():
        raise LayerSelectionError(
            f"target_layer {spec!r}: the part after '#' must be a call index, e.g. 'relu#2'"
        )
    return name, int(idx)


def resolve_target(
    model: nn.Module,
    spec: LayerSpec,
    reshape_transform: Callable[[Any], Tensor] | None,
    inputs: Tensor | None = None,
) -> tuple[LayerRef | None, Callable[[Any], Tensor] | None]:
    """(layer or None, transform or None) for ``spec`` on ``model`` (the module that runs).

    ``"auto"`` takes, in order: the model family's default layer and transform
    (:mod:`eigencam.capture.families`) when no ``reshape_transform`` is given; the layer the
    model declares (timm's ``feature_info``); else None, "search the forward pass"
    (:class:`ForwardRecorder`). A layer given explicitly gets its family's transform when the
    caller gave none. ``inputs``, when given, are checked against the family's constraints.
    """
    family = family_of(model)
    if family is not None and inputs is not None:
        family.check_input(inputs)
    if isinstance(spec, str) and spec == "auto":
        if reshape_transform is None and family is not None:
            try:
                return resolve_named(model, family.layer), family.transform
            except LayerNotFoundError:  # a variant the family rule does not know: search
                return None, None
        return declared_layer(model), reshape_transform
    ref = resolve_named(model, spec)
    if ref is None:
        return declared_layer(model), reshape_transform
    if reshape_transform is None and family is not None and family.transform_for is not None:
        reshape_transform = family.transform_for(ref.name, ref.module)
    return ref, reshape_transform


def declared_layer(model: nn.Module) -> LayerRef | None:
    """The last feature layer a model declares (timm's ``feature_info``), if it resolves."""
    name = declared_feature_name(model)
    return None if name is None else LayerRef(name, submodule(model, name))


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
    valid = ref is not None and submodule(model, ref.name) is ref.module  # not since edited
    return ref if valid else None


def remember_auto(model: nn.Module, key: Any, ref: LayerRef) -> None:
    _AUTO_CACHE.setdefault(model, {})[key] = ref


def known_calls(model: nn.Module, key: Any, ref: LayerRef) -> dict[str, int]:
    """How many times ``ref``'s module ran in the last forward pass seen with this input
    signature (empty when unknown), for :func:`~eigencam.capture.hooks.capture_outputs`."""
    count = _CALL_COUNTS.get(model, {}).get((ref.label, key))
    return {} if count is None or ref.call is not None else {ref.label: count}


def remember_calls(model: nn.Module, key: Any, ref: LayerRef, count: int) -> None:
    _CALL_COUNTS.setdefault(model, {})[(ref.label, key)] = count


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
    """One row of :func:`list_layers`.

    Attributes:
        name, type: dotted module name and type (ONNX models: the tensor and operator names).
        shape: of the module's output (its first tensor for tuple/dict outputs).
        calls: how many times the module ran in the forward pass.
        candidate: usable as a target layer: (B, C, h, w) maps with h*w > 1 (after the reshape
            transform that applies), in a layer the model family proposes.
        auto: the layer ``target_layer="auto"`` picks.
        map_shape: (B, C, h, w) the explainer would decompose, or None.
        levels: shapes of the maps of a multi-level output (feature pyramid), else None.
    """

    name: str
    type: str
    shape: tuple[int, ...] | None
    calls: int
    candidate: bool
    auto: bool
    map_shape: tuple[int, ...] | None = None
    levels: tuple[tuple[int, ...], ...] | None = None


def list_layers(
    model: nn.Module,
    example: Tensor,
    reshape_transform: Callable[[Any], Tensor] | None = None,
) -> list[LayerInfo]:
    """One :class:`LayerInfo` per submodule that ran on ``example`` (B, C, H, W) (one image is
    enough), in completion order, marking candidates and the auto choice. ``model`` and
    ``reshape_transform`` are as for the explainers (None: the model family's transforms)."""
    runner = runner_for(model)
    family = family_of(runner)
    declared, _ = resolve_target(runner, "auto", reshape_transform)

    def describe(name: str, module: nn.Module, output: Any) -> tuple:
        levels = pyramid_levels(output) if isinstance(output, (dict, list, tuple)) else []
        transform = reshape_transform
        if transform is None and family is not None and family.transform_for is not None:
            transform = fit_to_output(family.transform_for(name, module), output)
        try:
            t = transform(output) if transform is not None else first_tensor(output)
        except Exception:  # a transform that cannot take this output: not a candidate
            t = None
        map_shape = tuple(t.shape) if isinstance(t, Tensor) and t.ndim == 4 else None
        level_shapes = tuple(tuple(v.shape) for _, v in levels) if len(levels) > 1 else None
        return map_shape, level_shapes

    recorder = ForwardRecorder(runner, acceptor(reshape_transform), describe)
    with torch.inference_mode(), preserved_state(model), recorder.recording():
        runner(example)
    auto = declared or recorder.chosen()
    batch = int(example.shape[0])
    seen: dict[str, LayerInfo] = {}  # in order of first completion
    for name, type_name, shape, call in recorder.events:
        map_shape, levels = recorder.details.get((name, call), (None, None))
        is_candidate = (
            map_shape is not None
            and map_shape[0] == batch
            and map_shape[-1] * map_shape[-2] > 1
            and (family is None or family.proposes(name))
        )
        previous = seen.get(name)
        if map_shape is None and previous is not None:
            map_shape = previous.map_shape
        seen[name] = LayerInfo(
            name=name,
            type=type_name,
            shape=shape,
            calls=call + 1,
            candidate=is_candidate or (previous is not None and previous.candidate),
            auto=auto is not None and auto.name == name,
            map_shape=map_shape,
            levels=levels,
        )
    return list(seen.values())
