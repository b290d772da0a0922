r"""Gradients of class scores w.r.t. a layer's activations, and the Grad-CAM family built on them.

How the gradients are taken, recording the graph only above the target layer (the peers record
it from the input or the parameters up, which costs more memory and time, see ``benchmarks/``):

- the forward pass runs on a detached copy of the input with every parameter's
  ``requires_grad`` off (restored exactly afterwards, also on error);
- a forward hook on the target layer, for this call only, replaces its output :math:`A` by
  ``leaf.clone()``, ``leaf = A.detach().requires_grad_()`` (the clone keeps a following
  in-place ReLU legal);
- :math:`\partial y^c / \partial A` comes from ``torch.autograd.grad`` w.r.t. that leaf, one
  backward pass per target (never ``.backward()``: no parameter's ``.grad`` is touched);
- it works inside ``torch.no_grad()`` / ``torch.inference_mode()`` and on frozen models.

``raw`` is the signed map before the ReLU of the papers; ``maps`` apply it (``relu=True``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from eigencam.capture.families import fit_to_output
from eigencam.capture.hooks import LayerRef, preserved_state, submodule
from eigencam.capture.layers import auto_key, known_calls, remember_calls
from eigencam.capture.tree import detach_tree, first_tensor, replace_first_tensor
from eigencam.errors import (
    LayerSelectionError,
    NonFiniteActivationError,
    ShapeError,
    check_choice,
)
from eigencam.methods.base import Computed, Explainer, Observation, as_map, store_args
from eigencam.methods.registry import register
from eigencam.methods.targets import Targets, TargetSpec, resolve_targets
from eigencam.methods.weighting import SIGNS, numpy_svd_signs, weighted_maps


@dataclass(frozen=True, eq=False)
class LayerGradients(Observation):
    """What :meth:`GradientExplainer._observe` records (``output`` and ``layer`` by keyword).

    Attributes:
        activations: (B, C, h, w) of the target layer (the input, for saliency), detached.
        gradients: (B, k, C, h, w) of the k target scores w.r.t. the activations.
        targets: the resolved targets.
    """

    activations: Tensor
    gradients: Tensor
    targets: Targets


@contextmanager
def gradient_mode(model: nn.Module, *, eval_mode: bool = True) -> Iterator[None]:
    """Autograd on (also inside ``no_grad``/``inference_mode``), parameters frozen for the
    block (no graph for the weights); :func:`preserved_state` restores every flag as found."""
    with preserved_state(model, eval_mode=eval_mode):
        for p in model.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            yield


def detached_input(inputs: Tensor) -> Tensor:
    """The input as a tensor autograd may use: a detached view, or a copy of an inference tensor."""
    return inputs.clone() if inputs.is_inference() else inputs.detach()


class LeafCapture(NamedTuple):
    """What :func:`leaf_hook` records: the leaves made (in call order) and the module's calls."""

    leaves: list[Tensor]
    calls: list[int]  # one element, the number of calls so far


@contextmanager
def leaf_hook(ref: LayerRef, expected_calls: int | None = None) -> Iterator[LeafCapture]:
    """Make the target layer's output a fresh autograd leaf, for the forward passes in the block.

    With ``ref.call`` set only that call becomes a leaf; else the last call is the target: with
    ``expected_calls`` (the module's calls in an earlier pass) known, the calls before the last
    pass through, so no graph is recorded from the call of a module the stem shares; otherwise
    every call becomes a leaf. The caller checks ``calls`` against its expectation.
    """
    captured = LeafCapture([], [0])
    first = ref.call if ref.call is not None else max(0, (expected_calls or 1) - 1)

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        count = captured.calls[0]
        captured.calls[0] += 1
        if count < first or (ref.call is not None and count != ref.call):
            return None
        t = first_tensor(output)
        if t is None or not t.is_floating_point():
            return None
        leaf = t.detach().requires_grad_(True)
        captured.leaves.append(leaf)
        return replace_first_tensor(output, leaf.clone())

    with ref.module.register_forward_hook(hook):
        yield captured


def score_tensor(targets: Targets, output: Any, batch: int) -> Tensor:
    """The (B, k) target scores, checked to be one row per image."""
    scores = targets.scores(output)
    if scores.shape[0] != batch:
        raise ShapeError("target scores", f"({batch}, k), one row per image", tuple(scores.shape))
    return scores


