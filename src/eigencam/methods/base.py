"""What every explanation method shares: the result object, input checks, the captured forward.

A method subclasses :class:`Explainer` and implements :meth:`Explainer._explain`, which gets a
validated input batch and returns the raw maps; the base class resolves the target layer,
registers hooks for exactly one call, keeps the model's flags intact, upsamples and normalises.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.capture.adapters import runner_for
from eigencam.capture.geometry import crop_to_input, recording_geometry
from eigencam.capture.hooks import (
    ForwardRecorder,
    LayerRef,
    capture_outputs,
    first_tensor,
    preserved_state,
)
from eigencam.capture.layers import (
    LayerSpec,
    acceptor,
    auto_key,
    cached_auto,
    known_calls,
    no_candidate_error,
    remember_auto,
    remember_calls,
    resolve_target,
)
from eigencam.errors import LayerSelectionError, ShapeError
from eigencam.postprocess.maps import upsample_normalize


@dataclass(frozen=True, eq=False)
class Capture:
    """What one captured forward pass produced (see :meth:`Explainer._capture`).

    Attributes:
        output: the model's output.
        activations: (B, C, h, w) the target layer's maps, reshaped, and cropped to the cells
            over the input when the model padded it.
        layer: the resolved target layer.
        extent: None, or (ey, ex): how far the (h, w) grid extends over the input (see
            :attr:`CAMResult.extent`).
    """

    output: Any
    activations: Tensor
    layer: LayerRef
    extent: tuple[float, float] | None = None


@dataclass(frozen=True, eq=False)
class CAMResult:
    """What one call of an explainer returns.

    Attributes:
        maps: (B, k, H, W) float32 in [0, 1], upsampled (bilinear) to the input's H x W, on the
            input's device. k is the number of components (Eigen-CAM) or of targets per image
            (class-specific methods).
        raw: (B, k, h, w) float32 maps at the layer's resolution, before normalisation and
            before any ReLU (for Eigen-CAM the signed projections O V_i, for Grad-CAM
            :math:`\\sum_c w_c A_c`); ``params["relu"]`` says whether ``maps`` clipped them.
        layer: name of the target layer used (``name#call`` for a module called several times).
        method: registry name of the method.
        output: the model's output for the batch (logits for a classifier).
        explained_variance_ratio: (B, k) float32 for decomposition methods, else None.
        targets: (B, k) int64 class indices explained by class-specific methods (map j of image
            b explains class ``targets[b, j]``); None for class-agnostic methods and for
            callable targets.
        params: the method's parameters for this call, read-only.
        extent: None when ``raw`` covers the input exactly. For models that resize and pad the
            input internally (torchvision detectors), ``(ey, ex) >= 1``: ``raw`` covers the
            input's top-left ``ey * H`` by ``ex * W`` pixels (its last row and column of cells
            overhang the image); ``maps`` already accounts for it
            (:func:`eigencam.postprocess.maps.upsample` with ``extent=``).
    """

    maps: Tensor
    raw: Tensor
    layer: str
    method: str
    output: Any = field(default=None, repr=False)
    explained_variance_ratio: Tensor | None = None
    targets: Tensor | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    extent: tuple[float, float] | None = None

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def numpy(self) -> np.ndarray:
        """The normalised maps as a float32 numpy array (B, k, H, W) on the host."""
        return self.maps.detach().to("cpu", torch.float32).numpy()

    def __repr__(self) -> str:
        shape = tuple(self.maps.shape)
        return f"CAMResult(method={self.method!r}, layer={self.layer!r}, maps={shape})"


def check_inputs(inputs: Any, model: nn.Module) -> Tensor:
    """Validate an input batch: a floating (B, C, H, W) tensor on the model's device."""
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"inputs must be a torch.Tensor of shape (B, C, H, W), got {type(inputs).__name__}; "
            "convert with torch.as_tensor(...) and add a batch dimension"
        )
    if inputs.ndim == 3:
        raise ShapeError(
            "inputs", "(B, C, H, W)", tuple(inputs.shape), "Add a batch dimension: x.unsqueeze(0)."
        )
    if inputs.ndim != 4:
        raise ShapeError("inputs", "(B, C, H, W)", tuple(inputs.shape))
    if not inputs.is_floating_point():
        raise TypeError(
            f"inputs must be floating point, got {inputs.dtype}; convert images with "
            "x.float() / 255 and normalise them as the model expects"
        )
    if inputs.shape[0] == 0:
        raise ShapeError("inputs", "(B, C, H, W) with B >= 1", tuple(inputs.shape))
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != inputs.device:
        raise ValueError(
            f"inputs are on {inputs.device} but the model is on {param.device}; "
            f"move one of them, e.g. inputs.to({str(param.device)!r})"
        )
    return inputs


