r"""Contrastive marginal winning probability, c-MWP (Excitation Backprop; Zhang et al., ECCV 2016).

Excitation Backprop models top-down attention as a probabilistic winner-take-all process over
non-negative neurons. The marginal winning probability (MWP) of a neuron is propagated from a
layer's neurons :math:`a_i` to the layer below :math:`a_j` through the excitatory (positive)
weights only:

.. math::  P(a_j) = \sum_i \frac{a_j\, w^+_{ij}}{\sum_{j'} a_{j'}\, w^+_{ij'}}\, P(a_i),
   \qquad w^+ = \max(w, 0),

starting from :math:`P = 1` on the target class unit. The probabilities of a layer sum to 1
(up to units whose excitatory input is zero). The *contrastive* MWP subtracts the MWP of a
dual unit, the target unit with negated classifier weights (its excitatory weights are the
target's inhibitory ones), which cancels what both share and keeps what is discriminative:

.. math::  \text{c-MWP} = \sum_{ch} \big(P_{c}(a) - P_{\bar c}(a)\big)

read at ``target_layer`` (summed over its channels), by default the last convolutional feature
map as for the other CAMs, so the maps are comparable; the paper reads it at an intermediate
layer: pass e.g. VGG-16 ``features.22`` (conv4_3 + ReLU) for finer maps.

How, exactly on any graph of the operations of :mod:`eigencam.methods.graph`: the "neurons"
are the outputs of ReLUs and max pooling (and the target layer); between two neuron layers the
network is affine. Each such block has an *excitatory twin* (negative weights zeroed, biases
dropped) evaluated on the recorded activations, :math:`Z = W^+ a`; then
:math:`P_{\text{below}} = a \odot \nabla_a \langle P / Z, Z \rangle` is one
``torch.autograd.grad`` call per block (exact for residual blocks, whose branches share
:math:`Z`). Max pooling passes :math:`P` to each window's winner. Linear bottlenecks
(MobileNet-V2, EfficientNet) chain the rule through each operation, an approximation of the
paper's, which assumes non-negative inputs to every linear layer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from eigencam.errors import LayerSelectionError, UnsupportedModelError
from eigencam.methods.base import Computed, store_args
from eigencam.methods.graph import GraphExplainer, Traced, TracedPass, conv_weight, unpool
from eigencam.methods.registry import register
from eigencam.methods.targets import TargetSpec

_NEURONS = ("relu", "maxpool")


@register
class ContrastiveMWP(GraphExplainer):
    r"""c-MWP: contrastive Excitation Backprop read at a layer.

    Args:
        model: a network of the operations of :mod:`eigencam.methods.graph` ending in a linear
            classifier (VGG, AlexNet, ResNets, ...).
        target_layer: its output must be non-negative (after a ReLU or pooling).
        relu: clip the negative part (where the dual unit wins) before normalising.
        eval_mode: must be True (BatchNorm is folded with its running statistics).

    Example:
        >>> ContrastiveMWP(vgg16, "features.22")(images, targets="top3")
    """

    name = "cmwp"
    summary = "Contrastive marginal winning probability (Excitation Backprop), top-down."
    paper = "Zhang et al., Top-down Neural Attention by Excitation Backprop, ECCV 2016"
    layer_requirement = (
        "a non-negative layer (after ReLU/pooling); conv/linear/BN/ReLU/pooling/residual "
        "networks ending in nn.Linear"
    )
    cost = "1 forward (activations kept) + 2k top-down passes from the output to the layer"

    def __init__(
        self,
        model: nn.Module,
        target_layer: Any = "auto",
        *,
        relu: bool = True,
        eval_mode: bool = True,
    ) -> None:
        store_args(self, locals())

    def _compute(self, seen: TracedPass, inputs: Tensor, targets: TargetSpec) -> Computed:
        """The c-MWP map :math:`\\sum_{ch} P_c - P_{\\bar c}` at the layer."""
        target_mwp, dual_mwp = marginal_winning_probability(seen.traced, seen.node, seen.targets)
        if target_mwp.ndim != 5:
            shape = tuple(seen.traced.value(seen.node).shape)
            raise LayerSelectionError(
                f"cmwp: layer {seen.layer!r} output has shape {shape}; "
                "a map needs a spatial layer (B, C, h, w)"
            )
        return Computed((target_mwp - dual_mwp).sum(dim=2), seen.targets)


def marginal_winning_probability(
    traced: Traced, target: fx.Node, indices: Tensor, method: str = "cmwp"
) -> tuple[Tensor, Tensor]:
    """The MWP of the class units ``indices`` (B, k) and of their duals at node ``target``:
    two tensors (B, k, *target_shape[1:])."""
    out = traced.output
    region = traced.descendants(target) & traced.ancestors(out)
    if out not in region:
        raise LayerSelectionError(
            f"{method}: the model output does not depend on layer node {target.name!r}"
        )
    traced.check_supported(region - {target}, method)
    head = traced.ops[out]
    if head.kind != "linear":
        raise UnsupportedModelError(
            f"{method} needs the model output to come from a linear classifier (nn.Linear); "
            f"the last operation is {head.label}"
        )
    value = traced.value(target)
    if bool((value < 0).any()):
        raise LayerSelectionError(
            f"{method}: the probabilities live on non-negative neurons, but layer node "
            f"{target.name!r} has negative values; pick a layer after a ReLU or a pooling"
        )
    with torch.inference_mode(False), torch.enable_grad():
        twins = _Twins(traced, target, region)
        head_in = twins(head.inputs[0])
        weight = head.params["weight"].detach().float()
        z_pos = F.linear(head_in, weight.clamp_min(0))
        z_neg = F.linear(head_in, (-weight).clamp_min(0))
        order = [n for n in reversed(traced.nodes) if n in region and n is not out]
        k = indices.shape[1]
        results = []
        for z_top in (z_pos, z_neg):
            per_target = []
            for j in range(k):
                seed = F.one_hot(indices[:, j].to(z_top.device), z_top.shape[1]).float()
                per_target.append(_propagate(twins, z_top, seed, order, target))
            results.append(torch.stack(per_target, dim=1))
    return results[0], results[1]


class _Twins:
    """Excitatory twins of the affine blocks: same operations, W+ weights, no biases."""

    def __init__(self, traced: Traced, target: fx.Node, region: set[fx.Node]) -> None:
        self.traced = traced
        self.target = target
        self.region = region
        self.cache: dict[fx.Node, Tensor] = {}
        self.leaves: dict[fx.Node, Tensor] = {}

    def __call__(self, n: fx.Node) -> Tensor:
        if n in self.cache:
            return self.cache[n]
        op = self.traced.ops[n]
        value = self.traced.value(n)
        if n is self.target or (op.kind in _NEURONS and n in self.region):
            t = value.detach().float().requires_grad_(True)
            self.leaves[n] = t
        elif n not in self.region and op.kind not in _AFFINE:
            t = value.detach().float()  # a neuron (or anything else) below the layer: constant
        else:
            t = self._affine(op, n, value)
        self.cache[n] = t
        return t

    def _affine(self, op: Any, n: fx.Node, value: Tensor) -> Tensor:
        kind, p = op.kind, op.params
        if kind == "conv":
            x, w = self(op.inputs[0]), conv_weight(op).float().clamp_min(0)
            return F.conv2d(x, w, None, p["stride"], p["padding_arg"], p["dilation"], p["groups"])
        if kind == "linear":
            return F.linear(self(op.inputs[0]), p["weight"].detach().float().clamp_min(0))
        if kind == "bn":
            scale = p["scale"].float().clamp_min(0)
            return self(op.inputs[0]) * scale[None, :, None, None]
        if kind == "identity":
            return self(op.inputs[0])
        if kind == "reshape":
            x = self(op.inputs[0])
            return x.reshape(x.shape[0], *value.shape[1:])
        if kind == "pad":
            return F.pad(self(op.inputs[0]), p["pad"])
        if kind == "avgpool":
            x = self(op.inputs[0])
            if "output_size" in p:
                y = F.adaptive_avg_pool2d(x, p["output_size"])
            else:
                y = F.avg_pool2d(
                    x,
                    p["kernel_size"],
                    p["stride"],
                    p["padding"],
                    p["ceil_mode"],
                    p.get("count_include_pad", True),
                    p.get("divisor_override"),
                )
            return y.reshape(y.shape[0], *value.shape[1:])
        if kind == "add":
            terms = [self(t) for t in op.inputs]
            return sum(terms[1:], terms[0])
        if kind == "cat":
            return torch.cat([self(t) for t in op.inputs], dim=1)
        if kind == "input":
            return value.detach().float()
        raise UnsupportedModelError(f"excitation twin: unexpected operation {op.label}")


_AFFINE = ("conv", "linear", "bn", "identity", "reshape", "pad", "avgpool", "add", "cat")


def _propagate(
    twins: _Twins, z_top: Tensor, seed: Tensor, order: list[fx.Node], target: fx.Node
) -> Tensor:
    """Push probabilities ``seed`` on the output units down to ``target``."""
    prob: dict[fx.Node, Tensor] = {}
    _excite(twins, z_top, seed, prob)
    traced = twins.traced
    for n in order:
        if n is target:
            break
        p = prob.pop(n, None)
        if p is None:
            continue
        op = traced.ops[n]
        if op.kind == "relu":
            z = twins(op.inputs[0])
            _excite(twins, z, p, prob)
        elif op.kind == "maxpool":
            src = op.inputs[0]
            if src not in twins.leaves and src not in twins.region and src is not target:
                continue
            prob[src] = prob.get(src, 0) + unpool(op, traced.value(src).float(), p)
    result = prob.get(target)
    if result is None:
        return torch.zeros_like(traced.value(target), dtype=torch.float32)
    return result.detach()


def _excite(twins: _Twins, z: Tensor, p: Tensor, prob: dict[fx.Node, Tensor]) -> None:
    """P of the block's input neurons: a * grad <P / Z, Z(a)>, for every leaf of the block."""
    if not z.requires_grad:
        return  # the block reads no neuron at or above the target layer
    s = torch.where(z > 0, p / torch.where(z > 0, z, 1.0), 0.0)
    nodes = list(twins.leaves)
    grads = torch.autograd.grad(
        z, [twins.leaves[n] for n in nodes], grad_outputs=s, retain_graph=True, allow_unused=True
    )
    for n, g in zip(nodes, grads):
        if g is not None:
            contribution = twins.leaves[n].detach() * g
            prob[n] = prob[n] + contribution if n in prob else contribution
