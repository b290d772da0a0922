"""ONNX models run with onnxruntime: Eigen-CAM with no autograd and no PyTorch model at all.

:class:`OnnxModel` loads an ``.onnx`` file as a ``torch.nn.Module`` with one
:class:`~eigencam.capture.taps.Tap` per candidate intermediate tensor (floating, 3-D, 4-D or of
unknown rank, not produced by a pooling operator). When hooks sit on some taps the graph runs
with those tensors added as outputs (one onnxruntime session per set, built once) and each tap
is called with its tensor, so ``target_layer``, ``"auto"`` and ``eigencam layers model.onnx``
work as on PyTorch models. A layer is named after its tensor without the leading ``/`` and with
``.`` replaced by ``_`` (``/layer4/layer4.1/relu_1/Relu_output_0`` ->
``layer4/layer4_1/relu_1/Relu_output_0``); the tensor name is accepted as well.
:func:`export_onnx` exports a PyTorch model for it (the same maps, correlation >= 0.999).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.capture.hooks import preserved_state
from eigencam.capture.taps import Tap, hooked_taps
from eigencam.errors import ModelFileError, ShapeError
from eigencam.models.entry import ModelEntry, imagenet_labels, require
from eigencam.models.preprocessing import Preprocessing

_WHAT = "running ONNX models"
_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}  # onnx.TensorProto elem types


def _dims(value_info: Any) -> list[int | str | None] | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
    ]


def layer_name(tensor_name: str, index: int) -> str:
    """The module name used for an ONNX tensor (no dots, not empty)."""
    name = tensor_name.strip("/").replace(".", "_")
    return name or f"tensor_{index}"


class OnnxModel(nn.Module):
    """An ONNX image model run with onnxruntime, as a module the explainers can hook.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers (default: CPU).
        threads: onnxruntime intra-op threads (0: its default, all cores).

    Attributes:
        input_name: the graph's image input.
        input_shape: its declared shape (ints, or names / None for dynamic axes).
        output_names: the graph's outputs.
        tensor_names: layer name -> ONNX tensor name, for every tap, in graph order.

    ``forward(x)`` takes a (B, C, H, W) float tensor on any device and returns the graph's
    output (a tensor, or a tuple for several outputs) on the same device. A graph exported with
    a fixed batch of 1 is run image by image.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int = 0,
    ) -> None:
        super().__init__()
        onnx = require("onnx", "onnx", _WHAT)
        require("onnxruntime", "onnx", _WHAT)
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: ONNX file not found")
        try:
            proto = onnx.load(str(path))
        except Exception as err:  # onnx raises DecodeError and others
            raise ModelFileError(f"{path}: not a readable ONNX model ({err})") from err
        try:
            inferred = onnx.shape_inference.infer_shapes(proto)
        except Exception:  # shape inference is best effort; the taps then have unknown ranks
            inferred = proto
        graph = inferred.graph
        initializers = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initializers]
        if len(inputs) != 1:
            raise ModelFileError(
                f"{path}: eigencam explains image models with one input; this graph has "
                f"{len(inputs)} ({', '.join(i.name for i in inputs)})"
            )
        self.path = path
        self.input_name = inputs[0].name
        self.input_shape = _dims(inputs[0]) or [None, 3, None, None]
        self.input_dtype = _FLOAT_TYPES.get(inputs[0].type.tensor_type.elem_type, np.float32)
        self.output_names = [o.name for o in graph.output]
        types = {v.name: v for v in [*graph.value_info, *graph.output]}
        self.tensor_names: dict[str, str] = {}
        self._value_infos: dict[str, Any] = {}
        for index, node in enumerate(graph.node):
            if "pool" in node.op_type.lower():
                continue
            for tensor in node.output:
                info = types.get(tensor)
                if info is None or tensor in self.output_names:
                    continue
                elem = info.type.tensor_type.elem_type
                dims = _dims(info)
                if elem not in _FLOAT_TYPES or (dims is not None and len(dims) not in (3, 4)):
                    continue
                name = layer_name(tensor, index)
                while name in self.tensor_names:
                    name += "_"
                self.tensor_names[name] = tensor
                self._value_infos[tensor] = info
                self.add_module(name, Tap(node.op_type))
        self._aliases = {t: n for n, t in self.tensor_names.items()}
        self._model_bytes = proto.SerializeToString()
        self._providers = list(providers) if providers else ["CPUExecutionProvider"]
        self._threads = int(threads)
        self._sessions: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    # -- nn.Module behaviour ------------------------------------------------------------------
    def forward(self, x: Tensor) -> Any:
        if not isinstance(x, Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError("ONNX model input", "(B, C, H, W) tensor", got)
        self._check_input(x)
        taps = hooked_taps(self)
        exposed = tuple(self.tensor_names[name] for name in taps)
        session = self._session(exposed)
        array = x.detach().to("cpu", torch.float32).numpy().astype(self.input_dtype, copy=False)
        batch_fixed = isinstance(self.input_shape[0], int) and self.input_shape[0] == 1
        if batch_fixed and array.shape[0] > 1:  # a graph exported for one image at a time
            feeds = [{self.input_name: array[i : i + 1]} for i in range(len(array))]
            runs = [session.run(None, feed) for feed in feeds]
            results = [np.concatenate([r[j] for r in runs]) for j in range(len(runs[0]))]
        else:
            results = session.run(None, {self.input_name: array})
        tensors = [torch.from_numpy(np.asarray(r)).to(x.device) for r in results]
        n_out = len(self.output_names)
        for tap, value in zip(taps.values(), tensors[n_out:]):
            tap(value)
        outputs = tensors[:n_out]
        return outputs[0] if n_out == 1 else tuple(outputs)

    def eigencam_resolve(self, spec: Any) -> str | None:
        """Accept the ONNX tensor name as well as the layer name."""
        return self._aliases.get(spec) if isinstance(spec, str) else None

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, input={self.input_name} {self.input_shape}"

    # -- helpers --------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int] | None:
        """(H, W) when the graph fixes them, else None."""
        h, w = self.input_shape[-2:]
        return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None

    def _check_input(self, x: Tensor) -> None:
        for axis, (want, got) in enumerate(zip(self.input_shape[1:], x.shape[1:]), start=1):
            if isinstance(want, int) and want > 0 and want != got:
                raise ShapeError(
                    f"input of {self.path.name}",
                    str(tuple(self.input_shape)),
                    tuple(x.shape),
                    f"axis {axis} is fixed to {want} in the graph: resize the images "
                    f"(--input-size) or export with dynamic axes.",
                )

    def _session(self, exposed: tuple[str, ...]) -> Any:
        with self._lock:
            if exposed not in self._sessions:
                self._sessions[exposed] = self._make_session(exposed)
            return self._sessions[exposed]

    def _make_session(self, exposed: tuple[str, ...]) -> Any:
        import onnx
        import onnxruntime as ort

        data = self._model_bytes
        if exposed:
            proto = onnx.ModelProto()
            proto.ParseFromString(self._model_bytes)
            for tensor in exposed:
                proto.graph.output.append(self._value_infos[tensor])
            data = proto.SerializeToString()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self._threads:
            options.intra_op_num_threads = self._threads
        try:
            return ort.InferenceSession(data, options, providers=self._providers)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelFileError(f"{self.path}: onnxruntime cannot run this model ({err})") from err


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example: Tensor,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Export a PyTorch image model to ``path`` (returned) for :class:`OnnxModel`, with the
    TorchScript-based exporter (``dynamo=False``).

    The model runs in eval mode for the export (its flags are restored after; ``eval()`` is not
    called); ``example`` (B, C, H, W) fixes every axis but the batch, which is dynamic unless
    ``dynamic_batch=False``.
    """
    path = Path(path)
    axes = {"input": {0: "batch"}} if dynamic_batch else None
    # Not under no_grad: PyTorch's attention fast path (taken without grad in eval mode) has no
    # ONNX export; the exporter records no gradients anyway.
    with preserved_state(model):
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=["input"],
            dynamic_axes=axes,
            opset_version=opset,
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    return path


def entry(spec: str) -> ModelEntry | None:
    """The entry of an ``.onnx`` file; None for other names."""
    if not spec.lower().endswith(".onnx"):
        return None
    if not Path(spec).is_file():
        raise ModelFileError(f"{spec}: ONNX file not found")

    def configure(model: nn.Module) -> dict[str, Any]:
        size = model.input_size if isinstance(model, OnnxModel) else None
        return {"preprocessing": Preprocessing(size)} if size else {}

    return ModelEntry(
        name=spec,
        description=f"ONNX model {spec} (onnxruntime)",
        build=lambda **options: OnnxModel(spec, **options),
        labels=imagenet_labels,
        pretrained=True,
        configure=configure,
    )