class GradientExplainer(Explainer):
    """Base class of the methods that need :math:`\\partial y^c / \\partial A` at a layer."""

    needs_gradients = True
    class_specific = True

    def _observe(self, inputs: Tensor, targets: TargetSpec) -> LayerGradients:
        """One forward pass from the input, k backward passes from the scores to the layer."""
        model = self._check_model()
        runner, ref, transform = self._resolve_layer(inputs)
        batch = inputs.shape[0]
        key = auto_key(inputs, transform)
        expected = known_calls(runner, key, ref).get(ref.label)
        with gradient_mode(model, eval_mode=self.eval_mode):
            with leaf_hook(ref, expected) as captured:
                output = runner(detached_input(inputs))
            if expected is not None and not captured.leaves and captured.calls[0]:
                # The module ran fewer times than in the previous pass, so its last call got
                # no leaf: run again making every call a leaf (dynamic models only).
                with leaf_hook(ref) as captured:
                    output = runner(detached_input(inputs))
            remember_calls(runner, key, ref, captured.calls[0])
            leaf = _target_leaf(captured, ref)
            resolved = resolve_targets(targets, detach_tree(output), batch)
            scores = score_tensor(resolved, output, batch)
            grads = _score_gradients(scores, leaf, ref)
        if self.reshape_transform is None:
            transform = fit_to_output(transform, leaf)
        activations = as_map(leaf.detach(), ref, transform)
        gradients = torch.stack([as_map(g, ref, transform) for g in grads], dim=1)
        if not bool(torch.isfinite(activations).all() & torch.isfinite(gradients).all()):
            raise NonFiniteActivationError(
                f"layer {ref.label!r}: activations or gradients contain NaN or infinity; check "
                "the input for NaN and the model for overflow (fp16 models: try float32)"
            )
        if not bool(gradients.any()):
            raise LayerSelectionError(
                f"the gradients of the target scores w.r.t. layer {ref.label!r} are exactly zero "
                "for every image, so every map would be empty: the scores do not depend on "
                "this layer's output (after a transformer's last block only the class token "
                "reaches the head), or the target scores are constant. "
                + self._zero_gradient_hint(inputs, ref)
            )
        return LayerGradients(
            activations, gradients, resolved, output=detach_tree(output), layer=ref.label
        )

    def _zero_gradient_hint(self, inputs: Tensor, ref: LayerRef) -> str:
        """A layer to use instead of ``ref``, whose gradients are all zero: a pre-norm
        transformer block's first norm (the peers' choice), else the previous numbered block,
        else an earlier layer (the automatic choice may lie past the same cut)."""
        norm = next(
            (n for n in ("norm1", "ln_1") if isinstance(getattr(ref.module, n, None), nn.Module)),
            None,
        )
        if norm is not None and getattr(ref.module, "norm_first", True) is not False:
            return f"Use the block's first norm, target_layer={ref.name + '.' + norm!r}."
        numbered = re.fullmatch(r"(.*?)(\d+)", ref.name)
        if numbered is not None and int(numbered[2]) > 0:
            previous = f"{numbered[1]}{int(numbered[2]) - 1}"
            if submodule(self._resolve_layer(inputs).runner, previous) is not None:
                return f"Use an earlier layer, e.g. the previous block target_layer={previous!r}."
        return (
            "Pick an earlier layer, one whose output the scores depend on (see `eigencam layers`)."
        )


def _target_leaf(captured: LeafCapture, ref: LayerRef) -> Tensor:
    """The leaf made at the target call (the last one made)."""
    if captured.leaves:
        return captured.leaves[-1]
    raise LayerSelectionError(
        f"target layer {ref.label!r} was not called during the forward pass (or returned no "
        "floating tensor); pick a layer that runs, see `eigencam layers`"
    )


def _score_gradients(scores: Tensor, leaf: Tensor, ref: LayerRef) -> list[Tensor]:
    if not scores.requires_grad:
        raise LayerSelectionError(
            f"the target scores do not depend on layer {ref.label!r} through operations "
            "autograd can follow (the model may detach or run under no_grad after it); pick "
            "another layer"
        )
    k = scores.shape[1]
    grads = []
    for j in range(k):
        (g,) = torch.autograd.grad(
            scores[:, j].sum(), leaf, retain_graph=j < k - 1, allow_unused=True
        )
        if g is None:
            raise LayerSelectionError(
                f"the target scores do not depend on layer {ref.label!r}; pick a layer on the "
                "path to the output"
            )
        grads.append(g)
    return grads


