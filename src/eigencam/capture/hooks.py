"""Forward hooks that live for exactly one call, and the model state they must leave intact."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from eigencam.capture.taps import layer_type
from eigencam.capture.tree import first_tensor, replace_first_tensor


@dataclass(frozen=True)
class LayerRef:
    """A resolved target layer.

    Attributes:
        name: dotted name in ``model.named_modules()`` ("" is the model itself).
        module: the module.
        call: which call of the module to capture (0-based) when the forward pass calls it
            several times (a shared activation module, say); None captures the last call.
    """

    name: str
    module: nn.Module = field(repr=False, compare=False)
    call: int | None = None

    @property
    def label(self) -> str:
        """Name shown to users: ``name`` or ``name#call``."""
        return self.name if self.call is None else f"{self.name}#{self.call}"


def submodule(model: nn.Module, name: str) -> nn.Module | None:
    """The submodule at a dotted name, or None; O(depth), not a walk over every module."""
    if name == "":
        return model
    try:
        return model.get_submodule(name)
    except AttributeError:
        # Stand-in models (TorchScript runners) only expose their names via named_modules().
        return dict(model.named_modules()).get(name)


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The one re-entrant lock of ``model``, made on first use.

    Hooks, mode flags and ``requires_grad`` are state of the model, not of the caller: two
    threads explaining with one model would record each other's forward passes. Every explainer
    call, and every :func:`preserved_state` block, holds this lock, so calls on one model run
    one at a time (calls on different models run in parallel). Uncontended, it costs well under
    a microsecond per call.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def preserved_state(model: nn.Module, *, eval_mode: bool = True) -> Iterator[None]:
    """Put every submodule in eval mode for the call, then restore all flags exactly.

    The block holds :func:`model_lock`, so no other thread changes the flags meanwhile.

    ``training`` is set on each module directly rather than through ``model.eval()``: some
    wrappers (Ultralytics YOLO) override ``train()``/``eval()`` with side effects. Each
    module's own ``training`` flag and each parameter's ``requires_grad`` are restored as found,
    even when the forward pass raises.

    Plain attributes a forward pass rebinds are restored too, for modules of the libraries known
    to cache state in forward (``_STATEFUL_LIBRARIES``: Ultralytics' detection head caches its
    anchors and strides as attributes; made under ``torch.inference_mode()`` they would be
    inference tensors, which a later gradient computation on the model could not save for
    backward). Objects mutated in place are not tracked. Snapshotting every module of every
    model would cost milliseconds per call, so other modules are not snapshotted.
    """
    with model_lock(model):
        yield from _preserved(model, eval_mode)


def _preserved(model: nn.Module, eval_mode: bool) -> Iterator[None]:
    modules = list(model.modules())
    training = [m.training for m in modules]
    params = list(model.parameters())
    requires_grad = [p.requires_grad for p in params]
    stateful = [m for m in modules if type(m).__module__.startswith(_STATEFUL_LIBRARIES)]
    attributes = [_public_attributes(m) for m in stateful]
    try:
        if eval_mode:
            for m, flag in zip(modules, training):
                if flag:  # only touch what changes: most models are already in eval mode
                    m.training = False
        yield
    finally:
        for m, flag in zip(modules, training):
            if m.training is not flag:
                m.training = flag
        for p, flag in zip(params, requires_grad):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        for m, before in zip(stateful, attributes):
            _restore_attributes(m, before)


def _public_attributes(module: nn.Module) -> dict[str, Any]:
    return {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}


def _restore_attributes(module: nn.Module, before: dict[str, Any]) -> None:
    after = _public_attributes(module)
    for key, value in before.items():
        if after.get(key, _MISSING) is not value:
            object.__setattr__(module, key, value)
    for key in after.keys() - before.keys():
        delattr(module, key)


_MISSING = object()
_STATEFUL_LIBRARIES = ("ultralytics.",)


class OutputStore:
    """What the capture hooks recorded during one forward pass, keyed by layer label."""

    def __init__(self) -> None:
        self.outputs: dict[str, Any] = {}
        self.calls: dict[str, int] = {}

    def __getitem__(self, label: str) -> Any:
        return self.outputs[label]

    def __contains__(self, label: str) -> bool:
        return label in self.outputs


