"""The one walker over nested model outputs: tensors inside tuples, lists, dicts and namedtuples.

Layers and models return a tensor, or containers of them (a detector's list of dicts, a
namedtuple of heads). Every operation eigencam applies to such an output (clone it, detach
it, keep its first rows, swap its first tensor) is :func:`map_tensors` with another function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor


def map_tensors(output: Any, fn: Callable[[Tensor], Any]) -> Any:
    """``output`` with ``fn`` applied to every tensor, depth first, containers rebuilt.

    Tuples, lists and namedtuples keep their type; dicts become plain dicts; anything else is
    returned as is.
    """
    if isinstance(output, Tensor):
        return fn(output)
    if isinstance(output, tuple) and hasattr(output, "_fields"):  # namedtuple
        return type(output)(*(map_tensors(o, fn) for o in output))
    if isinstance(output, (tuple, list)):
        return type(output)(map_tensors(o, fn) for o in output)
    if isinstance(output, dict):
        return {k: map_tensors(v, fn) for k, v in output.items()}
    return output


def first_tensor(output: Any) -> Tensor | None:
    """The tensor a module produced: itself, or the first tensor in a tuple/list/dict output."""
    if isinstance(output, Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output
    if isinstance(output, (tuple, list, dict)):
        for item in items:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def replace_first_tensor(output: Any, new: Tensor) -> Any:
    """``output`` with its first tensor (the one :func:`first_tensor` finds) replaced by ``new``."""
    pending = [True]

    def swap(t: Tensor) -> Tensor:
        if pending[0]:
            pending[0] = False
            return new
        return t

    return map_tensors(output, swap)


def detach_output(output: Any) -> Any:
    """A copy of the tensors of ``output`` that is usable outside inference mode (clone)."""
    return map_tensors(output, Tensor.clone)


def detach_tree(output: Any) -> Any:
    """``output`` with every tensor detached (no copy)."""
    return map_tensors(output, Tensor.detach)