class _GradCAMFamily(GradientExplainer):
    """Grad-CAM-style methods (all take :class:`GradCAM`'s arguments): :meth:`_weights` gives
    channel weights (B, k, C) or element-wise ones (B, k, C, h, w) from the gradients; the map
    is :math:`\\sum_c w_c \\odot A_c`."""

    layer_requirement = "any layer on the path to the scores, output (B, C, h, w)"
    cost = "1 forward + k backward passes (from the scores down to the layer only)"

    def __init__(
        self,
        model: nn.Module,
        target_layer: Any = "auto",
        *,
        eigen_smooth: bool = False,
        relu: bool = True,
        reshape_transform: Callable[[Any], Tensor] | None = None,
        eval_mode: bool = True,
    ) -> None:
        store_args(self, locals())

    def _weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        raise NotImplementedError

    def _raw(self, activations: Tensor, gradients: Tensor) -> Tensor:
        weights = self._weights(activations, gradients)
        return weighted_maps(weights, activations, eigen_smooth=self.eigen_smooth)

    def _compute(self, seen: LayerGradients, inputs: Tensor, targets: TargetSpec) -> Computed:
        try:
            raw = self._raw(seen.activations.float(), seen.gradients.float())
        except NonFiniteActivationError as err:
            raise NonFiniteActivationError(f"layer {seen.layer!r}: {err}") from None
        return Computed(raw, seen.targets.indices)


@register
class GradCAM(_GradCAMFamily):
    r"""Grad-CAM (Selvaraju et al., ICCV 2017): channel weights are the spatially averaged
    gradients.

    .. math::  w^c_k = \frac{1}{hw} \sum_{i,j} \frac{\partial y^c}{\partial A_k(i,j)},
       \qquad L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A_k\Big)

    Args:
        model, target_layer, reshape_transform, eval_mode: see :class:`~eigencam.methods.Explainer`.
        eigen_smooth: replace the channel sum by the first principal component of the weighted
            activations :math:`w_k A_k` (pytorch-grad-cam's ``eigen_smooth``).
        relu: clip negative values of the map (the paper's ReLU) before normalising.

    Example:
        >>> result = GradCAM(model)(images, targets="top3")   # 3 maps per image
        >>> result.targets                                    # (B, 3) class indices
    """

    name = "gradcam"
    summary = "Activations weighted by their spatially averaged gradients (class-specific)."
    paper = "Selvaraju et al., Grad-CAM, ICCV 2017 (arXiv:1610.02391)"

    def _weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients.mean(dim=(-2, -1))


@register
class GradCAMPlusPlus(_GradCAMFamily):
    r"""Grad-CAM++ (Chattopadhay et al., WACV 2018): pixel-wise weighted positive gradients.

    With :math:`g = \partial y^c / \partial A_k(i,j)` and the exponential-score approximation
    of the paper (its Eq. 19),

    .. math::  \alpha^{kc}_{ij} = \frac{g^2}{2 g^2 + \sum_{a,b} A_k(a,b)\, g^3}
       = \frac{1}{2 + g \sum_{a,b} A_k(a,b)} \;(g \ne 0),
       \qquad w^c_k = \sum_{i,j} \alpha^{kc}_{ij}\, \mathrm{ReLU}(g)

    computed in the simplified form on the right (no epsilon: exact where the left form
    underflows); :math:`\alpha = 0` where :math:`g = 0`.
    """

    name = "gradcampp"
    summary = "Grad-CAM with pixel-wise weights on positive gradients (better for many objects)."
    paper = "Chattopadhay et al., Grad-CAM++, WACV 2018 (arXiv:1710.11063)"

    def _weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        total = activations.sum(dim=(-2, -1))[:, None, :, None, None]  # (B, 1, C, 1, 1)
        denom = 2.0 + total * gradients
        valid = (gradients != 0) & (denom != 0)
        alpha = torch.where(valid, 1.0 / torch.where(valid, denom, 1.0), 0.0)
        return (alpha * gradients.clamp_min(0)).sum(dim=(-2, -1))


