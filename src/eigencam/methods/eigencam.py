"""Eigen-CAM as an explainer: one captured forward pass, then :func:`eigen_cam`.

The defaults are the paper's maths with our sign rule; ``sign``, ``combine``, ``fuse_layers``,
``flip`` (test-time augmentation) and ``smooth`` go beyond it, all off by default
(``sign="numpy", center=True, relu=True`` reproduces pytorch-grad-cam's EigenCAM maps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from eigencam.capture.adapters import runner_for
from eigencam.capture.hooks import LayerRef, capture_outputs
from eigencam.capture.layers import resolve_named
from eigencam.capture.tree import detach_output, map_tensors
from eigencam.decomposition import SOLVERS, eigen_cam
from eigencam.errors import (
    InvalidParameterError,
    LayerSelectionError,
    NonFiniteActivationError,
    UnsupportedModelError,
    check,
    check_choice,
)
from eigencam.methods.base import CAMResult, Computed, Explainer, Observation, as_map, store_args
from eigencam.methods.registry import register
from eigencam.methods.weighting import SIGNS, numpy_svd_signs
from eigencam.postprocess.maps import gaussian_blur, normalize, upsample, upsample_normalize

COMBINES = (None, "sum", "energy")


@dataclass(frozen=True, eq=False, kw_only=True)
class LayerActivations(Observation):
    """``layer_acts``: (layer label, activations (B or 2B with ``flip``, C, h, w)) pairs of the
    target layer, then of each of ``fuse_layers``."""

    layer_acts: Sequence[tuple[str, Tensor]]


@register
class EigenCAM(Explainer):
    """Eigen-CAM (Muhammad & Yeasin, 2020): the projection of a layer's activations on their
    first principal component(s). Gradient-free and class-agnostic: one forward pass, under
    ``torch.inference_mode()``, with forward hooks that live for the call.

    Args:
        model, target_layer, reshape_transform, eval_mode: see :class:`~eigencam.methods.Explainer`.
        n_components: number of principal components (maps) per image.
        center: subtract the per-channel mean first (the PCA variant of pytorch-grad-cam);
            default False is the paper's uncentered SVD.
        solver: ``auto``, ``eigh``, ``svd``, ``squaring`` or ``subspace``; all agree with a
            float64 SVD, they differ in speed (see :mod:`eigencam.decomposition.solvers`).
        relu: clip negative projections to 0 at the layer's resolution, before upsampling and
            normalising (pytorch-grad-cam's convention; ``raw`` keeps the signed projections).
        check_finite: raise :class:`NonFiniteActivationError` for NaN or infinite activations
            (on CUDA a synchronisation); with False such images get NaN maps and NaN explained
            variance instead.
        sign: ``mean``: each component correlates positively with the channel-mean map
            (deterministic); ``numpy``: the arbitrary sign ``numpy.linalg.svd`` returns, as in
            pytorch-grad-cam (a per-image host SVD, to reproduce that library).
        combine: None (one map per component), ``sum`` (:math:`\\sum_{i \\le k} O V_i`) or
            ``energy`` (:math:`\\sqrt{\\sum_{i \\le k} (O V_i)^2}`): one map from the first
            ``n_components`` components.
        fuse_layers: further layers (modules or names) whose Eigen-CAM maps are averaged with
            the target layer's, each normalised to [0, 1] at the input size first.
        flip: average with the map of the horizontally mirrored image (flipped back); the batch
            and its mirror go through the model together.
        smooth: Gaussian blur of the upsampled map, sigma in input pixels (0: none).

    A call returns maps (B, k, H, W), raw projections (B, k, h, w) and explained-variance ratios
    (B, k); k = 1 with ``combine``. With ``flip`` or ``fuse_layers``, ``raw`` is the mean of the
    parts, each normalised to [0, 1], at the finest layer's resolution.

    Example:
        >>> cam = EigenCAM(model)                 # target_layer="auto"
        >>> result = cam(images)                  # images: (B, 3, H, W)
        >>> result.maps.shape                     # (B, 1, H, W), values in [0, 1]
    """

    name = "eigencam"
    summary = (
        "First principal component of the layer's activations (gradient-free, class-agnostic)."
    )
    paper = "Muhammad & Yeasin, Eigen-CAM, IJCNN 2020 (arXiv:2008.00299)"
    layer_requirement = "any spatial layer (B, C, h, w)"
    cost = "1 forward"

    def __init__(
        self,
        model: torch.nn.Module,
        target_layer: Any = "auto",
        *,
        n_components: int = 1,
        center: bool = False,
        solver: str = "auto",
        relu: bool = False,
        check_finite: bool = True,
        sign: str = "mean",
        combine: str | None = None,
        fuse_layers: Sequence[Any] = (),
        flip: bool = False,
        smooth: float = 0.0,
        reshape_transform: Any = None,
        eval_mode: bool = True,
    ) -> None:
        store_args(self, locals())

    def _check_options(self) -> None:
        check_choice("solver", self.solver, SOLVERS)
        check_choice("sign", self.sign, SIGNS)
        check_choice("combine", self.combine, COMBINES)
        check(
            isinstance(self.smooth, (int, float)) and not isinstance(self.smooth, bool),
            f"smooth must be a number (sigma in pixels), got {self.smooth!r}",
        )
        check(self.smooth >= 0, f"smooth must be >= 0 (sigma in input pixels), got {self.smooth}")

    def _fuse_refs(self) -> list[LayerRef]:
        """The layers of ``fuse_layers``, resolved on the module that runs."""
        layers = self.fuse_layers
        if isinstance(layers, (str, torch.nn.Module)):
            layers = [layers]
        runner = runner_for(self._check_model())  # the module that runs (see Explainer._capture)
        refs = [resolve_named(runner, spec) for spec in layers]
        if None in refs:
            raise LayerSelectionError(
                "fuse_layers takes named layers or modules, not 'auto'; see `eigencam layers`"
            )
        return refs

    def _observe(self, inputs: Tensor, targets: Any) -> LayerActivations:
        extra = self._fuse_refs()
        x = torch.cat([inputs, inputs.flip(-1)]) if self.flip else inputs
        with capture_outputs(extra) as store:
            captured = self._capture(x)
        layer_acts = [(captured.layer, captured.activations)]
        for ref in extra:
            if ref.label not in store:
                raise LayerSelectionError(
                    f"fuse layer {ref.label!r} was not called during the forward pass"
                )
            layer_acts.append((ref.label, as_map(store[ref.label], ref, self.reshape_transform)))
        return self._activations(inputs, captured.output, layer_acts, captured.extent)

    def from_activations(
        self,
        inputs: Tensor,
        output: Any,
        layer_acts: Sequence[tuple[str, Tensor]],
        *,
        extent: tuple[float, float] | None = None,
    ) -> CAMResult:
        """The result from activations already captured (several configurations can share one
        forward pass, ``benchmarks/eigencam_variants.py``).

        Args:
            inputs: the (B, C, H, W) batch explained (for the output size).
            output: the model's output (2B rows with ``flip``: the batch, then its mirror).
            layer_acts, extent: as :class:`LayerActivations`, :attr:`CAMResult.extent`.
        """
        seen = self._activations(inputs, detach_output(output), layer_acts, extent)
        return self._explain(inputs, seen, None)

    def _activations(
        self,
        inputs: Tensor,
        output: Any,
        layer_acts: Sequence[tuple[str, Tensor]],
        extent: tuple[float, float] | None,
    ) -> LayerActivations:
        if extent is not None and (self.flip or len(layer_acts) > 1):
            raise UnsupportedModelError(
                "flip and fuse_layers need a model that does not pad its input internally "
                "(this one's target layer extends past the image); use them without"
            )
        if self.flip:  # the model's output for the batch, not for its mirror
            batch = inputs.shape[0]
            output = map_tensors(output, lambda t: t[:batch] if t.ndim >= 1 else t)
        layer = "+".join(label for label, _ in layer_acts)
        return LayerActivations(output=output, layer=layer, extent=extent, layer_acts=layer_acts)

    def _compute(self, seen: LayerActivations, inputs: Tensor, targets: Any) -> Computed:
        batch = inputs.shape[0]
        projected = [self._project(acts, label) for label, acts in seen.layer_acts]
        raws, evr = [proj for proj, _ in projected], projected[0][1][:batch]
        if len(raws) == 1 and not self.flip:
            raw = raws[0]
        else:  # each part normalised at the finest layer's resolution, then averaged
            parts = []
            finest = max((r.shape[-2:] for r in raws), key=lambda s: s[0] * s[1])
            for r in raws:
                r = normalize(upsample(_clip(r.float(), self.relu), tuple(finest)))
                parts.append(r[:batch])
                if self.flip:
                    parts.append(r[batch:].flip(-1))
            raw = torch.stack(parts).mean(0)
        fused = [label for label, _ in seen.layer_acts[1:]]
        params = {"fuse_layers": fused, "smooth": float(self.smooth)}
        return Computed(raw, explained_variance_ratio=evr, params=params)

    def _finish(self, raw: Tensor, inputs: Tensor, extent: tuple[float, float] | None) -> Tensor:
        """The ReLU at the layer's resolution, before upsampling (as pytorch-grad-cam), then the
        optional blur."""
        size = tuple(inputs.shape[-2:])
        maps = upsample_normalize(_clip(raw.float(), self.relu), size, extent=extent)
        return normalize(gaussian_blur(maps, float(self.smooth))) if self.smooth > 0 else maps

    def _project(self, activations: Tensor, label: str) -> tuple[Tensor, Tensor]:
        """Projections (B, k or 1, h, w) and explained-variance ratios (B, k) of one layer."""
        try:
            dec = eigen_cam(
                activations,
                self.n_components,
                center=self.center,
                solver=self.solver,
                check_finite=self.check_finite,
            )
        except NonFiniteActivationError as err:
            raise NonFiniteActivationError(f"layer {label!r}: {err}") from None
        except InvalidParameterError as err:
            raise InvalidParameterError(f"layer {label!r}: {err}") from None
        proj = dec.projections
        if self.sign == "numpy":
            proj = proj * numpy_svd_signs(activations, proj, center=self.center)[:, :, None, None]
        if self.combine == "sum":
            proj = proj.sum(dim=1, keepdim=True)
        elif self.combine == "energy":
            proj = proj.square().sum(dim=1, keepdim=True).sqrt()
        return proj, dec.explained_variance_ratio


def _clip(raw: Tensor, relu: bool) -> Tensor:
    """ReLU at the layer's resolution, before upsampling (as pytorch-grad-cam and Grad-CAM)."""
    return raw.clamp_min(0) if relu else raw
