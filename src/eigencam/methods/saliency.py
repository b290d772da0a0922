r"""Gradient saliency ("Backprop" in the paper's Table 1; Simonyan et al., ICLR-W 2014).

.. math::  M^c(i, j) = \max_{ch} \left| \frac{\partial y^c}{\partial x_{ch}(i, j)} \right| ,

at the input's resolution: one forward pass from a copy of the input (parameters frozen for the
call), then one ``torch.autograd.grad`` per target w.r.t. that copy.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from eigencam.capture.adapters import runner_for
from eigencam.capture.tree import detach_tree
from eigencam.errors import NonFiniteActivationError, TargetError, check_choice
from eigencam.methods.base import Computed, Explainer, store_args
from eigencam.methods.gradients import LayerGradients, gradient_mode, score_tensor
from eigencam.methods.registry import register
from eigencam.methods.targets import TargetSpec, resolve_targets

REDUCTIONS = ("max", "l2", "sum")


@register
class Saliency(Explainer):
    r"""Vanilla gradient saliency (Simonyan, Vedaldi & Zisserman, 2014).

    Args:
        model: any differentiable ``torch.nn.Module``.
        target_layer: must be ``"auto"`` (the method explains the input pixels).
        reduction: how the colour channels of :math:`|\nabla_x y^c|` are combined: ``"max"``
            (the paper), ``"l2"`` (Euclidean norm) or ``"sum"`` (sum of magnitudes).
        eval_mode: run the model in eval mode for the call (flags restored after).

    Example:
        >>> Saliency(model)(images).maps.shape     # (B, 1, H, W), the input's resolution
    """

    name = "saliency"
    summary = "Magnitude of the score's gradient w.r.t. the input pixels (Backprop)."
    needs_gradients = True
    class_specific = True
    uses_layer = False
    paper = "Simonyan et al., Deep Inside Convolutional Networks, ICLR Workshop 2014"
    layer_requirement = "none (input pixels); the model must be differentiable end to end"
    cost = "1 forward + k backward passes (full network, down to the input)"

    def __init__(
        self,
        model: nn.Module,
        target_layer: Any = "auto",
        *,
        reduction: str = "max",
        eval_mode: bool = True,
    ) -> None:
        store_args(self, locals())

    def _check_options(self) -> None:
        check_choice("reduction", self.reduction, REDUCTIONS)

    def _observe(self, inputs: Tensor, targets: TargetSpec) -> LayerGradients:
        """One forward pass from a copy of the input, k backward passes down to it."""
        model = self._check_model()
        batch = inputs.shape[0]
        with gradient_mode(model, eval_mode=self.eval_mode):
            x = inputs.detach().clone().requires_grad_(True)
            output = runner_for(model)(x)
            resolved = resolve_targets(targets, detach_tree(output), batch)
            scores = score_tensor(resolved, output, batch)
            if not scores.requires_grad:
                raise TargetError(
                    "the target scores do not depend on the input through operations autograd "
                    "can follow (the model detaches or runs under no_grad)"
                )
            k = scores.shape[1]
            grads = [
                torch.autograd.grad(scores[:, j].sum(), x, retain_graph=j < k - 1)[0]
                for j in range(k)
            ]
        gradients = torch.stack(grads, dim=1)
        return LayerGradients(
            x.detach(), gradients, resolved, output=detach_tree(output), layer="input"
        )

    def _compute(self, seen: LayerGradients, inputs: Tensor, targets: TargetSpec) -> Computed:
        g = seen.gradients.float()  # (B, k, C, H, W)
        if self.reduction == "max":
            raw = g.abs().amax(dim=2)
        elif self.reduction == "l2":
            raw = g.square().sum(dim=2).sqrt()
        else:
            raw = g.abs().sum(dim=2)
        if not bool(torch.isfinite(raw).all()):
            raise NonFiniteActivationError(
                "input gradients contain NaN or infinity; check the input for NaN and the model "
                "for overflow"
            )
        return Computed(raw, seen.targets.indices)