@register
class XGradCAM(_GradCAMFamily):
    r"""XGrad-CAM (Fu et al., BMVC 2020): gradients weighted by the normalised activations.

    .. math::  w^c_k = \sum_{i,j} \frac{A_k(i,j)}{\sum_{a,b} A_k(a,b)}
       \frac{\partial y^c}{\partial A_k(i,j)}

    (:math:`w_k = 0` for a channel whose activations sum to 0.)
    """

    name = "xgradcam"
    summary = "Axiom-based Grad-CAM: gradients weighted by normalised activations."
    paper = "Fu et al., Axiom-based Grad-CAM, BMVC 2020 (arXiv:2008.02312)"

    def _weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        total = activations.sum(dim=(-2, -1))[:, None]  # (B, 1, C)
        num = (gradients * activations[:, None]).sum(dim=(-2, -1))
        return torch.where(total != 0, num / torch.where(total != 0, total, 1.0), 0.0)


@register
class LayerCAM(_GradCAMFamily):
    r"""LayerCAM (Jiang et al., IEEE TIP 2021): element-wise positive gradients times activations.

    .. math::  L^c = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}\big(\tfrac{\partial y^c}
       {\partial A_k}\big) \odot A_k\Big)

    Works at shallow layers too, where Grad-CAM's averaged weights blur.
    """

    name = "layercam"
    summary = "Element-wise positive gradients times activations (usable at shallow layers)."
    paper = "Jiang et al., LayerCAM, IEEE TIP 2021"

    def _weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients.clamp_min(0)


@register
class HiResCAM(_GradCAMFamily):
    r"""HiResCAM (Draelos & Carin, 2020): element-wise gradients times activations.

    .. math::  L^c = \sum_k \frac{\partial y^c}{\partial A_k} \odot A_k

    For a model whose score is a linear function of the layer (GAP + linear head) the map sums
    exactly to the score (up to the bias): a faithful attribution at the layer's resolution.
    """

    name = "hirescam"
    summary = "Element-wise gradients times activations (faithful to the score at the layer)."
    paper = "Draelos & Carin, HiResCAM, arXiv:2011.08891 (2020)"

    def _weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients


@register
class EigenGradCAM(_GradCAMFamily):
    r"""Eigen-Grad-CAM: the first principal component of gradients times activations.

    .. math::  L^c = (G \odot O)\, V_1

    with :math:`G \odot O` the (h w, C) matrix of element-wise products and :math:`V_1` its first
    right singular vector, computed by :func:`eigencam.eigen_cam`. Class-specific, unlike
    Eigen-CAM. ``center=True, sign="numpy"`` reproduces pytorch-grad-cam's EigenGradCAM.

    Args:
        model, target_layer, relu, reshape_transform, eval_mode: as :class:`GradCAM`.
        center: subtract each channel's mean first (PCA, as pytorch-grad-cam's EigenGradCAM);
            default False is Eigen-CAM's uncentered SVD.
        sign: ``mean`` (default): oriented by Eigen-CAM's sign rule, i.e. positively correlated
            with the HiResCAM map; ``numpy``: the arbitrary sign ``numpy.linalg.svd`` returns
            (pytorch-grad-cam's, which can turn the map upside down).
    """

    name = "eigengradcam"
    summary = "First principal component of gradients x activations (class-specific Eigen-CAM)."
    paper = "pytorch-grad-cam's variant of Muhammad & Yeasin, Eigen-CAM, IJCNN 2020"
    eigen_smooth = True

    def __init__(
        self,
        model: nn.Module,
        target_layer: Any = "auto",
        *,
        center: bool = False,
        sign: str = "mean",
        relu: bool = True,
        reshape_transform: Callable[[Any], Tensor] | None = None,
        eval_mode: bool = True,
    ) -> None:
        store_args(self, locals())

    def _check_options(self) -> None:
        check_choice("sign", self.sign, SIGNS)

    def _raw(self, activations: Tensor, gradients: Tensor) -> Tensor:
        maps = weighted_maps(gradients, activations, eigen_smooth=True, center=self.center)
        if self.sign == "numpy":
            b, k = maps.shape[:2]
            products = (gradients * activations[:, None]).flatten(0, 1)
            signs = numpy_svd_signs(products, maps.flatten(0, 1)[:, None], center=self.center)
            maps = maps * signs.reshape(b, k, 1, 1)
        return maps
