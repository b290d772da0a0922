"""Methods as written on the command line: ``name[:option=value...]``."""

# moves to eigencam.methods.registry (parse_spec, parse_value, build_explainer, MethodSpec)
from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from eigencam.errors import InvalidParameterError
from eigencam.methods import get_method
from eigencam.methods.base import Explainer


@dataclass(frozen=True)
class MethodSpec:
    """A method and its options as written on the command line: ``name[:option=value...]``.

    ``eigencam:center=true:relu=true`` is Eigen-CAM with ``center=True, relu=True``. Values are
    read as booleans (true/false), None (none), integers, floats, lists (``a+b``) or strings.
    """

    key: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


_OPTION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse_method(text: str) -> MethodSpec:
    """Parse ``name[:option=value...]`` (see :class:`MethodSpec`)."""
    text = str(text).strip()
    name, *parts = text.split(":")
    if not name:
        raise InvalidParameterError(f"method {text!r}: expected name[:option=value...]")
    options = {}
    for part in parts:
        m = _OPTION.match(part)
        if not m:
            raise InvalidParameterError(
                f"method {text!r}: option {part!r} is not option=value "
                "(e.g. eigencam:center=true:n_components=2)"
            )
        options[m.group(1)] = _value(m.group(2))
    return MethodSpec(key=text, name=name.lower(), options=options)


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low == "none":
        return None
    if "+" in text:
        return [_value(t) for t in text.split("+")]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def build_explainer(spec: MethodSpec, model: nn.Module, target_layer: Any) -> Explainer:
    """Instantiate a registered method with the spec's options, checked against its signature."""
    cls = get_method(spec.name)
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p not in ("self", "model")]
    unknown = [k for k in spec.options if k not in accepted]
    if unknown:
        raise InvalidParameterError(
            f"method {spec.key!r}: {cls.name} has no option(s) {unknown}; "
            f"it accepts {', '.join(accepted) or 'none'}"
        )
    options = dict(spec.options)
    layer = options.pop("target_layer", target_layer)  # name:target_layer=... wins over --layer
    return cls(model, layer, **options)
