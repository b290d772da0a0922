r"""CAM (Zhou et al., CVPR 2016): the classifier's weights applied to the last feature maps.

CAM needs a network whose score is a linear function of the globally average-pooled feature
maps: :math:`y^c = \sum_k w^c_k \,\mathrm{GAP}(A_k) + b^c`. The map is then

.. math::  M^c(i, j) = \sum_k w^c_k A_k(i, j), \qquad y^c = \mathrm{mean}_{i,j} M^c + b^c .

The head is found, not assumed: during the one forward pass every ``nn.Linear`` records its
input and output; the head is the one whose input equals :math:`\mathrm{GAP}(A)` (or
:math:`\mathrm{GAP}(\mathrm{ReLU}(A))`, DenseNet's functional ReLU) on this batch and whose
output is the model output. Anything else raises :class:`~eigencam.errors.UnsupportedModelError`
saying why: use Grad-CAM there (equal to CAM up to a positive factor where CAM applies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from eigencam.capture.adapters import runner_for
from eigencam.capture.layers import resolve_named
from eigencam.capture.tree import first_tensor
from eigencam.errors import LayerSelectionError, UnsupportedModelError
from eigencam.methods.base import Computed, Explainer, Observation, store_args
from eigencam.methods.registry import register
from eigencam.methods.targets import TargetSpec, logits_of, resolve_targets
from eigencam.methods.weighting import weighted_maps


@contextmanager
def _linear_calls(linears: list[tuple[str, nn.Linear]]) -> Iterator[list[tuple[str, Tensor, Any]]]:
    """Record (name, input, output) of every call of the given linear layers in the block."""
    calls: list[tuple[str, Tensor, Any]] = []

    def hook(name: str, module: nn.Module, args: Any, output: Any) -> None:
        x = first_tensor(args)
        if x is not None:
            calls.append((name, x, output))

    with ExitStack() as stack:
        for name, module in linears:
            stack.enter_context(module.register_forward_hook(partial(hook, name)))
        yield calls


def _close(a: Tensor, b: Tensor) -> bool:
    if a.shape != b.shape:
        return False
    a, b = a.float(), b.float()
    tol = 1e-2 if a.dtype in (torch.float16, torch.bfloat16) else 1e-4
    scale = float(b.abs().max()) if b.numel() else 0.0
    return bool((a - b).abs().max() <= tol * scale + 1e-6)


@dataclass(frozen=True, eq=False, kw_only=True)
class HeadCapture(Observation):
    """The pooled features, (B, C, h, w) float32 (the layer's maps or their ReLU), and the
    ``nn.Linear`` classifier that reads them, with its dotted name."""

    features: Tensor
    head: nn.Linear
    head_name: str


@register
class CAM(Explainer):
    r"""Class Activation Mapping, :math:`\mathrm{ReLU}(\sum_k w^c_k A_k)` with :math:`w^c` the
    classifier's row: one forward pass, no gradients, any number of targets for free.

    Args:
        model: a network ending in ``GAP(target layer) -> nn.Linear`` (ResNets, DenseNets,
            MobileNet-V2, EfficientNets, ...).
        target_layer, reshape_transform, eval_mode: see :class:`~eigencam.methods.Explainer`
            (``"auto"``, the last spatial feature map, is the one these networks pool).
        fc_layer: the classifier (module or dotted name); default: found automatically.
        eigen_smooth, relu: as :class:`~eigencam.methods.GradCAM`.

    Raises:
        UnsupportedModelError: when no linear layer of the model maps GAP(target layer) to the
            model output.
    """

    name = "cam"
    summary = "Classifier weights applied to the last feature maps (GAP + linear models only)."
    class_specific = True
    callable_targets = False
    paper = "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016"
    layer_requirement = (
        "the layer whose global average pool feeds one nn.Linear producing the output"
    )
    cost = "1 forward"

    def __init__(
        self,
        model: nn.Module,
        target_layer: Any = "auto",
        *,
        fc_layer: str | nn.Module | None = None,
        eigen_smooth: bool = False,
        relu: bool = True,
        reshape_transform: Callable[[Any], Tensor] | None = None,
        eval_mode: bool = True,
    ) -> None:
        store_args(self, locals())

    def _linears(self, model: nn.Module) -> list[tuple[str, nn.Linear]]:
        if self.fc_layer is None:
            return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        ref = resolve_named(model, self.fc_layer)
        if ref is None or not isinstance(ref.module, nn.Linear):
            got = "'auto'" if ref is None else type(ref.module).__name__
            raise LayerSelectionError(
                f"fc_layer must name an nn.Linear of the model, got {got}; leave it unset to "
                "find the classifier automatically"
            )
        return [(ref.name, ref.module)]

    def _observe(self, inputs: Tensor, targets: TargetSpec) -> HeadCapture:
        """The target layer's output and the classifier it feeds, from one forward pass."""
        linears = self._linears(runner_for(self._check_model()))
        with _linear_calls(linears) as calls:
            captured = self._capture(inputs)
        acts = captured.activations.float()
        name, head, feats = self._find_head(
            acts, logits_of(captured.output), calls, captured.layer, linears
        )
        return HeadCapture(
            output=captured.output, layer=captured.layer, features=feats, head=head, head_name=name
        )

    def _compute(self, seen: HeadCapture, inputs: Tensor, targets: TargetSpec) -> Computed:
        indices = resolve_targets(targets, logits_of(seen.output), inputs.shape[0]).indices
        rows = seen.head.weight.detach().float()[indices]  # (B, k, C)
        raw = weighted_maps(rows, seen.features, eigen_smooth=self.eigen_smooth)
        return Computed(raw, indices, params={"fc_layer": seen.head_name})

    @staticmethod
    def _find_head(
        acts: Tensor,
        logits: Tensor,
        calls: list[tuple[str, Tensor, Any]],
        layer: str,
        linears: list[tuple[str, nn.Linear]],
    ) -> tuple[str, nn.Linear, Tensor]:
        """The linear layer fed by GAP(acts) whose output is the model output, and the features
        (acts, or ReLU(acts)) it pools."""
        modules = dict(linears)
        batch, channels = acts.shape[:2]
        pooled = acts.mean(dim=(2, 3))
        relu_acts = acts.clamp_min(0)
        pooled_relu = relu_acts.mean(dim=(2, 3))
        fed_by_gap = None
        for name, x, out in reversed(calls):
            if x.ndim != 2 or tuple(x.shape) != (batch, channels):
                continue
            if _close(x, pooled):
                feats = acts
            elif _close(x, pooled_relu):
                feats = relu_acts
            else:
                continue
            fed_by_gap = name
            if isinstance(out, Tensor) and _close(out, logits):
                return name, modules[name], feats
        if fed_by_gap is not None:
            raise UnsupportedModelError(
                f"cam: linear layer {fed_by_gap!r} receives GAP({layer}) but its output is not "
                "the model output (more layers follow it); CAM needs GAP -> one linear layer -> "
                "output. Use gradcam, which equals CAM up to a positive factor where CAM applies."
            )
        shown = [f"{n} (in_features={m.in_features})" for n, m in linears[-5:]]
        more = f" and {len(linears) - 5} more" if len(linears) > 5 else ""
        seen = (", ".join(shown) + more) or "none"
        raise UnsupportedModelError(
            f"cam: no linear layer of the model receives the global average pool of layer "
            f"{layer!r} ({channels} channels); linear layers: {seen}. CAM (Zhou et al. 2016) "
            "needs GAP(target layer) -> nn.Linear -> output; pick the layer that is pooled "
            "before the classifier, or use gradcam for other architectures."
        )
