"""What every explanation method shares: the result, the input checks, the one call sequence.

:meth:`Explainer.__call__` is the template every method follows::

    check (options, targets, inputs) -> observe (the forward pass, hooks for this call only)
    -> compute (the method's maths: raw maps at the layer) -> finish (upsample, normalise)
    -> CAMResult(params=self.get_params())

A method subclasses :class:`Explainer`, declares its class variables (name, summary, paper...)
and implements :meth:`Explainer._compute`; it overrides :meth:`Explainer._observe` only when one
captured forward pass of the target layer (:meth:`Explainer._capture`, the default) is not what
it needs (gradients, a traced graph, extra hooks). The constructor only stores its arguments,
each under its own name: :meth:`Explainer.get_params` reads them back from the signature.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.capture.adapters import runner_for
from eigencam.capture.families import fit_to_output
from eigencam.capture.geometry import crop_to_input, recording_geometry
from eigencam.capture.hooks import (
    ForwardRecorder,
    LayerRef,
    capture_outputs,
    model_lock,
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
from eigencam.capture.tree import detach_output, first_tensor
from eigencam.errors import (
    EigenCAMError,
    InputMismatchError,
    LayerSelectionError,
    ShapeError,
    TargetError,
    UnsupportedModelError,
    check,
)
from eigencam.methods.targets import TargetSpec
from eigencam.postprocess.maps import normalize, upsample, upsample_normalize

#: Constructor arguments that say where and how to run, not how the method computes: they are
#: attributes of every explainer but not part of :meth:`Explainer.get_params`.
RUN_ARGS = ("target_layer", "reshape_transform", "eval_mode")


@dataclass(frozen=True, eq=False, kw_only=True)
class Observation:
    """What the observe step of a call recorded; methods extend it with what they need.

    Attributes:
        output: the model's output for the batch, detached (what :attr:`CAMResult.output` is).
        layer: label of the layer explained (``"input"`` for methods on the input pixels).
        extent: see :attr:`CAMResult.extent`.
    """

    output: Any
    layer: str
    extent: tuple[float, float] | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class Capture(Observation):
    """One captured forward pass (see :meth:`Explainer._capture`).

    Attributes:
        activations: (B, C, h, w) the target layer's maps, reshaped, and cropped to the cells
            over the input when the model padded it.
        ref: the resolved target layer.
        transform: the reshape transform applied to its output, or None.
        calls: how many times the layer's module ran in the pass.
    """

    activations: Tensor
    ref: LayerRef
    transform: Callable[[Any], Tensor] | None = None
    calls: int = 1


class Computed(NamedTuple):
    """What :meth:`Explainer._compute` returns.

    Attributes:
        raw: (B, k, h, w) the maps at the layer's resolution (:attr:`CAMResult.raw`).
        targets: (B, k) class indices explained, or None.
        explained_variance_ratio: (B, k), decomposition methods only.
        params: parameters resolved during the call, shown instead of the constructor's value
            (CAM's ``fc_layer``: the classifier found).
    """

    raw: Tensor
    targets: Tensor | None = None
    explained_variance_ratio: Tensor | None = None
    params: Mapping[str, Any] = MappingProxyType({})


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
    check(
        isinstance(inputs, Tensor),
        f"inputs must be a torch.Tensor of shape (B, C, H, W), got {type(inputs).__name__}; "
        "convert with torch.as_tensor(...) and add a batch dimension",
    )
    if inputs.ndim == 3:
        raise ShapeError(
            "inputs", "(B, C, H, W)", tuple(inputs.shape), "Add a batch dimension: x.unsqueeze(0)."
        )
    if inputs.ndim != 4:
        raise ShapeError("inputs", "(B, C, H, W)", tuple(inputs.shape))
    check(
        inputs.is_floating_point(),
        f"inputs must be floating point, got {inputs.dtype}; convert images with "
        "x.float() / 255 and normalise them as the model expects",
    )
    if inputs.shape[0] == 0:
        raise ShapeError("inputs", "(B, C, H, W) with B >= 1", tuple(inputs.shape))
    param = next(iter(model.parameters()), None)
    check(
        param is None or param.device == inputs.device,
        f"inputs are on {inputs.device} but the model is on {getattr(param, 'device', None)}; "
        f"move one of them, e.g. inputs.to({str(getattr(param, 'device', None))!r})",
    )
    return inputs


@functools.cache
def param_names(cls: type) -> tuple[str, ...]:
    """The names of ``cls.__init__``'s arguments after ``self`` and the model, read once per
    class (the options :func:`~eigencam.methods.registry.build_explainer` accepts)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]
    return tuple(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


class Explainer:
    """Base class of all methods: ``explainer(inputs, targets=None) -> CAMResult``.

    The constructor only stores its arguments, each as the attribute of the same name (as
    scikit-learn estimators do); nothing is hooked or checked until a call.

    Args:
        model: any ``torch.nn.Module``.
        target_layer: a submodule, its dotted name (``"layer4"``, ``"relu#2"`` for the third call
            of a shared module), or ``"auto"`` (see :mod:`eigencam.capture.layers`); or a list
            of them (``["layer3", "layer4"]``): the maps of each layer, clipped when ``relu``,
            normalised to [0, 1] at the finest layer's resolution and averaged (as
            pytorch-grad-cam's ``target_layers=[...]``); ``layer`` is then ``"layer3+layer4"``.
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
    #: Whether ``maps`` clip negative values (ReLU); methods with a ``relu`` argument set it.
    relu: bool = False

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

    def get_params(self) -> dict[str, Any]:
        """The method's parameters: every constructor argument but the model and
        :data:`RUN_ARGS`, read from the attribute of the same name, and ``relu``."""
        names = [n for n in param_names(type(self)) if n not in RUN_ARGS]
        return {n: getattr(self, n) for n in names} | {"relu": self.relu}

    # -- the one verb: the template -------------------------------------------------------
    def __call__(self, inputs: Tensor, targets: TargetSpec = None) -> CAMResult:
        """Explain a batch.

        Args:
            inputs: (B, C, H, W) floating tensor on the model's device; not modified.
            targets: for class-specific methods, the classes to explain (default: the predicted
                class), see :mod:`eigencam.methods.targets`; ``"top3"`` gives three maps per
                image from one forward pass. Class-agnostic methods take none.

        Returns:
            :class:`CAMResult`: maps (B, k, H, W), raw (B, k, h, w), targets (B, k).

        Raises:
            InputMismatchError: the model cannot take the input (channels, dtype, too small).
            LayerSelectionError: the target layer cannot be explained (never called, a 1 x 1
                output...); the message names a layer that works where one is known.

        Calls that share a model run one at a time (:func:`~eigencam.capture.hooks.model_lock`):
        an explainer may be called from several threads, and each call gives the map a
        single-threaded call gives. For parallel throughput, give each thread its own copy of
        the model.
        """
        self._check_call(targets)
        model = self._check_model()
        inputs = check_inputs(inputs, model)
        with model_lock(model):
            try:
                layers = layer_list(self.target_layer)
                if layers is not None:
                    return self._explain_layers(inputs, targets, layers)
                return self._explain(inputs, self._observe(inputs, targets), targets)
            except RuntimeError as err:
                mismatch = input_mismatch(err, inputs, model)
                if mismatch is None:
                    raise
                raise mismatch from err
            except _FlatLayerError as err:
                raise LayerSelectionError(f"{err}{self._working_layer_hint(inputs)}") from None

    def _explain(self, inputs: Tensor, seen: Observation, targets: TargetSpec) -> CAMResult:
        """Compute and finish: the result from what the observe step recorded."""
        out = self._computed(seen, inputs, targets)
        return CAMResult(
            maps=self._finish(out.raw, inputs, seen.extent),
            raw=out.raw.float(),
            layer=seen.layer,
            method=self.name,
            output=seen.output,
            explained_variance_ratio=out.explained_variance_ratio,
            targets=out.targets,
            params=MappingProxyType(self.get_params() | dict(out.params)),
            extent=seen.extent,
        )

    def _explain_layers(self, inputs: Tensor, targets: TargetSpec, layers: list[Any]) -> CAMResult:
        """The result for several target layers: one observe and compute per layer.

        ``maps``: the mean of the layers' maps (each upsampled to the input and normalised),
        normalised again, as pytorch-grad-cam aggregates ``target_layers``; ``raw``: the mean of
        the layers' raw maps, each clipped (``relu``) and normalised at the finest layer's
        resolution, as Eigen-CAM's ``fuse_layers``. ``targets``, output and explained variance
        are the first layer's.
        """
        if len(layers) == 1:  # that layer
            one = copy.copy(self)
            one.target_layer = layers[0]
            return one._explain(inputs, one._observe(inputs, targets), targets)
        parts = []
        for layer in layers:
            one = copy.copy(self)
            one.target_layer = layer
            seen = one._observe(inputs, targets)
            if seen.extent is not None:
                raise UnsupportedModelError(
                    "several target layers need a model that does not pad its input internally "
                    f"(layer {seen.layer!r} extends past the image); explain one layer at a time"
                )
            parts.append((seen, one._computed(seen, inputs, targets)))
        first_seen, first = parts[0]
        for seen, out in parts[1:]:
            same = (first.targets is None and out.targets is None) or (
                first.targets is not None
                and out.targets is not None
                and torch.equal(first.targets, out.targets)
            )
            check(
                same and out.raw.shape[:2] == first.raw.shape[:2],
                f"layers {first_seen.layer!r} and {seen.layer!r} explain different targets "
                f"or map counts ({tuple(first.raw.shape[:2])} vs {tuple(out.raw.shape[:2])}); "
                "pass explicit class indices as targets",
            )
        finest = max((out.raw.shape[-2:] for _, out in parts), key=lambda s: s[0] * s[1])
        raw = torch.stack(
            [
                normalize(upsample(_clip(out.raw.float(), self.relu), tuple(finest)))
                for _, out in parts
            ]
        ).mean(0)
        maps = torch.stack([self._finish(out.raw, inputs, None) for _, out in parts]).mean(0)
        return CAMResult(
            maps=normalize(maps),
            raw=raw,
            layer="+".join(seen.layer for seen, _ in parts),
            method=self.name,
            output=first_seen.output,
            explained_variance_ratio=first.explained_variance_ratio,
            targets=first.targets,
            params=MappingProxyType(self.get_params() | dict(first.params)),
        )

    def _computed(self, seen: Observation, inputs: Tensor, targets: TargetSpec) -> Computed:
        """:meth:`_compute`, its raw maps checked to have more than one cell (a method that
        reads the layer without :func:`as_map`, c-MWP, would return constant maps)."""
        out = self._compute(seen, inputs, targets)
        if out.raw.ndim == 4 and out.raw.shape[-2:] == (1, 1):
            raise _FlatLayerError(_flat_message(seen.layer, tuple(out.raw.shape)))
        return out

    # -- the hooks a method fills in ------------------------------------------------------
    def _check_options(self) -> None:
        """Validate the method's own options (called before anything runs)."""

    def _observe(self, inputs: Tensor, targets: TargetSpec) -> Observation:
        """Run the model and record what :meth:`_compute` needs; default: :meth:`_capture`."""
        return self._capture(inputs)

    def _compute(self, seen: Any, inputs: Tensor, targets: TargetSpec) -> Computed:
        """The method's maths: raw maps (B, k, h, w) from what :meth:`_observe` recorded."""
        raise NotImplementedError(f"{type(self).__name__} must implement _compute")

    def _finish(self, raw: Tensor, inputs: Tensor, extent: tuple[float, float] | None) -> Tensor:
        """Raw maps -> ``maps``: ReLU when ``relu`` (at the layer's resolution), upsampled to
        the input, normalised."""
        size = tuple(inputs.shape[-2:])
        return upsample_normalize(raw.float(), size, relu=self.relu, extent=extent)

    # -- shared machinery -----------------------------------------------------------------
    def _check_call(self, targets: TargetSpec) -> None:
        if not self.uses_layer:
            check(
                self.target_layer in ("auto", None),
                f"{self.name} explains the input pixels and takes no target_layer, got "
                f"{self.target_layer!r}; leave it as 'auto'",
            )
        self._check_options()
        if not self.class_specific:
            check(
                targets is None,
                f"{self.name} is class-agnostic and takes no targets; use a class-specific "
                "method (gradcam, cam, ...) to explain a given class",
            )
        elif not self.callable_targets and callable(targets):
            raise TargetError(
                f"{self.name} starts from the classifier's class units and cannot explain a "
                "callable target; pass class indices, or use gradcam (or hirescam) for custom "
                "scores"
            )

    def _check_model(self) -> nn.Module:
        check(
            isinstance(self.model, nn.Module),
            f"model must be a torch.nn.Module, got {type(self.model).__name__}",
        )
        return self.model

    def _working_layer_hint(self, inputs: Tensor) -> str:
        """ " The automatic choice for this model is 'X'." (empty when there is none)."""
        runner = runner_for(self.model)
        transform = resolve_target(runner, "auto", self.reshape_transform, inputs)[1]
        key = auto_key(inputs, transform)
        ref = cached_auto(runner, key)
        if ref is None:
            try:
                with torch.inference_mode(), preserved_state(self.model):
                    ref = _record_auto(runner, inputs, key, transform)[1]
            except EigenCAMError:
                return ""
        return f" The automatic choice for this model is {ref.label!r} (target_layer='auto')."

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
                with torch.inference_mode(), preserved_state(model, eval_mode=self.eval_mode):
                    ref = _record_auto(runner, inputs, key, transform)[1]
        return ResolvedLayer(runner, ref, transform)

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
                output, ref, activation, calls = _record_auto(runner, inputs, key, transform)
            else:
                output, activation, calls = _record_layer(runner, inputs, key, ref)
            if self.reshape_transform is None:
                transform = fit_to_output(transform, activation)
            activation = as_map(activation, ref, transform)
            activation, extent = crop_to_input(activation, geometry.geometry(inputs))
        return Capture(
            output=detach_output(output),
            layer=ref.label,
            extent=extent,
            activations=activation,
            ref=ref,
            transform=transform,
            calls=calls,
        )


def _clip(raw: Tensor, relu: bool) -> Tensor:
    """ReLU at the layer's resolution, before upsampling (the Grad-CAM paper's order)."""
    return raw.clamp_min(0) if relu else raw


def layer_list(target_layer: Any) -> list[Any] | None:
    """The layers of a list or tuple ``target_layer``, or None for one layer."""
    if not isinstance(target_layer, Sequence) or isinstance(target_layer, str):
        return None
    layers = list(target_layer)
    check(
        len(layers) > 0,
        "target_layer is an empty list; name one layer or several, e.g. ['layer3', 'layer4']",
    )
    return layers


def _record_auto(
    runner: nn.Module, inputs: Tensor, key: Any, transform: Callable | None
) -> tuple[Any, LayerRef, Tensor, int]:
    """One forward pass choosing the target layer: (output, layer, its output, its calls)."""
    recorder = ForwardRecorder(runner, acceptor(transform))
    with recorder.recording():
        output = runner(inputs)
    ref = recorder.chosen()
    if ref is None:
        raise no_candidate_error(recorder, transform is not None)
    calls = recorder.call_count(ref.name)
    remember_auto(runner, key, ref)
    remember_calls(runner, key, ref, calls)
    return output, ref, recorder.candidate, calls


def _record_layer(
    runner: nn.Module, inputs: Tensor, key: Any, ref: LayerRef
) -> tuple[Any, Any, int]:
    """One forward pass capturing ``ref``: (output, the layer's output, its calls)."""
    expected = known_calls(runner, key, ref)
    with capture_outputs([ref], expected_calls=expected) as store:
        output = runner(inputs)
    if expected and ref.label not in store and store.calls.get(ref.label, 0):
        # The module ran fewer times than in the previous pass, so its last call was not
        # kept: run again keeping every call (dynamic models only).
        with capture_outputs([ref]) as store:
            output = runner(inputs)
    calls = store.calls.get(ref.label, 0)
    remember_calls(runner, key, ref, calls)
    if ref.label not in store:
        raise LayerSelectionError(
            f"target layer {ref.label!r} was not called during the forward pass"
            + (f" (it was called {calls} times)" if ref.call else "")
            + "; pick a layer that runs, see `eigencam layers`"
            + getattr(runner, "missing_layer_hint", "")
        )
    return output, store[ref.label], calls


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
    if t.shape[-2:] == (1, 1):
        raise _FlatLayerError(_flat_message(ref.label, tuple(t.shape)))
    return t


def _flat_message(layer: str, shape: tuple[int, ...]) -> str:
    return (
        f"target layer {layer!r} outputs a 1 x 1 map {shape}: a single cell has no spatial "
        "information, so every map would be constant; pick a layer before the global pooling "
        "(see `eigencam layers`)."
    )


class _FlatLayerError(LayerSelectionError):
    """A target layer with a 1 x 1 output (re-raised by the explainer call with a layer that
    works)."""


#: torch's messages for an input smaller than a kernel (convolution, pooling).
_TOO_SMALL = re.compile(
    r"Kernel size can't be greater than actual input size|Output size is too small|"
    r"smaller than kernel size|input size .* is too small"
)
_CHANNELS = re.compile(r"expected input\[[^\]]*\] to have (\d+) channels, but got (\d+)")


def input_mismatch(
    err: RuntimeError, inputs: Tensor, model: nn.Module
) -> InputMismatchError | None:
    """The typed error for a forward pass that failed because the input does not fit the model
    (its dtype, its channel count, a size below a kernel's), or None for any other failure."""
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None and param.dtype != inputs.dtype:
        return InputMismatchError(
            f"inputs are {_dtype(inputs.dtype)} but the model's weights are "
            f"{_dtype(param.dtype)}, and the forward pass failed ({message}); convert the "
            f"inputs with x.to(torch.{_dtype(param.dtype)}), or the model to the inputs' dtype "
            "on a device that supports it"
        )
    channels = _CHANNELS.search(str(err))
    if channels is not None:
        want, got = channels.groups()
        return InputMismatchError(
            f"the model expects {want}-channel input but got {got} channels (inputs of shape "
            f"{tuple(inputs.shape)}); convert the images (PIL: image.convert('RGB') for 3 "
            "channels) or use a model built for this input"
        )
    if _TOO_SMALL.search(str(err)):
        h, w = inputs.shape[-2:]
        return InputMismatchError(
            f"inputs of {h} x {w} pixels are too small for this model: a kernel is larger than "
            f"the map that reaches it ({message}); use a larger input size (ImageNet "
            "classifiers usually take 224 x 224)"
        )
    return None


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def store_args(explainer: Explainer, args: Mapping[str, Any]) -> None:
    """The whole ``__init__`` of a method: ``store_args(self, locals())``.

    Runs :meth:`Explainer.__init__` with the arguments it takes, then stores every other
    argument of the method's constructor under its own name (what :meth:`Explainer.get_params`
    reads back).
    """
    run = {k: args[k] for k in ("reshape_transform", "eval_mode") if k in args}
    Explainer.__init__(explainer, args["model"], args["target_layer"], **run)
    for name in param_names(type(explainer)):
        if name not in RUN_ARGS:
            setattr(explainer, name, args[name])
