"""A user's own model: ``package.module:factory`` or ``path/to/file.py:factory``, a function
that returns a ``torch.nn.Module`` (its keyword arguments come from ``load_model(name, **options)``
or ``--model-arg``)."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from eigencam.errors import ModelFileError, ModelNotFoundError
from eigencam.models.entry import ModelEntry
from eigencam.models.sources.torchvision import PREFIX as TORCHVISION


def _module(spec: str, target: str) -> ModuleType:
    try:
        if not target.endswith(".py"):
            return importlib.import_module(target)
        path = Path(target)
        if not path.is_file():
            raise _not_found(spec, f"{target}: no such file")
        name = f"_eigencam_user_{abs(hash(path.resolve()))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    except ModuleNotFoundError as err:  # the module itself is missing: an unknown name
        if err.name and (target == err.name or target.startswith(err.name + ".")):
            raise ModelNotFoundError(spec, ()) from err
        raise _failed(spec, target, err) from err
    except ModelNotFoundError:
        raise
    except Exception as err:  # SyntaxError, an ImportError inside it, whatever its code raises
        raise _failed(spec, target, err) from err


def _failed(spec: str, target: str, err: BaseException) -> ModelFileError:
    return ModelFileError(f"{spec}: importing {target} failed: {type(err).__name__}: {err}")


def _not_found(spec: str, message: str) -> ModelNotFoundError:
    """A :class:`ModelNotFoundError` that says ``message`` instead of "unknown model"."""
    err = ModelNotFoundError(spec, ())
    err.args = (message,)
    return err


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
        close = difflib.get_close_matches(attr, public, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        listed = f" Its functions: {', '.join(public[:20])}." if public else ""
        raise _not_found(spec, f"{Path(target).name} has no function named {attr!r}{hint}{listed}")
    return ModelEntry(name=spec, description=f"user factory {spec}", build=factory)
