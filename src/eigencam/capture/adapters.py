"""The module an explainer runs and hooks, for models that wrap or compile another one.

:func:`runner_for` maps what the user passed to the module whose forward pass eigencam runs,
whose submodules it hooks and whose names ``target_layer`` refers to:

- a ``torch.compile``-d module: its ``_orig_mod`` (same parameters, so the same maps; hooks
  inside a compiled graph would make dynamo recompile on every call). Layer names are the
  original module's (``layer4``, not ``_orig_mod.layer4``).
- an Ultralytics ``YOLO`` / ``RTDETR`` wrapper: its ``.model``; the wrapper's ``__call__`` runs
  its predictor (which fuses layers and changes dtypes) and its ``train()`` starts training.
- a TorchScript module: a :class:`~eigencam.capture.scripted.ScriptedModel`, made once per
  module and kept while the module lives.
- anything else: the model itself.

The mode flags are always saved and restored on the object the user passed.
"""

from __future__ import annotations

import weakref
from typing import Any

from torch import nn

from eigencam.capture.scripted import ScriptedModel, is_scripted

_SCRIPTED: weakref.WeakKeyDictionary[nn.Module, ScriptedModel] = weakref.WeakKeyDictionary()


def is_compiled(model: Any) -> bool:
    """True for the wrapper ``torch.compile`` returns around a module."""
    return type(model).__name__ == "OptimizedModule" and isinstance(
        getattr(model, "_orig_mod", None), nn.Module
    )


def is_ultralytics_wrapper(model: Any) -> bool:
    """True for Ultralytics' ``Model`` wrappers (``YOLO(...)``, ``RTDETR(...)``...)."""
    return any(
        cls.__name__ == "Model" and cls.__module__.startswith("ultralytics.engine")
        for cls in type(model).__mro__
    ) and isinstance(model.__dict__.get("_modules", {}).get("model"), nn.Module)


def runner_for(model: nn.Module) -> nn.Module:
    """The module to run and hook for ``model`` (see the module docstring)."""
    for _ in range(8):  # wrappers may nest: compile(YOLO(...).model), ...
        if is_compiled(model):
            model = model._orig_mod
        elif is_ultralytics_wrapper(model):
            model = model._modules["model"]
        else:
            break
    if is_scripted(model):
        runner = _SCRIPTED.get(model)
        if runner is None:
            runner = ScriptedModel(model, weak=True)
            _SCRIPTED[model] = runner
        return runner
    return model