class Explainer(abc.ABC):
    """Base class of all methods: ``explainer(inputs, targets=None) -> CAMResult``.

    The constructor only stores its arguments; nothing is hooked or checked until a call.

    Args:
        model: any ``torch.nn.Module``.
        target_layer: a submodule, its dotted name (``"layer4"``, ``"relu#2"`` for the third call
            of a shared module), or ``"auto"`` (see :mod:`eigencam.capture.layers`).
        reshape_transform: turns the layer's output into (B, C, h, w), e.g.
            :class:`eigencam.tokens_to_grid` for transformer tokens.
        eval_mode: run every submodule in eval mode for the call (the flags are restored after).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = False
    class_specific: ClassVar[bool] = False
    #: Reference of the method's paper (authors, venue, year), for the docs table.
    paper: ClassVar[str] = ""
    #: What the target layer (or the model) must provide, for the docs table.
    layer_requirement: ClassVar[str] = ""
    #: Cost of one call in forward/backward passes, for the docs table.
    cost: ClassVar[str] = ""
    #: False for methods that explain the input pixels and ignore ``target_layer``.
    uses_layer: ClassVar[bool] = True
    #: Whether a class-specific method accepts a callable target ``score(output) -> (B,)``
    #: (detectors, segmenters) besides class indices.
    callable_targets: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec = "auto",
        *,
        reshape_transform: Callable[[Any], Tensor] | None = None,
        eval_mode: bool = True,
    ) -> None:
        self.model = model
        self.target_layer = target_layer
        self.reshape_transform = reshape_transform
        self.eval_mode = eval_mode

    # -- the one verb ---------------------------------------------------------------------
    @abc.abstractmethod
    def __call__(self, inputs: Tensor, targets: Any = None) -> CAMResult:
        """Explain a batch; see the subclass for its parameters."""

    # -- shared machinery -----------------------------------------------------------------
    def _check_model(self) -> nn.Module:
        if not isinstance(self.model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(self.model).__name__}")
        return self.model

    def _resolve_layer(self, inputs: Tensor) -> ResolvedLayer:
        """The module to run, the target layer and its reshape transform, capturing nothing.

        Same resolution as :meth:`_capture` (adapters, model families, declared layers);
        ``"auto"`` costs one extra forward pass (under inference mode) the first time a model is
        seen with this input signature; the choice is cached afterwards.
        """
        model = self._check_model()
        runner = runner_for(model)
        ref, transform = resolve_target(runner, self.target_layer, self.reshape_transform, inputs)
        if ref is None:
            key = auto_key(inputs, transform)
            ref = cached_auto(runner, key)
            if ref is None:
                recorder = ForwardRecorder(runner, acceptor(transform))
                with (
                    torch.inference_mode(),
                    preserved_state(model, eval_mode=self.eval_mode),
                    recorder.recording(),
                ):
                    runner(inputs)
                ref = recorder.chosen()
                if ref is None:
                    raise no_candidate_error(recorder, transform is not None)
                remember_auto(runner, key, ref)
                remember_calls(runner, key, ref, recorder.call_count(ref.name))
        return ResolvedLayer(runner, ref, transform)

    def _captured_forward(self, inputs: Tensor) -> tuple[Any, Tensor, LayerRef]:
        """:meth:`_capture` as (model output, activations (B, C, h, w), the resolved layer)."""
        captured = self._capture(inputs)
        return captured.output, captured.activations, captured.layer

    def _capture(self, inputs: Tensor) -> Capture:
        """Run the model once under inference mode, capturing the target layer's output.

        The model that runs is :func:`~eigencam.capture.adapters.runner_for` the user's model
        (the original of a compiled module, the network inside an Ultralytics wrapper, a
        graph runner for TorchScript); its mode flags are restored exactly on the user's model.
        When the model resizes and pads its input (torchvision detectors), the activations are
        cropped to the input's cells and the extent is returned.
        """
        model = self._check_model()
        runner = runner_for(model)
        ref, transform = resolve_target(runner, self.target_layer, self.reshape_transform, inputs)
        key = auto_key(inputs, transform)
        if ref is None:
            ref = cached_auto(runner, key)
        with (
            torch.inference_mode(),
            preserved_state(model, eval_mode=self.eval_mode),
            recording_geometry(runner) as geometry,
        ):
            if ref is None:
                recorder = ForwardRecorder(runner, acceptor(transform))
                with recorder.recording():
                    output = runner(inputs)
                ref = recorder.chosen()
                if ref is None:
                    raise no_candidate_error(recorder, transform is not None)
                remember_auto(runner, key, ref)
                remember_calls(runner, key, ref, recorder.call_count(ref.name))
                activation = recorder.candidate
            else:
                expected = known_calls(runner, key, ref)
                with capture_outputs([ref], expected_calls=expected) as store:
                    output = runner(inputs)
                if expected and ref.label not in store and store.calls.get(ref.label, 0):
                    # The module ran fewer times than in the previous pass, so its last call
                    # was not kept: run again keeping every call (dynamic models only).
                    with capture_outputs([ref]) as store:
                        output = runner(inputs)
                remember_calls(runner, key, ref, store.calls.get(ref.label, 0))
                if ref.label not in store:
                    raise LayerSelectionError(
                        f"target layer {ref.label!r} was not called during the forward pass"
                        + (
                            f" (it was called {store.calls.get(ref.label, 0)} times)"
                            if ref.call
                            else ""
                        )
                        + "; pick a layer that runs, see `eigencam layers`"
                        + getattr(runner, "missing_layer_hint", "")
                    )
                activation = store[ref.label]
            activation = as_map(activation, ref, transform)
            activation, extent = crop_to_input(activation, geometry.geometry(inputs))
        return Capture(output, activation, ref, extent)

    def _as_map(self, output: Any, ref: LayerRef) -> Tensor:
        return as_map(output, ref, self.reshape_transform)

    @staticmethod
    def _finish(
        raw: Tensor,
        inputs: Tensor,
        *,
        relu: bool = False,
        extent: tuple[float, float] | None = None,
    ) -> Tensor:
        return upsample_normalize(raw.float(), tuple(inputs.shape[-2:]), relu=relu, extent=extent)


class ResolvedLayer(NamedTuple):
    """What :meth:`Explainer._resolve_layer` returns.

    Attributes:
        runner: the module to run (:func:`~eigencam.capture.adapters.runner_for` the model).
        ref: the target layer, a module of ``runner``.
        transform: the reshape transform for its output (the caller's, the family's, or None).
    """

    runner: nn.Module
    ref: LayerRef
    transform: Callable[[Any], Tensor] | None


def as_map(output: Any, ref: LayerRef, transform: Callable[[Any], Tensor] | None) -> Tensor:
    """A layer's output as (B, C, h, w) maps: through ``transform``, or its first tensor."""
    t = transform(output) if transform is not None else first_tensor(output)
    if not isinstance(t, Tensor) or t.ndim != 4:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(output).__name__
        raise ShapeError(
            f"output of target layer {ref.label!r}",
            "(B, C, h, w)",
            shape,
            "Pick a convolutional layer, or pass reshape_transform= "
            "(eigencam.tokens_to_grid() for transformer tokens).",
        )
    return t


def detach_output(output: Any) -> Any:
    """A copy of tensor outputs that is usable outside inference mode (clone)."""
    if isinstance(output, Tensor):
        return output.clone()
    if isinstance(output, tuple) and hasattr(output, "_fields"):  # namedtuple
        return type(output)(*(detach_output(o) for o in output))
    if isinstance(output, (tuple, list)):
        return type(output)(detach_output(o) for o in output)
    if isinstance(output, dict):
        return {k: detach_output(v) for k, v in output.items()}
    return output
