"""The network as a graph of known operations, for methods that walk it top-down.

CNN-Fixations and c-MWP propagate a signal from the output back through every layer, with one
rule per operation type, and must see residual additions and concatenations, which module
hooks do not. This module traces the model with ``torch.fx`` (the trace shares the model's
modules and parameters: nothing is copied or changed), runs it once recording every
intermediate value, and describes each node as an :class:`Op` of a small vocabulary:

========== ==============================================================================
kind       operations
========== ==============================================================================
conv       ``nn.Conv2d`` (zero padding), ``F.conv2d``; a BatchNorm that is a convolution's
           only user is folded into its weights (``scale`` below)
linear     ``nn.Linear``, ``F.linear``
bn         ``nn.BatchNorm2d`` in eval mode (running statistics) not folded into a conv
relu       ``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardtanh(min_val=0)``, ``F.relu``, ``F.relu6``...
maxpool    ``nn.MaxPool2d``, ``nn.AdaptiveMaxPool2d`` and their functional forms
avgpool    ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d``, functional forms, ``x.mean((2, 3))``
reshape    ``nn.Flatten``, ``torch.flatten``, ``view``, ``reshape``, ``flatten``
identity   ``nn.Dropout*``, ``nn.Identity``, ``F.dropout``, ``contiguous``, ``clone``
pad        ``nn.ZeroPad2d``, ``nn.ConstantPad2d(0)``, ``F.pad`` with a constant 0
add        ``a + b`` of two same-shape tensors (residual connections), ``x + constant``
cat        ``torch.cat`` along channels
========== ==============================================================================

Anything else on the path from the input to the output makes the methods raise
:class:`~eigencam.errors.UnsupportedModelError` naming the operations.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from eigencam.capture.adapters import runner_for
from eigencam.capture.hooks import LayerRef, preserved_state
from eigencam.capture.tree import detach_output
from eigencam.errors import LayerSelectionError, UnsupportedModelError, check
from eigencam.methods.base import Explainer, Observation
from eigencam.methods.targets import TargetSpec, logits_of, resolve_targets

SUPPORTED = (
    "Conv2d, Linear, BatchNorm2d (eval), ReLU/ReLU6, MaxPool2d, AvgPool2d, adaptive pooling, "
    "Dropout, Flatten/view/reshape, zero padding, residual additions, channel concatenation"
)


@dataclass
class Op:
    """One node of the traced graph, described for the top-down rules.

    Attributes:
        kind: see the module docstring; also ``"input"``, ``"const"`` (parameters, buffers)
            and ``"unsupported"``.
        inputs: the data inputs (nodes whose values are tensors on the data path).
        params: kind-specific parameters (weights, geometry...).
        label: readable name of the operation (module type or function name).
    """

    kind: str
    node: fx.Node
    inputs: list[fx.Node] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""


class Traced:
    """A traced model (``gm``, sharing the model's modules) with its recorded values for a batch.

    Attributes:
        nodes: in execution (topological) order.
        values, ops: node -> recorded value, node -> :class:`Op`.
        output: the node whose value the model returns (must be a tensor).
    """

    def __init__(self, gm: fx.GraphModule, values: dict[fx.Node, Any]) -> None:
        self.nodes = list(gm.graph.nodes)
        self.values = values
        self.modules = dict(gm.named_modules())
        self.ops = {n: describe(n, self) for n in self.nodes}
        out_node = next(n for n in self.nodes if n.op == "output")
        result = out_node.args[0]
        if not isinstance(result, fx.Node) or not isinstance(values.get(result), Tensor):
            raise UnsupportedModelError(
                "the model must return one tensor of class scores (B, classes); it returns "
                f"{type(values.get(result, result)).__name__}"
            )
        self.output = result
        self._fold_batchnorms()

    def value(self, node: fx.Node) -> Tensor:
        return self.values[node]

    def ancestors(self, node: fx.Node) -> set[fx.Node]:
        """``node`` and every node it depends on."""
        return _closure(node, lambda n: n.all_input_nodes)

    def descendants(self, node: fx.Node) -> set[fx.Node]:
        """``node`` and every node that depends on it."""
        return _closure(node, lambda n: n.users)

    def check_supported(self, nodes: set[fx.Node], method: str) -> None:
        """Raise UnsupportedModelError naming every unsupported operation among ``nodes``."""
        bad: dict[str, list[str]] = {}
        for n in self.nodes:
            if n in nodes and self.ops[n].kind == "unsupported":
                bad.setdefault(self.ops[n].label, []).append(n.name)
        if bad:
            listed = "; ".join(
                f"{label} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                for label, names in bad.items()
            )
            raise UnsupportedModelError(
                f"{method} cannot propagate through these operations of the model: {listed}. "
                f"Supported: {SUPPORTED}."
            )

    def _fold_batchnorms(self) -> None:
        """Fold a BatchNorm into the convolution it directly follows (its only user)."""
        for n in self.nodes:
            op = self.ops[n]
            if op.kind != "bn" or not op.inputs:
                continue
            src = op.inputs[0]
            conv = self.ops[src]
            if conv.kind == "conv" and len(src.users) == 1 and "scale" not in conv.params:
                conv.params["scale"] = op.params["scale"]
                op.kind = "identity"


def _closure(node: fx.Node, step: Any) -> set[fx.Node]:
    """``node`` and every node reached from it by repeating ``step(node) -> nodes``."""
    seen = {node}
    stack = [node]
    while stack:
        for other in step(stack.pop()):
            if other not in seen:
                seen.add(other)
                stack.append(other)
    return seen


def trace(model: nn.Module, method: str) -> fx.GraphModule:
    """Trace ``model`` with torch.fx, or raise UnsupportedModelError with the reason."""
    try:
        return fx.symbolic_trace(model)
    except Exception as err:  # any failure to trace means the method cannot walk the model
        raise UnsupportedModelError(
            f"{method} needs the model as a graph of operations, but torch.fx cannot trace it "
            f"({type(err).__name__}: {err}); models with data-dependent control flow are not "
            "supported"
        ) from err


class _Recorder(fx.Interpreter):
    """Runs the graph keeping every value; in-place operations run out of place, so each
    recorded value is the one its node produced."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.recorded: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.recorded[n] = result
        return result

    def call_module(self, target: Any, args: tuple, kwargs: dict) -> Any:
        module = self.fetch_attr(target)
        if getattr(module, "inplace", False) and args and isinstance(args[0], Tensor):
            args = (args[0].clone(), *args[1:])
        return super().call_module(target, args, kwargs)

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        inplace = {operator.iadd: operator.add, operator.imul: operator.mul}
        target = inplace.get(target, target)
        if kwargs.get("inplace"):
            kwargs = {**kwargs, "inplace": False}
        return super().call_function(target, args, kwargs)

    def call_method(self, target: Any, args: tuple, kwargs: dict) -> Any:
        if (
            isinstance(target, str)
            and target.endswith("_")
            and not target.startswith("_")
            and args
            and isinstance(args[0], Tensor)
            and hasattr(args[0], target[:-1])
        ):
            target = target[:-1]
        return super().call_method(target, args, kwargs)


def record(gm: fx.GraphModule, inputs: Tensor) -> Traced:
    """Run the traced graph on ``inputs`` (no autograd) and describe every node."""
    recorder = _Recorder(gm)
    with torch.inference_mode(False), torch.no_grad():  # values usable by autograd later
        recorder.run(inputs.clone() if inputs.is_inference() else inputs)
    return Traced(gm, recorder.recorded)


def find_node(traced: Traced, ref: LayerRef) -> fx.Node:
    """The graph node whose value is the output of the target layer ``ref``."""
    if ref.name == "":
        return traced.output
    calls = [n for n in traced.nodes if n.op == "call_module" and n.target == ref.name]
    if not calls:
        scopes: dict[int, list[fx.Node]] = {}
        for n in traced.nodes:
            if not isinstance(traced.values.get(n), Tensor):
                continue
            for key in n.meta.get("nn_module_stack") or {}:
                name, _, call = str(key).partition("@")
                if name == ref.name:
                    scopes.setdefault(int(call or 0), []).append(n)
        calls = [scopes[c][-1] for c in sorted(scopes)]
    if not calls:
        raise LayerSelectionError(
            f"target layer {ref.label!r} does not appear in the traced graph of the model; "
            "pick a module that runs in forward, see `eigencam layers`"
        )
    if ref.call is None:
        return calls[-1]
    if ref.call >= len(calls):
        raise LayerSelectionError(
            f"target layer {ref.label!r}: the module is called {len(calls)} time(s)"
        )
    return calls[ref.call]


# -- describing nodes -------------------------------------------------------------------------

_MAXPOOL = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVGPOOL = (*_MAXPOOL[:3], "ceil_mode", "count_include_pad", "divisor_override")
_DROPOUT = ("input", "p", "training", "inplace")

_FN_ARGS: dict[Any, tuple[str, tuple[str, ...]]] = {
    F.conv2d: ("conv", ("input", "weight", "bias", "stride", "padding", "dilation", "groups")),
    F.linear: ("linear", ("input", "weight", "bias")),
    F.relu: ("relu", ("input", "inplace")),
    torch.relu: ("relu", ("input",)),
    F.relu6: ("relu", ("input", "inplace")),
    F.hardtanh: ("hardtanh", ("input", "min_val", "max_val", "inplace")),
    F.max_pool2d: ("maxpool", ("input", *_MAXPOOL)),
    torch.max_pool2d: ("maxpool", ("input", *_MAXPOOL[:-1])),
    F.adaptive_max_pool2d: ("adaptive_maxpool", ("input", "output_size", "return_indices")),
    F.avg_pool2d: ("avgpool", ("input", *_AVGPOOL)),
    F.adaptive_avg_pool2d: ("adaptive_avgpool", ("input", "output_size")),
    torch.flatten: ("reshape", ("input", "start_dim", "end_dim")),
    F.dropout: ("identity", _DROPOUT),
    F.dropout2d: ("identity", _DROPOUT),
    F.pad: ("pad", ("input", "pad", "mode", "value")),
    torch.cat: ("cat", ("tensors", "dim")),
    torch.concat: ("cat", ("tensors", "dim")),
    operator.add: ("add", ("input", "other")),
    operator.iadd: ("add", ("input", "other")),
    torch.add: ("add", ("input", "other", "alpha")),
    torch.mean: ("mean", ("input", "dim", "keepdim")),
}
try:  # the C function behind F.adaptive_avg_pool2d, when traced directly
    _FN_ARGS[torch._C._nn.adaptive_avg_pool2d] = _FN_ARGS[F.adaptive_avg_pool2d]
except AttributeError:  # pragma: no cover
    pass

_METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "view": ("reshape", ("input",)),
    "reshape": ("reshape", ("input",)),
    "flatten": ("reshape", ("input", "start_dim", "end_dim")),
    "contiguous": ("identity", ("input",)),
    "clone": ("identity", ("input",)),
    "relu": ("relu", ("input",)),
    "relu_": ("relu", ("input",)),
    "add": ("add", ("input", "other", "alpha")),
    "add_": ("add", ("input", "other", "alpha")),
    "mean": ("mean", ("input", "dim", "keepdim")),
}


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) else (0, 0)
    return (int(v), int(v))


