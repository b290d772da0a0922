"""Explaining one batch with the one isolation policy every command shares.

An :class:`~eigencam.errors.EigenCAMError` raised for a batch is retried image by image; an
image that still raises one is that image's failure, recorded with the error's message, and the
other images go on. Errors that no image can cause on its own (a wrong layer name, an option a
method does not have, a model a method cannot explain, an input size or dtype the model cannot
take, a missing package, an output that cannot be written) stop the run, and so does every
exception that is not an ``EigenCAMError`` (the model's forward failing, or a bug): it becomes
a :class:`~eigencam.errors.ModelForwardError` naming the batch and the original error (chained;
``--debug`` prints its traceback).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from eigencam import errors
from eigencam.capture.hooks import preserved_state
from eigencam.errors import EigenCAMError, ModelForwardError
from eigencam.methods.base import input_mismatch

T = TypeVar("T")
R = TypeVar("R")

#: Errors that are the run's, not one image's: they stop the run.
RUN_ERRORS: tuple[type[EigenCAMError], ...] = (
    errors.InputMismatchError,
    errors.InvalidParameterError,
    errors.LayerNotFoundError,
    errors.LayerSelectionError,
    errors.MethodNotFoundError,
    errors.MissingDependencyError,
    errors.OutputError,
    errors.UnsupportedModelError,
)


def isolate(
    explain: Callable[[list[T]], Sequence[R]],
    items: Sequence[T],
    run_errors: tuple[type[BaseException], ...] = RUN_ERRORS,
) -> list[tuple[T, R | None, EigenCAMError | None]]:
    """Run ``explain(items)`` (one result per item, in order) under the isolation policy.

    Args:
        explain: explains a list of items.
        items: the batch.
        run_errors: the errors that stop the run (``eigencam compare`` passes only
            :class:`~eigencam.errors.OutputError`: there a method that cannot explain the
            model is that method's failed cell, not the run's end).

    Returns:
        ``(item, result, None)`` per item that worked and ``(item, None, error)`` per item
        whose own :class:`~eigencam.errors.EigenCAMError` made it fail.
    """
    items = list(items)
    if not items:
        return []
    try:
        return [(it, res, None) for it, res in zip(items, explain(items), strict=True)]
    except run_errors:
        raise
    except EigenCAMError as err:
        if len(items) == 1:
            return [(items[0], None, err)]
    except Exception as err:
        raise ModelForwardError(
            f"model forward failed on a batch of {len(items)} image(s): {type(err).__name__}: {err}"
        ) from err
    return [out for it in items for out in isolate(explain, [it], run_errors)]


def to_batch(pixels: Sequence[Any], preprocessing: Any, device: Any) -> Tensor:
    """Stack uint8 (H, W, 3) images and normalise them on ``device``: the model's input."""
    stacked = torch.from_numpy(np.stack(list(pixels))).to(device)
    return preprocessing.normalize_batch(stacked)


def classify(model: nn.Module, x: Tensor) -> Tensor:
    """The model's output for a batch, in eval mode, with its flags restored; an input the
    model cannot take raises :class:`~eigencam.errors.InputMismatchError`."""
    with torch.inference_mode(), preserved_state(model):
        try:
            return model(x)
        except RuntimeError as err:
            mismatch = input_mismatch(err, x, model)
            if mismatch is None:
                raise
            raise mismatch from err
