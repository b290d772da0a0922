"""The one registry of explanation methods, and the one way to name a configured method.

The registry feeds the CLI choices, the docs and the tests. A method with options is written
``name[:key=value...]`` everywhere (``--method``, ``--methods``, batch specs, run folders):
``eigencam:components=3:combine=energy`` is :class:`~eigencam.methods.EigenCAM` with
``n_components=3, combine="energy"``. :func:`build_explainer` turns such a spec into an
explainer; :func:`parse_value` is the value grammar shared with ``--model-arg`` and
``--target``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from eigencam.errors import InvalidParameterError, MethodNotFoundError, check
from eigencam.methods.base import Explainer, param_names

_REGISTRY: dict[str, type[Explainer]] = {}

E = TypeVar("E", bound="type[Explainer]")


def register(cls: E) -> E:
    """Class decorator: add an :class:`Explainer` subclass under its lowercase ``name``."""
    name = cls.name
    check(
        bool(name) and name == name.lower(),
        f"method name must be a non-empty lowercase string, got {name!r}",
    )
    check(_REGISTRY.get(name, cls) is cls, f"method {name!r} is registered twice")
    _REGISTRY[name] = cls
    return cls


def get_method(name: str) -> type[Explainer]:
    """The explainer class registered under ``name`` (case-insensitive)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise MethodNotFoundError(str(name), sorted(_REGISTRY))
    return _REGISTRY[key]


def available_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


INFO_FIELDS = (
    "name",
    "summary",
    "paper",
    "needs_gradients",
    "class_specific",
    "callable_targets",
    "uses_layer",
    "layer_requirement",
    "cost",
)


def method_info(name: str) -> dict[str, object]:
    """The registry metadata of a method, :data:`INFO_FIELDS` (``eigencam methods``, the docs)."""
    cls = get_method(name)
    return {key: getattr(cls, key) for key in INFO_FIELDS}


# -- specs: name[:key=value...] ----------------------------------------------------------------
#: Short option names accepted in specs, as the command line spells them.
OPTION_ALIASES = {"components": "n_components", "layer": "target_layer"}

_OPTION = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$")


@dataclass(frozen=True)
class MethodSpec:
    """A method and its options as written: ``name[:key=value...]``.

    Attributes:
        key: the spec as written (it names the method's results in tables and run folders).
        name: the registry name, lowercase.
        options: constructor arguments (aliases such as ``components`` already resolved).
    """

    key: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


def parse_value(text: str) -> Any:
    """The one value grammar of the command line and of specs.

    ``true``/``yes`` and ``false``/``no`` (any case) are booleans, ``none`` is None, then an
    int, a float, ``a+b+c`` a list of values, anything else the string itself.
    """
    low = text.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "+" in text:
        return [parse_value(t) for t in text.split("+")]
    return text


def parse_spec(text: str) -> MethodSpec:
    """Parse ``name[:key=value...]`` into a :class:`MethodSpec` (values: :func:`parse_value`).

    Keys may use ``-`` for ``_`` and the short names of :data:`OPTION_ALIASES`.
    """
    text = str(text).strip()
    name, *parts = text.split(":")
    check(bool(name), f"method {text!r}: expected name[:option=value...]")
    options: dict[str, Any] = {}
    for part in parts:
        m = _OPTION.match(part)
        check(
            m is not None,
            f"method {text!r}: option {part!r} is not option=value "
            "(e.g. eigencam:center=true:components=2)",
        )
        key = m.group(1).replace("-", "_")
        key = OPTION_ALIASES.get(key, key)
        check(key not in options, f"method {text!r}: option {key!r} is given twice")
        options[key] = parse_value(m.group(2))
    return MethodSpec(key=text, name=name.lower(), options=options)


def build_explainer(
    spec: str | MethodSpec, model: nn.Module, target_layer: Any = "auto", **defaults: Any
) -> Explainer:
    """A registered method configured by a spec.

    Args:
        spec: ``name[:key=value...]`` or a :class:`MethodSpec`.
        model: the model to explain.
        target_layer: for methods that use one (None: ``"auto"``); the spec's ``target_layer=``
            (``layer=``) wins. Methods on the input pixels ignore it.
        **defaults: options shared by several methods (``reshape_transform=``...): each method
            takes those its constructor accepts; the spec's options win over them.

    Raises:
        MethodNotFoundError: unknown method name.
        InvalidParameterError: an option of the spec the method does not take (the message
            lists those it accepts).
    """
    if not isinstance(spec, MethodSpec):
        spec = parse_spec(spec)
    cls = get_method(spec.name)
    accepted = param_names(cls)
    unknown = [k for k in spec.options if k not in accepted]
    if unknown:
        raise InvalidParameterError(
            f"method {spec.key!r}: {cls.name} has no option(s) {unknown}; "
            f"it accepts {', '.join(accepted) or 'none'}"
        )
    options = {k: v for k, v in defaults.items() if k in accepted} | dict(spec.options)
    layer = target_layer if cls.uses_layer and target_layer is not None else "auto"
    return cls(model, options.pop("target_layer", layer), **options)
