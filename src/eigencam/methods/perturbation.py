r"""Perturbation CAMs: Score-CAM and Ablation-CAM. Forward passes only, many of them, batched.

Both weight each channel :math:`A_k` of the target layer by how the target score reacts when
the input (Score-CAM) or the layer (Ablation-CAM) is perturbed with that channel, under
``torch.inference_mode()``. The :math:`B \cdot C` perturbed passes (C = channels of the layer)
run ``batch_size`` at a time; every target is read from the same passes (``"top3"`` is free).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from eigencam.capture.adapters import runner_for
from eigencam.capture.hooks import preserved_state
from eigencam.capture.reshape import tokens_to_grid
from eigencam.capture.tree import first_tensor, replace_first_tensor
from eigencam.errors import UnsupportedModelError, check
from eigencam.methods.base import Capture, Computed, Explainer, store_args
from eigencam.methods.registry import register
from eigencam.methods.targets import Targets, TargetSpec, logits_of, resolve_targets
from eigencam.methods.weighting import weighted_maps
from eigencam.postprocess.maps import normalize, upsample


def _chunk_scores(targets: Targets, output: Any, images: Tensor) -> Tensor:
    """(n, k) target scores of a chunk of perturbed passes of images ``images`` (n,)."""
    if targets.indices is not None:
        return logits_of(output).gather(1, targets.indices[images].to(images.device))
    return targets.scores(output)


class _PerturbationCAM(Explainer):
    """Channel weights from perturbed forward passes; subclasses implement :meth:`_weights`."""

    layer_requirement = "any spatial layer (B, C, h, w); cost grows with its channel count C"
    class_specific = True

    def __init__(
        self,
        model: nn.Module,
        target_layer: Any = "auto",
        *,
        batch_size: int = 32,
        eigen_smooth: bool = False,
        relu: bool = True,
        reshape_transform: Callable[[Any], Tensor] | None = None,
        eval_mode: bool = True,
    ) -> None:
        store_args(self, locals())

    def _check_options(self) -> None:
        bs = self.batch_size
        check(
            isinstance(bs, int) and not isinstance(bs, bool) and bs >= 1,
            f"batch_size must be a positive integer, got {bs!r}",
        )

    def _compute(self, seen: Capture, inputs: Tensor, targets: TargetSpec) -> Computed:
        batch = inputs.shape[0]
        resolved = resolve_targets(targets, seen.output, batch)
        base = _chunk_scores(resolved, seen.output, torch.arange(batch, device=inputs.device))
        acts = seen.activations.float()
        weights = self._weights(seen, inputs, resolved, base.float())  # (B, C, k)
        raw = weighted_maps(weights.mT, acts, eigen_smooth=self.eigen_smooth)
        return Computed(raw, resolved.indices)

    def _weights(self, seen: Capture, inputs: Tensor, targets: Targets, base: Tensor) -> Tensor:
        raise NotImplementedError

    def _perturbed_scores(
        self, inputs: Tensor, channels: int, k: int, targets: Targets, run: Callable
    ) -> Tensor:
        """(B, C, k) target scores of the B * C perturbed passes, ``batch_size`` at a time.

        ``run(rows)`` runs the model on the perturbed inputs of flat rows ``rows`` (image
        ``row // C``, channel ``row % C``).
        """
        n = inputs.shape[0] * channels
        scores = torch.empty(n, k, device=inputs.device, dtype=torch.float32)
        with torch.inference_mode(), preserved_state(self._check_model(), eval_mode=self.eval_mode):
            for start in range(0, n, self.batch_size):
                rows = torch.arange(start, min(start + self.batch_size, n), device=inputs.device)
                scores[rows] = _chunk_scores(targets, run(rows), rows // channels).float()
        return scores.reshape(inputs.shape[0], channels, k)


@register
class ScoreCAM(_PerturbationCAM):
    r"""Score-CAM (Wang et al., CVPR Workshops 2020): channels weighted by the score of the input
    masked with them.

    Each channel, upsampled and min-max normalised, masks the input; its weight is the softmax
    over channels of the masked input's score (Algorithm 1 of the paper; the baseline score it
    subtracts cancels in the softmax):

    .. math::  H_k = s(\mathrm{Up}(A_k)), \quad w^c = \mathrm{softmax}_k\big(y^c(X \odot H_k)\big),
       \quad L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    Args:
        model, target_layer, reshape_transform, eval_mode: see :class:`~eigencam.methods.Explainer`.
        batch_size: masked images per forward pass.
        eigen_smooth, relu: as :class:`~eigencam.methods.GradCAM`.
    """

    name = "scorecam"
    summary = "Channels weighted by the class score of the input masked with each channel."
    paper = "Wang et al., Score-CAM, CVPR Workshops 2020 (arXiv:1910.01279)"
    cost = "1 + B*C forwards (masked images, batch_size per pass)"

    def _weights(self, seen: Capture, inputs: Tensor, targets: Targets, base: Tensor) -> Tensor:
        runner = runner_for(self._check_model())
        c = seen.activations.shape[1]
        size = tuple(inputs.shape[-2:])
        flat_acts = seen.activations.float().flatten(0, 1)[:, None]  # (B*C, 1, h, w)

        def masked(rows: Tensor) -> Any:
            masks = normalize(upsample(flat_acts[rows], size, extent=seen.extent))
            return runner(inputs[rows // c] * masks.to(inputs.dtype))

        return self._perturbed_scores(inputs, c, base.shape[1], targets, masked).softmax(dim=1)


@register
class AblationCAM(_PerturbationCAM):
    r"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): channels weighted by the score drop when
    they are zeroed at the layer.

    .. math::  w^c_k = \frac{y^c - y^c_{A_k = 0}}{|y^c|}, \qquad
       L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    The paper divides by :math:`y^c`; dividing by :math:`|y^c|` gives the same map when the
    score is positive and does not invert it when it is negative.

    Args: as :class:`ScoreCAM`. A ``reshape_transform`` must be
    :class:`~eigencam.capture.reshape.tokens_to_grid` (channels are the tokens' last dimension).
    """

    name = "ablationcam"
    summary = "Channels weighted by the score drop when each is zeroed at the layer."
    paper = "Desai & Ramaswamy, Ablation-CAM, WACV 2020"
    cost = "1 + B*C forwards (one ablated channel each, batch_size per pass)"

    def _observe(self, inputs: Tensor, targets: TargetSpec) -> Capture:
        captured = self._capture(inputs)
        if captured.transform is not None and not isinstance(captured.transform, tokens_to_grid):
            raise UnsupportedModelError(
                "ablationcam must zero one channel in the layer's own output and can only "
                "invert tokens_to_grid reshape transforms; use scorecam with other transforms"
            )
        return captured

    def _weights(self, seen: Capture, inputs: Tensor, targets: Targets, base: Tensor) -> Tensor:
        runner = runner_for(self._check_model())
        ref = seen.ref
        call = ref.call if ref.call is not None else seen.calls - 1
        c, h, w = seen.activations.shape[1:]

        def ablated(rows: Tensor) -> Any:
            with _ablate(ref.module, call, rows % c, seen.transform, h * w):
                return runner(inputs[rows // c])

        scores = self._perturbed_scores(inputs, c, base.shape[1], targets, ablated)
        return (base[:, None, :] - scores) / base.abs().clamp_min(1e-12)[:, None, :]


@contextmanager
def _ablate(
    module: nn.Module, call: int, channels: Tensor, transform: tokens_to_grid | None, patches: int
) -> Iterator[None]:
    """Zero channel ``channels[i]`` of row i of the module's ``call``-th output in the block:
    dimension 1 of (n, C, h, w), the last one of a channels-last map or of the ``patches`` patch
    tokens (n, N, C) (the prefix tokens are kept)."""
    count = [0]

    def hook(mod: nn.Module, args: Any, output: Any) -> Any:
        index = count[0]
        count[0] += 1
        if index != call:
            return None
        t = first_tensor(output)
        rows = torch.arange(t.shape[0], device=t.device)
        ch = channels.to(t.device)
        keep = torch.ones_like(t)
        if transform is None:
            keep[rows, ch] = 0
        elif transform.channels_last:
            keep[rows, :, :, ch] = 0
        else:
            keep[rows, t.shape[1] - patches :, ch] = 0
        return replace_first_tensor(output, t * keep)

    with module.register_forward_hook(hook):
        yield
