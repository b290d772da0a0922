"""A user's own model: ``package.module:factory`` or ``path/to/file.py:factory``, a function
that returns a ``torch.nn.Module`` (its keyword arguments come from ``load_model(name, **options)``
or ``--model-arg``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from eigencam.errors import ModelNotFoundError
from eigencam.models.entry import ModelEntry
from eigencam.models.sources.torchvision import PREFIX as TORCHVISION


def _module(spec: str, target: str) -> ModuleType:
    if not target.endswith(".py"):
        try:
            return importlib.import_module(target)
        except ImportError as err:
            raise ModelNotFoundError(spec, ()) from err
    path = Path(target)
    name = f"_eigencam_user_{abs(hash(path.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(name, path) if path.is_file() else None
    if module_spec is None or module_spec.loader is None:
        raise ModelNotFoundError(spec, ())
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def entry(spec: str) -> ModelEntry | None:
    """The entry of ``module:factory`` or ``file.py:factory``; None for other names."""
    if ":" not in spec or spec.startswith(TORCHVISION):
        return None
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelNotFoundError(spec, ())
    module = _module(spec, target)
    factory = getattr(module, attr, None)
    if not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ModelNotFoundError(spec, [f"{target}:{n}" for n in public])
    return ModelEntry(name=spec, description=f"user factory {spec}", build=factory)
