"""Eigen-CAM as an explainer: one captured forward pass, then :func:`eigen_cam`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from eigencam.decomposition import SOLVERS, eigen_cam
from eigencam.errors import NonFiniteActivationError
from eigencam.methods.base import CAMResult, Explainer, check_inputs, detach_output
from eigencam.methods.registry import register


@register
class EigenCAM(Explainer):
    """Eigen-CAM (Muhammad & Yeasin, 2020): the projection of a layer's activations on their
    first principal component(s). Gradient-free and class-agnostic: one forward pass, under
    ``torch.inference_mode()``, with one forward hook that lives for the call.

    Args:
        model: any ``torch.nn.Module``.
        target_layer: module, dotted name or ``"auto"`` (the last spatial feature map).
        n_components: number of principal components (maps) per image.
        center: subtract the per-channel mean first (the PCA variant of pytorch-grad-cam);
            default False is the paper's uncentered SVD.
        solver: ``auto``, ``eigh``, ``svd``, ``squaring`` or ``subspace``; all agree with a
            float64 SVD, they differ in speed (see :mod:`eigencam.decomposition.solvers`).
        relu: clip negative projections before normalising (pytorch-grad-cam's convention).
        check_finite: raise :class:`NonFiniteActivationError` when the layer's activations hold
            NaN or infinity. On CUDA this check reads one flag back to the host (a
            synchronisation); with False the call never synchronises and such images get NaN
            maps and NaN explained variance instead.
        reshape_transform: turns the layer output into (B, C, h, w) (transformer tokens).
        eval_mode: run the model in eval mode for the call (flags restored after).

    Example:
        >>> cam = EigenCAM(model)                 # target_layer="auto"
        >>> result = cam(images)                  # images: (B, 3, H, W)
        >>> result.maps.shape                     # (B, 1, H, W), values in [0, 1]
    """

    name = "eigencam"
    summary = (
        "First principal component of the layer's activations (gradient-free, class-agnostic)."
    )
    needs_gradients = False
    class_specific = False

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
        reshape_transform: Any = None,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(
            model, target_layer, reshape_transform=reshape_transform, eval_mode=eval_mode
        )
        self.n_components = n_components
        self.center = center
        self.solver = solver
        self.relu = relu
        self.check_finite = check_finite

    def __call__(self, inputs: Tensor, targets: Any = None) -> CAMResult:
        """Explain a batch.

        Args:
            inputs: (B, C, H, W) floating tensor on the model's device; not modified.
            targets: not used: Eigen-CAM does not depend on a class. Passing one is an error.

        Returns:
            :class:`CAMResult` with maps (B, k, H, W), raw projections (B, k, h, w) and the
            explained-variance ratio of each component (B, k).
        """
        if targets is not None:
            raise TypeError(
                "eigencam is class-agnostic and takes no targets; use a class-specific method "
                "(gradcam, cam, ...) to explain a given class"
            )
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}; got {self.solver!r}")
        inputs = check_inputs(inputs, self._check_model())
        captured = self._capture(inputs)
        layer, activations = captured.layer, captured.activations
        try:
            dec = eigen_cam(
                activations,
                self.n_components,
                center=self.center,
                solver=self.solver,
                check_finite=self.check_finite,
            )
        except NonFiniteActivationError as err:
            raise NonFiniteActivationError(f"layer {layer.label!r}: {err}") from None
        except ValueError as err:
            raise ValueError(f"layer {layer.label!r}: {err}") from None
        maps = self._finish(dec.projections, inputs, relu=self.relu, extent=captured.extent)
        return CAMResult(
            maps=maps,
            raw=dec.projections.float(),
            layer=layer.label,
            method=self.name,
            output=detach_output(captured.output),
            explained_variance_ratio=dec.explained_variance_ratio,
            params=MappingProxyType(
                {
                    "n_components": self.n_components,
                    "center": self.center,
                    "solver": self.solver,
                    "relu": self.relu,
                    "check_finite": self.check_finite,
                }
            ),
            extent=captured.extent,
        )
