"""Explanation methods. Importing this package registers every method in the registry."""

from eigencam.methods.base import CAMResult, Explainer
from eigencam.methods.eigencam import EigenCAM
from eigencam.methods.registry import available_methods, get_method, register

__all__ = ["CAMResult", "EigenCAM", "Explainer", "available_methods", "get_method", "register"]
