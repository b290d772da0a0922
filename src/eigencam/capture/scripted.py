"""TorchScript modules: layer outputs read from the scripted graph itself.

Forward hooks cannot be registered on a ScriptModule, whose submodules run inside the
TorchScript interpreter. Instead a copy of its ``forward`` graph is edited and run as a
TorchScript function on the module's own object (the module is never modified):

1. every ``prim::CallMethod`` on a module *along the path* to a target layer
   (``self._forward_impl``, ``self.features.forward``...) is inlined, so the target's calls
   appear in the top-level graph;
2. the outputs of the target's ``forward`` calls (in execution order: ``relu#1`` is the second
   call of a shared module) are added to the graph's outputs;
3. the graph becomes a function ``(self, *inputs) -> (outputs, *layer values)``.

A layer called inside TorchScript control flow (an ``if``, a loop not unrolled) has no value at
the top level of the graph and cannot be exposed: pick its parent or a neighbour.
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from eigencam.capture.taps import Tap, hooked_taps
from eigencam.errors import InvalidParameterError, UnsupportedModelError


def is_scripted(model: Any) -> bool:
    """True for ``torch.jit.script``-ed and ``torch.jit.trace``-d modules."""
    return isinstance(model, torch.jit.ScriptModule)


@dataclass(frozen=True)
class _Program:
    function: Any
    order: tuple[tuple[int, str], ...]  # (index among the extra outputs, layer name), in order


class ScriptedModel(nn.Module):
    """Runs a TorchScript module; its submodules' outputs reach hooks on same-named taps.

    Its ``named_modules()`` mirror the scripted module's with :class:`~eigencam.capture.taps.Tap`
    modules (``target_layer="layer4"`` is the scripted ``layer4``); without hooks, calling it
    calls the scripted module, which is held (by weak reference with ``weak``), not copied, and
    not registered as a child.
    """

    def __init__(self, scripted: torch.jit.ScriptModule, *, weak: bool = False) -> None:
        super().__init__()
        if not is_scripted(scripted):
            raise InvalidParameterError(
                f"ScriptedModel needs a torch.jit.ScriptModule, got {type(scripted).__name__}"
            )
        ref = weakref.ref(scripted) if weak else (lambda: scripted)
        object.__setattr__(self, "_scripted", ref)
        object.__setattr__(self, "_programs", {})
        object.__setattr__(self, "_lock", threading.Lock())
        for name, sub in scripted.named_modules():
            if not name:
                continue
            parent: nn.Module = self
            *head, leaf = name.split(".")
            for part in head:
                parent = parent._modules[part]
            parent.add_module(leaf, Tap(getattr(sub, "original_name", type(sub).__name__)))

    missing_layer_hint = (
        " (in a TorchScript module, a layer called inside control flow, an if or a loop, "
        "cannot be read: pick its parent or a neighbour)"
    )

    @property
    def scripted(self) -> torch.jit.ScriptModule:
        """The TorchScript module this runs."""
        module = self._scripted()
        if module is None:
            raise ReferenceError("the TorchScript module of this ScriptedModel no longer exists")
        return module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        taps = hooked_taps(self)
        if not taps:
            return self.scripted(*args, **kwargs)
        if kwargs:
            raise UnsupportedModelError(
                "explaining a TorchScript module passes positional inputs only; got keyword "
                f"arguments {sorted(kwargs)}"
            )
        program = self._program(tuple(sorted(taps)))
        result = program.function(self.scripted._c, *args)
        output, values = result[0], result[1:]
        for index, name in program.order:
            taps[name](values[index])
        return output

    def eigencam_resolve(self, spec: Any) -> str | None:
        """The tap name for a submodule of the scripted module given as an object."""
        if isinstance(spec, nn.Module):
            for name, module in self.scripted.named_modules():
                if module is spec:
                    return name
        return None

    def _program(self, names: tuple[str, ...]) -> _Program:
        with self._lock:
            program = self._programs.get(names)
            if program is None:
                program = expose_layers(self.scripted, names)
                self._programs[names] = program
            return program


def expose_layers(scripted: torch.jit.ScriptModule, names: tuple[str, ...]) -> _Program:
    """A TorchScript function returning the module's outputs and the named layers' outputs."""
    try:
        graph = scripted._c._get_method("forward").graph.copy()
    except RuntimeError as err:
        raise UnsupportedModelError(
            f"cannot read the forward graph of this TorchScript module ({err}); pass the eager "
            "module instead"
        ) from err
    self_id = next(iter(graph.inputs())).unique()
    targets = [tuple(n.split(".")) for n in names]
    found: dict[tuple[str, ...], list[Any]] = {t: [] for t in targets}

    def module_path(value: Any) -> tuple[str, ...] | None:
        parts: list[str] = []
        while value.unique() != self_id:
            node = value.node()
            if node.kind() != "prim::GetAttr":
                return None
            parts.append(node.s("name"))
            value = node.input()
        return tuple(reversed(parts))

    def needs_inlining(path: tuple[str, ...], method: str) -> bool:
        return any(
            t[: len(path)] == path and (len(path) < len(t) or method != "forward") for t in targets
        )

    for _ in range(100_000):  # every pass inlines one call; recursion is impossible in TS
        node = next(
            (
                n
                for n in graph.findAllNodes("prim::CallMethod", True)
                if (p := module_path(n.inputsAt(0))) is not None and needs_inlining(p, n.s("name"))
            ),
            None,
        )
        if node is None:
            break
        path, method = module_path(node.inputsAt(0)), node.s("name")
        callee = functools.reduce(getattr, path, scripted)._c._get_method(method).graph
        with graph.insert_point_guard(node):
            new_outputs = graph.insertGraph(callee, list(node.inputs()))
        for new, old in zip(new_outputs, node.outputs()):
            old.replaceAllUsesWith(new)
            for key, values in found.items():
                found[key] = [new if v.unique() == old.unique() else v for v in values]
        if path in found and method == "forward":
            found[path].append(new_outputs[0])
        node.destroy()

    for node in graph.findAllNodes("prim::CallMethod", True):
        path = module_path(node.inputsAt(0))
        if path in found and node.s("name") == "forward":
            found[path].append(node.output())

    position = {v.unique(): -1 for v in graph.inputs()}
    for index, node in enumerate(graph.nodes()):  # top-level block only
        for value in node.outputs():
            position[value.unique()] = index
    exposed: list[tuple[int, int, str, Any]] = []
    for path, values in found.items():
        for value in values:
            if value.unique() in position:  # values inside if/loop blocks cannot be returned
                exposed.append((position[value.unique()], -len(path), ".".join(path), value))
    exposed.sort(key=lambda e: (e[0], e[1]))  # execution order; a child before its parent
    for _, _, _, value in exposed:
        graph.registerOutput(value)
    graph.makeMultiOutputIntoTuple()
    try:
        function = torch._C._create_function_from_graph("eigencam_forward", graph)
    except RuntimeError as err:
        raise UnsupportedModelError(
            f"cannot expose layers {list(names)} of this TorchScript module ({err}); pass the "
            "eager module, or script a model whose target layer is called outside control flow"
        ) from err
    order = tuple((i, name) for i, (_, _, name, _) in enumerate(exposed))
    return _Program(function, order)
