r"""Perturbation CAMs: Score-CAM and Ablation-CAM. Forward passes only, many of them, batched.

Both weight each channel :math:`A_k` of the target layer by how the target score reacts when
the input (Score-CAM) or the layer (Ablation-CAM) is perturbed with that channel; they need no
gradients and run under ``torch.inference_mode()``. The perturbed passes of all images and all
channels are stacked and run in chunks of ``batch_size``; every target class is read from the
same passes, so ``targets="top3"`` costs no more than one target.

Cost: one forward pass of the batch, plus :math:`B \cdot C` forward passes of single images
(C = channels of the layer) grouped ``batch_size`` at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from eigencam.capture.adapters import runner_for
from eigencam.capture.hooks import LayerRef, capture_outputs, first_tensor, preserved_state
from eigencam.capture.reshape import tokens_to_grid
from eigencam.errors import LayerSelectionError, UnsupportedModelError
from eigencam.methods.base import CAMResult, Explainer, as_map, check_inputs, detach_output
from eigencam.methods.gradients import replace_first_tensor
from eigencam.methods.registry import register
from eigencam.methods.targets import Targets, TargetSpec, logits_of, resolve_targets
from eigencam.methods.weighting import reduce_weighted
from eigencam.postprocess.maps import normalize, upsample


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _chunk_scores(targets: Targets, output: Any, images: Tensor) -> Tensor:
    """(n, k) target scores of a chunk of perturbed passes of images ``images`` (n,)."""
    if targets.indices is not None:
        return logits_of(output).gather(1, targets.indices[images].to(images.device))
    scores = targets.scores(output)
    return scores


class _PerturbationCAM(Explainer):
    needs_gradients = False
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
        super().__init__(
            model, target_layer, reshape_transform=reshape_transform, eval_mode=eval_mode
        )
        self.batch_size = batch_size
        self.eigen_smooth = eigen_smooth
        self.relu = relu

    def _result(
        self,
        weights: Tensor,
        acts: Tensor,
        inputs: Tensor,
        layer: LayerRef,
        output: Any,
        targets: Targets,
    ) -> CAMResult:
        """weights (B, C, k), activations (B, C, h, w) -> the result."""
        if self.eigen_smooth:
            weighted = weights.permute(0, 2, 1)[..., None, None] * acts[:, None]
            raw = reduce_weighted(weighted, eigen_smooth=True)
        else:
            raw = torch.einsum("bck,bchw->bkhw", weights, acts)
        return CAMResult(
            maps=self._finish(raw, inputs, relu=self.relu),
            raw=raw,
            layer=layer.label,
            method=self.name,
            output=detach_output(output),
            targets=targets.indices,
            params=MappingProxyType(
                {
                    "batch_size": self.batch_size,
                    "eigen_smooth": self.eigen_smooth,
                    "relu": self.relu,
                }
            ),
        )


@register
class ScoreCAM(_PerturbationCAM):
    r"""Score-CAM (Wang et al., CVPR Workshops 2020): channels weighted by the score of the input
    masked with them.

    Each channel, upsampled to the input size and min-max normalised to [0, 1], masks the
    input; the channel's weight is the softmax over channels of the target score of the
    masked input (Algorithm 1 of the paper; the baseline score it subtracts is the same for
    every channel and cancels in the softmax):

    .. math::  H_k = s(\mathrm{Up}(A_k)), \quad w^c = \mathrm{softmax}_k\big(y^c(X \odot H_k)\big),
       \quad L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    Args:
        model: any ``torch.nn.Module``.
        target_layer: module, dotted name or ``"auto"``.
        batch_size: masked images per forward pass.
        eigen_smooth: first principal component of :math:`w_k A_k` instead of the sum.
        relu: clip negative values of the map before normalising.
        reshape_transform: turns the layer output into (B, C, h, w).
        eval_mode: run the model in eval mode for the call (flags restored after).
    """

    name = "scorecam"
    summary = "Channels weighted by the class score of the input masked with each channel."
    paper = "Wang et al., Score-CAM, CVPR Workshops 2020 (arXiv:1910.01279)"
    layer_requirement = "any spatial layer (B, C, h, w); cost grows with its channel count C"
    cost = "1 + B*C forwards (masked images, batch_size per pass)"

    def __call__(self, inputs: Tensor, targets: TargetSpec = None) -> CAMResult:
        """Explain a batch.

        Args:
            inputs: (B, C, H, W) floating tensor on the model's device; not modified.
            targets: class targets (default: the predicted class), or a callable on the output.

        Returns:
            :class:`CAMResult` with maps (B, k, H, W), raw (B, k, h, w), targets (B, k).
        """
        batch_size = _check_batch_size(self.batch_size)
        model = self._check_model()
        inputs = check_inputs(inputs, model)
        output, acts, layer = self._captured_forward(inputs)
        runner = runner_for(model)
        resolved = resolve_targets(targets, output, inputs.shape[0])
        base = _chunk_scores(resolved, output, torch.arange(inputs.shape[0], device=inputs.device))
        b, c = acts.shape[:2]
        k = base.shape[1]
        size = tuple(inputs.shape[-2:])
        scores = torch.empty(b * c, k, device=inputs.device, dtype=torch.float32)
        flat_acts = acts.float().flatten(0, 1)[:, None]  # (B*C, 1, h, w)
        with torch.inference_mode(), preserved_state(model, eval_mode=self.eval_mode):
            for start in range(0, b * c, batch_size):
                rows = torch.arange(start, min(start + batch_size, b * c), device=inputs.device)
                images = rows // c
                masks = normalize(upsample(flat_acts[rows], size)).to(inputs.dtype)
                out = runner(inputs[images] * masks)
                scores[rows] = _chunk_scores(resolved, out, images).float()
        weights = scores.reshape(b, c, k).softmax(dim=1)
        return self._result(weights, acts.float(), inputs, layer, output, resolved)


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
    layer_requirement = "any spatial layer (B, C, h, w); cost grows with its channel count C"
    cost = "1 + B*C forwards (one ablated channel each, batch_size per pass)"

    def __call__(self, inputs: Tensor, targets: TargetSpec = None) -> CAMResult:
        """Explain a batch (arguments and result as :meth:`ScoreCAM.__call__`)."""
        batch_size = _check_batch_size(self.batch_size)
        model = self._check_model()
        inputs = check_inputs(inputs, model)
        runner, ref, transform = self._resolve_layer(inputs)
        if transform is not None and not isinstance(transform, tokens_to_grid):
            raise UnsupportedModelError(
                "ablationcam must zero one channel in the layer's own output and can only "
                "invert tokens_to_grid reshape transforms; use scorecam with other transforms"
            )
        with (
            torch.inference_mode(),
            preserved_state(model, eval_mode=self.eval_mode),
            capture_outputs([ref]) as store,
        ):
            output = runner(inputs)
        if ref.label not in store:
            raise LayerSelectionError(
                f"target layer {ref.label!r} was not called during the forward pass; pick a "
                "layer that runs, see `eigencam layers`"
            )
        call = ref.call if ref.call is not None else store.calls[ref.label] - 1
        raw_out = first_tensor(store[ref.label])
        acts = as_map(store[ref.label], ref, transform).float()
        resolved = resolve_targets(targets, output, inputs.shape[0])
        base = _chunk_scores(
            resolved, output, torch.arange(inputs.shape[0], device=inputs.device)
        ).float()
        b, c = acts.shape[:2]
        k = base.shape[1]
        prefix = 0
        if transform is not None and not transform.channels_last:
            prefix = raw_out.shape[1] - acts.shape[2] * acts.shape[3]
        scores = torch.empty(b * c, k, device=inputs.device, dtype=torch.float32)
        with torch.inference_mode(), preserved_state(model, eval_mode=self.eval_mode):
            for start in range(0, b * c, batch_size):
                rows = torch.arange(start, min(start + batch_size, b * c), device=inputs.device)
                images, channels = rows // c, rows % c
                with _ablate(ref.module, call, channels, transform, prefix):
                    out = runner(inputs[images])
                scores[rows] = _chunk_scores(resolved, out, images).float()
        ablated = scores.reshape(b, c, k)
        weights = (base[:, None, :] - ablated) / base.abs().clamp_min(1e-12)[:, None, :]
        return self._result(weights, acts, inputs, ref, output, resolved)


@contextmanager
def _ablate(
    module: nn.Module, call: int, channels: Tensor, transform: tokens_to_grid | None, prefix: int
) -> Iterator[None]:
    """Zero channel ``channels[i]`` of row i of the module's ``call``-th output in the block.

    Channels are dimension 1 of a (n, C, h, w) output, the last dimension of tokens (n, N, C)
    (patch tokens only: the first ``prefix`` tokens are kept) or of a channels-last map.
    """
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
            keep[rows, prefix:, ch] = 0
        return replace_first_tensor(output, t * keep)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
