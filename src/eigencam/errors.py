"""Typed errors raised by eigencam.

Every error subclasses a built-in exception as well as :class:`EigenCAMError`, so callers can
catch either ``ValueError`` (or ``TypeError``, ``FileNotFoundError``...) or everything eigencam
raises with one ``except EigenCAMError``. Messages name the argument or file, say what was
expected and what was received, and suggest a fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EigenCAMError(Exception):
    """Base class of every error eigencam raises on purpose."""


class InvalidParameterError(EigenCAMError, ValueError, TypeError):
    """A parameter has a wrong value or type. Catchable as ``ValueError`` or ``TypeError``."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`InvalidParameterError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InvalidParameterError(message)


def check_range(
    name: str, value: float, low: float | None = None, high: float | None = None
) -> None:
    """Refuse a number outside ``[low, high]`` (either bound may be None) with a message that
    names the parameter, the accepted range and the value received."""
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            want = f">= {low}"
        elif low is None:
            want = f"<= {high}"
        else:
            want = f"in [{low}, {high}]"
        raise InvalidParameterError(f"{name} must be {want}, got {value!r}")


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """Refuse a value that is not one of ``choices``, listing them."""
    choices = list(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise InvalidParameterError(f"{name} must be one of {listed}, got {value!r}")


class LayerNotFoundError(EigenCAMError, KeyError):
    """A target layer name does not exist in the model."""

    def __init__(self, name: str, candidates: Iterable[str]) -> None:
        candidates = list(candidates)
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.4)
        if not close:
            # Fall back on names that share the last dotted component or a prefix.
            tail = name.rsplit(".", 1)[-1]
            close = [c for c in candidates if c.endswith(tail) or c.startswith(name)][:5]
        hint = f" Closest valid names: {', '.join(close)}." if close else ""
        self.name = name
        self.suggestions = close
        msg = (
            f"target_layer {name!r} is not a module of this model.{hint} "
            "Run `eigencam layers MODEL` (or eigencam.list_layers(model)) to see every candidate."
        )
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class LayerSelectionError(EigenCAMError, ValueError):
    """The target layer cannot be used (wrong output shape, never called, ambiguous...)."""


class NonFiniteActivationError(EigenCAMError, ValueError):
    """The captured activations contain NaN or infinity."""


class ShapeError(EigenCAMError, ValueError):
    """A tensor does not have the shape an operation needs."""

    def __init__(self, what: str, expected: str, got: tuple[int, ...] | str, fix: str = "") -> None:
        got_s = str(tuple(got)) if not isinstance(got, str) else got
        msg = f"{what}: expected shape {expected}, got {got_s}."
        if fix:
            msg += f" {fix}"
        super().__init__(msg)


class InputMismatchError(EigenCAMError, ValueError):
    """The input batch does not fit the model: its channel count, its dtype, or a size smaller
    than the network can take. The message names what the model expects."""


class ModelNotFoundError(EigenCAMError, KeyError):
    """An unknown model name was given."""

    def __init__(self, name: str, candidates: Iterable[str]) -> None:
        candidates = list(candidates)
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        msg = (
            f"unknown model {name!r}.{hint} Run `eigencam models` for the list, or pass "
            "'package.module:factory' for your own model."
        )
        super().__init__(msg)

    def __str__(self) -> str:
        return str(self.args[0])


class WeightsError(EigenCAMError, ValueError):
    """A weights file cannot be read or does not fit the model."""


class ImageReadError(EigenCAMError, ValueError):
    """An image file is missing, unreadable, corrupt or too large."""

    def __init__(self, path: object, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{path}: {cause}")


class AnnotationError(EigenCAMError, ValueError):
    """An annotation file (boxes, labels) is missing, malformed or does not fit its image."""

    def __init__(self, path: object, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{path}: {cause}")


class MethodNotFoundError(EigenCAMError, KeyError):
    """An unknown explanation method name was given."""

    def __init__(self, name: str, candidates: Iterable[str]) -> None:
        candidates = list(candidates)
        close = difflib.get_close_matches(name.lower(), candidates, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        msg = f"unknown method {name!r}.{hint} Known methods: {', '.join(candidates)}."
        super().__init__(msg)

    def __str__(self) -> str:
        return str(self.args[0])


class UnsupportedModelError(EigenCAMError, TypeError):
    """A method cannot explain this model (missing head, unsupported layer type...)."""


class TargetError(EigenCAMError, ValueError):
    """A class target does not fit the model output or the batch."""


class ModelFileError(EigenCAMError, ValueError):
    """A model file (ONNX, TorchScript, Ultralytics yaml) is missing, unreadable or unusable."""


class MissingDependencyError(EigenCAMError, ImportError):
    """An optional package a model family needs is not installed."""

    def __init__(self, package: str, extra: str, what: str) -> None:
        super().__init__(
            f"{what} needs the {package} package, which is not installed; "
            f"pip install 'eigencam[{extra}]' (or pip install {package})"
        )


class BatchInputError(EigenCAMError, ValueError):
    """The input of a batch run cannot be planned (unknown kind, missing column, no images)."""


class RunMismatchError(EigenCAMError, ValueError):
    """An output folder holds a run with other inputs or settings than the ones given, or one
    written by another release of eigencam."""


class OutputError(EigenCAMError, OSError):
    """An output cannot be written (read-only folder, disk full, a file where a folder should
    be). Everything written before it is kept."""


class ModelForwardError(EigenCAMError, RuntimeError):
    """The model (or a method's computation on it) raised something that is not an eigencam
    error: the run stops, keeping what finished; ``--debug`` shows the traceback."""


class BatchError(EigenCAMError, RuntimeError):
    """A batch run stopped on an error that is not one image's fault (the model, the cluster,
    the disk). Finished shards are kept; rerunning the same command resumes the run."""
