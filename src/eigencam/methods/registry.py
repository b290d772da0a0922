"""The one registry of explanation methods: it feeds the CLI choices, the docs and the tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from eigencam.errors import MethodNotFoundError

if TYPE_CHECKING:
    from eigencam.methods.base import Explainer

_REGISTRY: dict[str, type[Explainer]] = {}

E = TypeVar("E", bound="type[Explainer]")


def register(cls: E) -> E:
    """Class decorator: add an :class:`Explainer` subclass under its lowercase ``name``."""
    name = cls.name
    if not name or name != name.lower():
        raise ValueError(f"method name must be a non-empty lowercase string, got {name!r}")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"method {name!r} is registered twice")
    _REGISTRY[name] = cls
    return cls


def get_method(name: str) -> type[Explainer]:
    """The explainer class registered under ``name`` (case-insensitive)."""
    _load_all()
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise MethodNotFoundError(str(name), sorted(_REGISTRY))
    return _REGISTRY[key]


def available_methods() -> list[str]:
    """Registered method names, in registration order."""
    _load_all()
    return list(_REGISTRY)


# Docs metadata for methods whose class does not declare it (EigenCAM's module is owned by the
# Eigen-CAM options work; its ClassVars can replace this entry).
_FALLBACK_INFO: dict[str, dict[str, str]] = {
    "eigencam": {
        "paper": "Muhammad & Yeasin, Eigen-CAM, IJCNN 2020 (arXiv:2008.00299)",
        "layer_requirement": "any spatial layer (B, C, h, w)",
        "cost": "1 forward",
    }
}

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
    """The registry metadata of a method (what ``eigencam methods`` and the docs table show).

    Returns:
        A dict with the keys of :data:`INFO_FIELDS`.
    """
    cls = get_method(name)
    fallback = _FALLBACK_INFO.get(cls.name, {})
    info: dict[str, object] = {}
    for key in INFO_FIELDS:
        value = getattr(cls, key, None)
        if value in (None, "") and key in fallback:
            value = fallback[key]
        info[key] = value
    return info


def _load_all() -> None:
    import eigencam.methods  # noqa: F401  (importing the package registers every method)