@contextmanager
def capture_outputs(
    layers: Sequence[LayerRef],
    on_output: Callable[[LayerRef, Any], Any] | None = None,
    expected_calls: Mapping[str, int] | None = None,
) -> Iterator[OutputStore]:
    """Record the output of each layer during the forward passes run inside the block.

    Args:
        layers: the layers to hook.
        on_output: optional function called with (layer, output) at capture time; its return
            value is stored instead of the output (gradient methods attach tensor hooks here).
        expected_calls: for layers captured at their last call (``call`` None), how many times
            the module ran in an earlier forward pass of the same model, by label. Calls before
            the expected last one are then not kept: a module shared by the stem and the head
            no longer holds the stem's large output for the whole forward pass. The caller
            checks ``store.calls`` afterwards; with fewer calls than expected nothing is stored.

    The hooks are registered on entry and removed in ``finally``: none survive the block, also
    when the forward pass raises.

    What is stored is the output as it left the layer: the rest of the network gets a copy of
    its first tensor, so a later in-place operation (ResNet's ``out += identity`` into the
    output of ``bn2``, an in-place ReLU) changes the copy and not what is explained. The copy
    costs one pass over one layer's output per call.
    """
    store = OutputStore()
    handles = []
    expected = expected_calls or {}
    try:
        for ref in layers:
            first_kept = ref.call if ref.call is not None else expected.get(ref.label, 1) - 1
            hook = _make_hook(ref, store, on_output, first_kept)
            handles.append(ref.module.register_forward_hook(hook))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def _make_hook(
    ref: LayerRef, store: OutputStore, on_output: Callable | None, first_kept: int
) -> Callable:
    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        count = store.calls.get(ref.label, 0)
        store.calls[ref.label] = count + 1
        if count == first_kept if ref.call is not None else count >= first_kept:
            store.outputs[ref.label] = output if on_output is None else on_output(ref, output)
            return _passed_on(output)
        return None

    return hook


def _passed_on(output: Any) -> Any:
    """What the network downstream of a captured layer gets: ``output`` with a copy of its
    first tensor (None, leaving it as is, when it has no tensor)."""
    t = first_tensor(output)
    return None if t is None else replace_first_tensor(output, t.clone())


class ForwardRecorder:
    """Records, for every submodule, each call's output (weakly) and shape in completion order.

    Used to pick the target layer automatically and to list candidate layers. Outputs are held
    by weak reference, plus a copy of the current best candidate (a copy, so that a later
    in-place operation does not change it), so recording a batch costs one layer's output of
    memory beyond the forward pass itself.
    """

    def __init__(
        self,
        model: nn.Module,
        accept: Callable[[Tensor], bool],
        describe: Callable[[str, nn.Module, Any], Any] | None = None,
    ) -> None:
        self.model = model
        self.accept = accept
        self.describe = describe
        self.details: dict[tuple[str, int], Any] = {}
        self.events: list[tuple[str, str, tuple[int, ...] | None, int]] = []
        self._calls: dict[str, int] = {}
        self._pooled: list[weakref.ref] = []
        self.candidate: Tensor | None = None
        self.candidate_ref: LayerRef | None = None

    def _is_pooled(self, t: Tensor) -> bool:
        return any(r() is t for r in self._pooled)

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            t = first_tensor(output)
            shape = tuple(t.shape) if t is not None else None
            self.events.append((name, layer_type(module), shape, call))
            if self.describe is not None:
                self.details[(name, call)] = self.describe(name, module, output)
            if t is None:
                return
            if _is_pooling(module):
                self._pooled.append(weakref.ref(t))
                return
            if self._is_pooled(t) or not self.accept(t):
                return
            # The same tensor re-emitted by an enclosing container: prefer the outer name.
            self.candidate = t.clone()
            self.candidate_ref = LayerRef(name, module, call)

        return hook

    @contextmanager
    def recording(self) -> Iterator[ForwardRecorder]:
        handles = []
        try:
            for name, module in self.model.named_modules():
                if module is self.model:
                    continue
                handles.append(module.register_forward_hook(self._hook(name)))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def call_count(self, name: str) -> int:
        """How many times the module ``name`` ran during the recorded forward pass."""
        return self._calls.get(name, 0)

    def chosen(self) -> LayerRef | None:
        """The last accepted layer, its call index dropped when it is the module's last call."""
        ref = self.candidate_ref
        if ref is None:
            return None
        last = self._calls.get(ref.name, 1) - 1
        return LayerRef(ref.name, ref.module, None if ref.call == last else ref.call)


def _is_pooling(module: nn.Module) -> bool:
    return "pool" in layer_type(module).lower()


def spatial_map(t: Tensor) -> bool:
    """A 4-D (B, C, h, w) floating tensor with more than one spatial position."""
    return t.ndim == 4 and t.is_floating_point() and t.shape[-1] * t.shape[-2] > 1
