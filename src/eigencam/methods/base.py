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
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

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
    declared_layer,
    no_candidate_error,
    remember_auto,
    resolve_named,
)
from eigencam.errors import LayerSelectionError, ShapeError
from eigencam.maps import upsample_normalize


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
    """

    maps: Tensor
    raw: Tensor
    layer: str
    method: str
    output: Any = field(default=None, repr=False)
    explained_variance_ratio: Tensor | None = None
    targets: Tensor | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

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

    def _resolve_layer(self, inputs: Tensor) -> LayerRef:
        """The target layer as a :class:`LayerRef`, without capturing anything.

        ``"auto"`` costs one extra forward pass (under inference mode) the first time a model
        is seen with this input signature; the choice is cached afterwards.
        """
        model = self._check_model()
        ref = resolve_named(model, self.target_layer) or declared_layer(model)
        if ref is not None:
            return ref
        key = auto_key(inputs, self.reshape_transform)
        ref = cached_auto(model, key)
        if ref is not None:
            return ref
        recorder = ForwardRecorder(model, acceptor(self.reshape_transform))
        with (
            torch.inference_mode(),
            preserved_state(model, eval_mode=self.eval_mode),
            recorder.recording(),
        ):
            model(inputs)
        ref = recorder.chosen()
        if ref is None:
            raise no_candidate_error(recorder, self.reshape_transform is not None)
        remember_auto(model, key, ref)
        return ref

    def _captured_forward(self, inputs: Tensor) -> tuple[Any, Tensor, LayerRef]:
        """Run the model once under inference mode, capturing the target layer's output.

        Returns:
            (model output, activations as (B, C, h, w), the resolved layer).
        """
        model = self._check_model()
        ref = resolve_named(model, self.target_layer) or declared_layer(model)
        key = auto_key(inputs, self.reshape_transform)
        if ref is None:
            ref = cached_auto(model, key)
        with torch.inference_mode(), preserved_state(model, eval_mode=self.eval_mode):
            if ref is None:
                recorder = ForwardRecorder(model, acceptor(self.reshape_transform))
                with recorder.recording():
                    output = model(inputs)
                ref = recorder.chosen()
                if ref is None:
                    raise no_candidate_error(recorder, self.reshape_transform is not None)
                remember_auto(model, key, ref)
                activation = recorder.candidate
            else:
                with capture_outputs([ref]) as store:
                    output = model(inputs)
                if ref.label not in store:
                    raise LayerSelectionError(
                        f"target layer {ref.label!r} was not called during the forward pass"
                        + (
                            f" (it was called {store.calls.get(ref.label, 0)} times)"
                            if ref.call
                            else ""
                        )
                        + "; pick a layer that runs, see `eigencam layers`"
                    )
                activation = store[ref.label]
            activation = self._as_map(activation, ref)
        return output, activation, ref

    def _as_map(self, output: Any, ref: LayerRef) -> Tensor:
        if self.reshape_transform is not None:
            t = self.reshape_transform(output)
        else:
            t = first_tensor(output)
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

    @staticmethod
    def _finish(raw: Tensor, inputs: Tensor, *, relu: bool = False) -> Tensor:
        return upsample_normalize(raw.float(), tuple(inputs.shape[-2:]), relu=relu)


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
