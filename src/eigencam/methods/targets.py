"""Class targets for class-specific methods: what score each map explains.

A target spec is one of:

- ``None`` or ``"predicted"``: the top-1 class of each image (the default);
- ``"top3"`` (any ``"top<k>"``): the k best classes of each image, one map per class;
- an ``int``: the same class for every image;
- a sequence of ints (one per image) or of equal-length sequences (k per image), or an integer
  tensor of shape (B,) or (B, k);
- a callable ``score(output) -> Tensor`` returning one score per image, (B,) or (B, k): for
  detectors, segmenters and any model whose output is not (B, classes) logits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from eigencam.errors import TargetError

TargetSpec = (
    None | int | str | Sequence[int] | Sequence[Sequence[int]] | Tensor | Callable[[Any], Tensor]
)

_TOP = re.compile(r"^top(\d+)$")


@dataclass(frozen=True)
class Targets:
    """Resolved targets for a batch.

    Attributes:
        indices: (B, k) int64 class indices, or None when ``score_fn`` defines the scores.
        score_fn: maps the model output to (B,) or (B, k) scores, or None for class indices.
    """

    indices: Tensor | None
    score_fn: Callable[[Any], Tensor] | None = None

    def scores(self, output: Any) -> Tensor:
        """The (B, k) scores to explain, computed from the model output (differentiable)."""
        if self.indices is not None:
            logits = logits_of(output)
            return logits.gather(1, self.indices.to(logits.device))
        scores = self.score_fn(output) if self.score_fn is not None else None
        if not isinstance(scores, Tensor) or scores.ndim not in (1, 2):
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise TargetError(
                f"a callable target must return a tensor of one score per image, (B,) or (B, k); "
                f"got {got}"
            )
        return scores[:, None] if scores.ndim == 1 else scores


def logits_of(output: Any) -> Tensor:
    """The (B, classes) logits of a classifier output, or a TargetError saying what to do."""
    if isinstance(output, Tensor) and output.ndim == 2:
        return output
    kind = (
        f"tensor of shape {tuple(output.shape)}"
        if isinstance(output, Tensor)
        else type(output).__name__
    )
    raise TargetError(
        f"class-index targets need (B, classes) logits, but the model returned a {kind}; pass a "
        "callable target that maps the output to one score per image"
    )


def resolve_targets(spec: TargetSpec, output: Any, batch_size: int) -> Targets:
    """Turn a target spec into :class:`Targets` for a batch, validating indices and shapes."""
    if callable(spec) and not isinstance(spec, (Tensor, str)):
        return Targets(indices=None, score_fn=spec)
    if spec is None or spec == "predicted":
        return Targets(logits_of(output).detach().argmax(dim=1, keepdim=True))
    if isinstance(spec, str):
        match = _TOP.match(spec)
        if not match or int(match.group(1)) < 1:
            raise TargetError(
                f"targets={spec!r} is not understood; use 'predicted', 'top<k>' (e.g. 'top3'), "
                "a class index, one index per image, or a callable"
            )
        logits = logits_of(output).detach()
        k = int(match.group(1))
        if k > logits.shape[1]:
            raise TargetError(f"targets={spec!r} but the model has only {logits.shape[1]} classes")
        return Targets(logits.topk(k, dim=1).indices)
    logits = logits_of(output)
    device = logits.device
    if isinstance(spec, bool):
        raise TargetError(f"targets must be a class index, got a bool ({spec})")
    if isinstance(spec, int):
        idx = torch.full((batch_size, 1), spec, dtype=torch.long, device=device)
    else:
        try:
            idx = torch.as_tensor(spec, device=device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TargetError(
                f"targets could not be read as class indices: {err}; pass class indices or one "
                "callable score(output) -> (B,) (not one target object per image)"
            ) from None
        if idx.is_floating_point() or idx.dtype == torch.bool:
            raise TargetError(f"class indices must be integers, got dtype {idx.dtype}")
        idx = idx.long()
        if idx.ndim == 0:
            idx = idx.expand(batch_size)[:, None]
        elif idx.ndim == 1:
            idx = idx[:, None]
        if idx.ndim != 2 or idx.shape[0] != batch_size:
            raise TargetError(
                f"targets must give one class per image (B,) or k per image (B, k) with "
                f"B = {batch_size}; got shape {tuple(idx.shape)}"
            )
    n = logits.shape[1]
    if bool(((idx < 0) | (idx >= n)).any()):
        raise TargetError(
            f"class indices must be in [0, {n - 1}] for this model; "
            f"got {idx.flatten().tolist()[:8]}"
        )
    return Targets(idx)