def _conv_padding(padding: Any, kernel: tuple[int, int], dilation: tuple[int, int]) -> Any:
    """Numeric (top, left) padding of a convolution; str paddings resolved as PyTorch does."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return _pair(padding)


def _tensor(values: dict, x: Any) -> Any:
    return values.get(x) if isinstance(x, fx.Node) else x


def describe(n: fx.Node, traced: Traced) -> Op:
    """The :class:`Op` for node ``n``."""
    values = traced.values
    if n.op == "placeholder":
        return Op("input", n, label="input")
    if n.op == "get_attr":
        return Op("const", n, label="parameter")
    if n.op == "output":
        return Op("output", n, list(n.all_input_nodes), label="output")
    if not isinstance(values.get(n), Tensor):
        return Op("meta", n, label=str(n.target))  # sizes, shapes: not on the data path
    if n.op == "call_module":
        return _describe_module(n, traced.modules[n.target], values)
    if n.op == "call_function":
        entry = _FN_ARGS.get(n.target)
        label = getattr(n.target, "__name__", str(n.target))
    else:
        entry = _METHODS.get(n.target)
        label = f"Tensor.{n.target}"
    if entry is None:
        return Op("unsupported", n, label=label)
    kind, names = entry
    return _describe_function(n, kind, {**dict(zip(names, n.args)), **n.kwargs}, values, label)


def _data(n: Any) -> list[fx.Node]:
    return [n] if isinstance(n, fx.Node) else []


# Module types described as the function they compute: (types, kind, attributes read as the
# function's arguments; a pair renames the attribute).
_MODULES: tuple[tuple[Any, str, tuple[Any, ...]], ...] = (
    (nn.Conv2d, "conv", ("weight", "stride", "padding", "dilation", "groups")),
    (nn.Linear, "linear", ("weight",)),
    ((nn.ReLU, nn.ReLU6), "relu", ()),
    (nn.Hardtanh, "hardtanh", ("min_val",)),
    (nn.MaxPool2d, "maxpool", _MAXPOOL),
    (nn.AdaptiveMaxPool2d, "adaptive_maxpool", ("output_size", "return_indices")),
    (nn.AvgPool2d, "avgpool", _AVGPOOL),
    (nn.AdaptiveAvgPool2d, "adaptive_avgpool", ("output_size",)),
    ((nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout, nn.Identity), "identity", ()),
    (nn.Flatten, "reshape", ()),
    (nn.ConstantPad2d, "pad", (("padding", "pad"), "value")),  # ZeroPad2d included
)


def _describe_module(n: fx.Node, m: nn.Module, values: dict) -> Op:
    label = type(m).__name__
    if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
        return Op("unsupported", n, label=f"Conv2d(padding_mode={m.padding_mode!r})")
    if isinstance(m, nn.BatchNorm2d):
        if m.training or m.running_var is None:
            return Op("unsupported", n, label="BatchNorm2d without running statistics")
        scale = torch.rsqrt(m.running_var + m.eps)
        if m.weight is not None:
            scale = scale * m.weight
        return Op("bn", n, _data(n.args[0]) if n.args else [], {"scale": scale.detach()}, label)
    for types, kind, attributes in _MODULES:
        if isinstance(m, types):
            bound = {"input": n.args[0] if n.args else None}
            for a in attributes:
                attr, arg = a if isinstance(a, tuple) else (a, a)
                bound[arg] = getattr(m, attr)
            return _describe_function(n, kind, bound, values, label)
    return Op("unsupported", n, label=label)


def _pool_params(b: dict) -> dict[str, Any]:
    k = _pair(b["kernel_size"])
    stride = b.get("stride")
    return {
        "kernel_size": k,
        "stride": _pair(stride) if stride not in (None, ()) else k,
        "padding": _pair(b.get("padding", 0)),
        "dilation": _pair(b.get("dilation", 1)),
        "ceil_mode": bool(b.get("ceil_mode", False)),
        "count_include_pad": bool(b.get("count_include_pad", True)),
        "divisor_override": b.get("divisor_override"),
    }


def _describe_function(n: fx.Node, kind: str, b: dict, values: dict, label: str) -> Op:
    x = _data(b.get("input"))
    if kind == "conv":
        weight = _tensor(values, b["weight"])
        k = tuple(weight.shape[-2:])
        d = _pair(b.get("dilation", 1))
        params = {
            "weight": weight,
            "stride": _pair(b.get("stride", 1)),
            "padding": _conv_padding(b.get("padding", 0), k, d),
            "padding_arg": b.get("padding", 0),
            "dilation": d,
            "groups": int(b.get("groups", 1)),
        }
        return Op("conv", n, x, params, label)
    if kind == "linear":
        return Op("linear", n, x, {"weight": _tensor(values, b["weight"])}, label)
    if kind in ("relu", "reshape", "identity"):
        return Op(kind, n, x, {}, label)
    if kind == "hardtanh":
        if b.get("min_val", -1.0) != 0:
            return Op("unsupported", n, label="hardtanh with min_val != 0")
        return Op("relu", n, x, {}, label)
    if kind in ("maxpool", "adaptive_maxpool", "avgpool", "adaptive_avgpool"):
        if b.get("return_indices"):  # max pooling only
            fn = kind.replace("pool", "_pool2d")  # max_pool2d, adaptive_max_pool2d
            return Op("unsupported", n, label=f"{fn}(return_indices=True)")
        params = {"output_size": b["output_size"]} if "adaptive" in kind else _pool_params(b)
        return Op(kind.removeprefix("adaptive_"), n, x, params, label)
    if kind == "mean":
        dims = b.get("dim")
        src = values.get(b.get("input"))
        if not isinstance(src, Tensor) or src.ndim != 4 or dims is None:
            return Op("unsupported", n, label=label)
        dims = tuple(sorted(d % 4 for d in (dims if isinstance(dims, (tuple, list)) else [dims])))
        if dims != (2, 3):
            return Op("unsupported", n, label=f"mean over dims {dims}")
        return Op("avgpool", n, x, {"output_size": 1}, label)
    if kind == "pad":
        mode = b.get("mode", "constant")
        value = b.get("value") or 0
        if mode != "constant" or value != 0 or len(b["pad"]) != 4:
            return Op("unsupported", n, label=f"pad(mode={mode!r}, value={value})")
        return Op("pad", n, x, {"pad": tuple(b["pad"])}, label)
    if kind == "cat":
        tensors = b["tensors"]
        dim = int(b.get("dim", 0))
        out = values[n]
        if dim % out.ndim != 1:
            return Op("unsupported", n, label=f"cat along dim {dim}")
        return Op("cat", n, [t for t in tensors if isinstance(t, fx.Node)], {}, label)
    if kind == "add":
        if b.get("alpha", 1) != 1:
            return Op("unsupported", n, label="add with alpha")
        out = values[n]
        terms = [t for t in (b.get("input"), b.get("other")) if isinstance(t, fx.Node)]
        tensors = [t for t in terms if isinstance(values.get(t), Tensor) and t.op != "get_attr"]
        full = [t for t in tensors if values[t].shape == out.shape]
        if not full:
            return Op("unsupported", n, label="broadcasting add")
        return Op("add", n, full, {}, label)
    return Op("unsupported", n, label=label)  # pragma: no cover


def conv_weight(op: Op) -> Tensor:
    """The effective (C_out, C_in / groups, kh, kw) weight, a folded BatchNorm included."""
    w = op.params["weight"].detach()
    scale = op.params.get("scale")
    if scale is not None:
        w = w * scale.to(w.dtype)[:, None, None, None]
    return w


def unpool(op: Op, x: Tensor, values: Tensor) -> Tensor:
    """``values`` (one per output of a pooling op on ``x`` (R, C, H, W)) summed onto the
    input each output takes its largest input from: the max-pool winner, or the largest
    contribution to an average. Returns (R, C, H, W) float32."""
    p = op.params
    if "output_size" in p:
        idx = F.adaptive_max_pool2d(x, p["output_size"], return_indices=True)[1]
    else:
        k, s, pad = p["kernel_size"], p["stride"], p["padding"]
        dilation, ceil = p.get("dilation", (1, 1)), p.get("ceil_mode", False)
        idx = F.max_pool2d(x, k, s, pad, dilation, ceil, return_indices=True)[1]
    idx = idx.flatten(2)  # (R, C, h*w)
    flat = torch.zeros(x.shape[0], x.shape[1], x.shape[2] * x.shape[3], device=x.device)
    flat.scatter_add_(2, idx, values.reshape(idx.shape).float())
    return flat.reshape(x.shape)


# -- the methods that walk the graph ----------------------------------------------------------


@dataclass(frozen=True, eq=False, kw_only=True)
class TracedPass(Observation):
    """One recorded run of the traced model: the graph with every node's value for the batch,
    the target layer's node (None for methods on the input pixels), the (B, k) class indices."""

    traced: Traced
    node: fx.Node | None
    targets: Tensor


class GraphExplainer(Explainer):
    """Base of the methods that walk the traced network top-down from a class unit
    (CNN-Fixations, c-MWP): the observe step traces and records the model once."""

    class_specific = True
    callable_targets = False

    def _check_options(self) -> None:
        check(self.eval_mode, f"{self.name} needs eval_mode=True (BatchNorm is folded)")

    def _observe(self, inputs: Tensor, targets: TargetSpec) -> TracedPass:
        model = self._check_model()
        if self.uses_layer:
            runner, ref, _ = self._resolve_layer(inputs)
        else:
            runner, ref = runner_for(model), None
        with preserved_state(model, eval_mode=True):
            traced = record(trace(runner, self.name), inputs)
        node = None if ref is None else find_node(traced, ref)
        output = traced.value(traced.output)
        return TracedPass(
            output=detach_output(output),
            layer="input" if ref is None else ref.label,
            traced=traced,
            node=node,
            targets=resolve_targets(targets, logits_of(output), inputs.shape[0]).indices,
        )
