r"""CNN-Fixations (Mopuri, Garg & Babu, IEEE TIP 2019, arXiv:1708.06670).

Unravels one forward pass: from the target class neuron it follows the most contributing
neurons layer by layer down to the image, using only the recorded activations and the weights
(no gradients). The image positions reached are the *fixations*; the map is their density,
smoothed. The rules (unit :math:`j` contributes :math:`a_j w_{ij}` to unit :math:`i` of a linear
operation; "selected" units form a set per layer):

- **fully connected, fed by a vector** (``fc8 <- fc7``, or a global average pool in ResNets):
  every input unit with a positive contribution to a selected output (the authors' rule; their
  Caffe ResNet code, seeing the pooled blob as a volume, keeps only the most contributing
  channel, at most h x w fixations: we keep the richer set);
- **fully connected, fed by a flattened feature map** (``fc6 <- pool5`` in VGG): each selected
  output selects its most contributing input unit (channel and position) (the authors' rule);
- **convolution**: for a selected unit :math:`(c, y, x)`, the contributions over its receptive
  field are :math:`a_{c',y',x'} w_{c,c',\cdot}`; the input channel with the largest summed
  contribution is chosen (the authors' rule), and within it the position of the largest
  contribution (the authors keep the window position; choosing the largest contribution is
  what their ResNet code does for 3x3 convolutions and keeps strided convolutions precise).
  A BatchNorm directly after a convolution is folded into its weights; grouped and depthwise
  convolutions look only at their group's channels;
- **max pooling**: the winner of the window; **average pooling** (global included): the
  largest contribution of the window, i.e. the largest activation;
- **residual addition**: the branch with the larger value at the unit (the authors' ResNet
  rule); **concatenation**: the input owning the channel; ReLU, BatchNorm (not folded),
  dropout, reshapes and zero padding keep the unit's position.

As in the authors' code, outlying fixations are removed (see ``min_neighbors``, ``radius``) and
the density is blurred with a Gaussian (``sigma``: 5 % of the shorter side, about the authors'
20 px on ILSVRC photos).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eigencam.errors import UnsupportedModelError, check
from eigencam.methods.base import Computed, store_args
from eigencam.methods.graph import GraphExplainer, Op, Traced, TracedPass, conv_weight, unpool
from eigencam.methods.registry import register
from eigencam.methods.targets import TargetSpec
from eigencam.postprocess.maps import gaussian_kernel1d

_CHUNK = 1024  # selected units processed at once (memory: chunk x C_in x k x k floats)


@register
class CNNFixations(GraphExplainer):
    r"""CNN-Fixations: back-tracked fixation points from the class neuron to image space.

    Args:
        model: a network of the operations of :mod:`eigencam.methods.graph` (VGG, AlexNet,
            ResNets, MobileNet-V2, EfficientNet-Lite...).
        target_layer: must be ``"auto"`` (the method works down to the input pixels).
        sigma: standard deviation of the Gaussian blur, as a fraction of the shorter input
            side (0: the raw fixation density, one count per fixated pixel).
        radius: neighbourhood radius for outlier removal, as a fraction of the input diagonal.
        min_neighbors: a fixation is kept when more than this fraction of all fixations of the
            image lie within ``radius`` of it (0 keeps every fixation).
        eval_mode: must be True (BatchNorm is folded with its running statistics).

    Example:
        >>> r = CNNFixations(vgg16)(images)      # maps (B, 1, H, W) at the input resolution
    """

    name = "cnnfixations"
    summary = "Most contributing neurons back-tracked from the class to the image, blurred."
    uses_layer = False
    paper = "Mopuri, Garg & Babu, CNN Fixations, IEEE TIP 2019 (arXiv:1708.06670)"
    layer_requirement = (
        "none (input pixels); conv/linear/BN/ReLU/pooling/residual-add/concat networks"
    )
    cost = "1 forward (all activations kept) + a top-down pass over the layers"

    def __init__(
        self,
        model: nn.Module,
        target_layer: Any = "auto",
        *,
        sigma: float = 0.05,
        radius: float = 0.1,
        min_neighbors: float = 0.05,
        eval_mode: bool = True,
    ) -> None:
        store_args(self, locals())

    def _check_options(self) -> None:
        super()._check_options()
        for name in ("sigma", "radius", "min_neighbors"):
            v = getattr(self, name)
            check(
                not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v < 1,
                f"{name} must be a number in [0, 1), got {v!r}",
            )

    def _compute(self, seen: TracedPass, inputs: Tensor, targets: TargetSpec) -> Computed:
        """The blurred fixation density (B, k, H, W) at the input resolution."""
        fixations = backtrack(seen.traced, seen.targets, self.name)  # (B, k, H, W) bool
        raw = fixation_heatmap(
            fixations.float(), sigma=self.sigma, radius=self.radius, min_fraction=self.min_neighbors
        )
        return Computed(raw, seen.targets)


def backtrack(traced: Traced, indices: Tensor, method: str = "cnnfixations") -> Tensor:
    """Fixations (B, k, H, W) bool at the input, back-tracked from class ``indices`` (B, k)."""
    batch, k = indices.shape
    start = traced.output
    path = traced.ancestors(start)
    traced.check_supported(path, method)
    inputs = [n for n in traced.nodes if traced.ops[n].kind == "input"]
    if len(inputs) != 1:
        raise UnsupportedModelError(f"{method} needs a model with exactly one input tensor")

    def value(node: Any) -> Tensor:
        v = traced.value(node)
        return v if k == 1 else v.repeat_interleave(k, dim=0)

    logits = traced.value(start)
    sel: dict[Any, Tensor] = {
        start: F.one_hot(indices.reshape(-1).to(logits.device), logits.shape[1]).bool()
    }
    image = inputs[0]
    result = None
    for node in reversed(traced.nodes):
        if node not in sel:
            continue
        s = sel.pop(node)
        op = traced.ops[node]
        if op.kind == "input":
            result = s
            continue
        if not bool(s.any()):
            continue
        for src, s_in in _propagate(op, s, value, traced):
            sel[src] = sel[src] | s_in if src in sel else s_in
    h, w = traced.value(image).shape[-2:]
    if result is None:
        return torch.zeros(batch, k, h, w, dtype=torch.bool, device=logits.device)
    return result.any(dim=1).reshape(batch, k, h, w)


def _propagate(op: Op, s: Tensor, value: Any, traced: Traced) -> list[tuple[Any, Tensor]]:
    kind = op.kind
    if kind in ("relu", "bn", "identity"):
        return [(op.inputs[0], s)]
    if kind == "reshape":
        src = op.inputs[0]
        return [(src, s.reshape(s.shape[0], *traced.value(src).shape[1:]))]
    if kind == "pad":
        left, _, top, _ = op.params["pad"]
        src = op.inputs[0]
        hh, ww = traced.value(src).shape[-2:]
        return [(src, s[..., top : top + hh, left : left + ww])]
    if kind == "linear":
        return [(op.inputs[0], _linear(op, s, value, traced))]
    if kind == "conv":
        return [(op.inputs[0], _conv(op, s, value(op.inputs[0])))]
    if kind in ("maxpool", "avgpool"):
        src = op.inputs[0]
        return [(src, unpool(op, value(src), s) > 0)]
    if kind == "add":
        terms = op.inputs
        if len(terms) == 1:
            return [(terms[0], s)]
        vals = torch.stack([value(t) for t in terms])  # (T, R, ...)
        winner = vals.argmax(dim=0)
        return [(t, s & (winner == i)) for i, t in enumerate(terms)]
    if kind == "cat":
        out, start = [], 0
        for t in op.inputs:
            c = traced.value(t).shape[1]
            out.append((t, s[:, start : start + c]))
            start += c
        return out
    return []


def _spatial_source(op: Op, traced: Traced) -> bool:
    """Whether a linear layer's input is a flattened feature map with more than one position."""
    node = op.inputs[0]
    while traced.ops[node].kind in ("reshape", "identity") and traced.ops[node].inputs:
        node = traced.ops[node].inputs[0]
    v = traced.value(node)
    return v.ndim == 4 and v.shape[-1] * v.shape[-2] > 1


def _linear(op: Op, s: Tensor, value: Any, traced: Traced) -> Tensor:
    a = value(op.inputs[0])
    weight = op.params["weight"].detach().to(a.dtype)
    if a.ndim != 2:
        raise UnsupportedModelError(
            f"cnnfixations: linear layer {op.node.name} is applied to a {a.ndim}-D tensor; "
            "only (B, features) inputs are supported"
        )
    if not _spatial_source(op, traced):
        sf = s.to(a.dtype)
        pos = (sf @ (weight > 0).to(a.dtype)) > 0
        neg = (sf @ (weight < 0).to(a.dtype)) > 0
        return ((a > 0) & pos) | ((a < 0) & neg)
    out = torch.zeros_like(a, dtype=torch.bool)
    idx = s.nonzero()
    for i in range(0, idx.shape[0], _CHUNK):
        part = idx[i : i + _CHUNK]
        contrib = a[part[:, 0]] * weight[part[:, 1]]
        out[part[:, 0], contrib.argmax(dim=1)] = True
    return out


def _conv(op: Op, s: Tensor, a: Tensor) -> Tensor:
    weight = conv_weight(op).to(a.dtype)  # (C_out, C_in/g, kh, kw)
    c_out, c_in_g, kh, kw = weight.shape
    groups = op.params["groups"]
    (sy, sx), (py, px), (dy, dx) = op.params["stride"], op.params["padding"], op.params["dilation"]
    height, width = a.shape[-2:]
    # generous bottom/right padding: 'same' convolutions with even kernels pad one more there
    padded = F.pad(a, (px, px + kw * dx, py, py + kh * dy))
    valid = torch.zeros(padded.shape[-2:], dtype=torch.bool, device=a.device)
    valid[py : py + height, px : px + width] = True
    out = torch.zeros_like(a, dtype=torch.bool)
    idx = s.nonzero()  # (M, 4): row, channel, y, x
    ky = torch.arange(kh, device=a.device) * dy
    kx = torch.arange(kw, device=a.device) * dx
    per_group = c_out // groups
    for i in range(0, idx.shape[0], _CHUNK):
        r, c, y, x = idx[i : i + _CHUNK].unbind(1)
        ys = (y * sy)[:, None, None] + ky[None, :, None]  # (m, kh, 1)
        xs = (x * sx)[:, None, None] + kx[None, None, :]  # (m, 1, kw)
        g0 = (c // per_group) * c_in_g  # first input channel of the unit's group
        chans = g0[:, None] + torch.arange(c_in_g, device=a.device)[None]  # (m, c_in_g)
        window = padded[
            r[:, None, None, None], chans[:, :, None, None], ys[:, None], xs[:, None]
        ]  # (m, c_in_g, kh, kw)
        contrib = window * weight[c]
        best = contrib.sum(dim=(2, 3)).argmax(dim=1)  # (m,)
        chosen = contrib[torch.arange(len(best)), best]  # (m, kh, kw)
        inside = valid[ys, xs]  # (m, kh, kw)
        chosen = torch.where(inside, chosen, torch.finfo(chosen.dtype).min)
        pos = chosen.flatten(1).argmax(dim=1)
        py_, px_ = pos // kw, pos % kw
        yy = y * sy + py_ * dy - py
        xx = x * sx + px_ * dx - px
        out[r, g0 + best, yy.clamp(0, height - 1), xx.clamp(0, width - 1)] = True
    return out


def fixation_heatmap(
    fixations: Tensor, *, sigma: float, radius: float, min_fraction: float
) -> Tensor:
    """0/1 fixation masks (B, k, H, W) -> outlier-free, Gaussian-blurred densities (B, k, H, W),
    with ``sigma``, ``radius`` and ``min_fraction`` (``min_neighbors``) as :class:`CNNFixations`."""
    b, k, h, w = fixations.shape
    x = fixations.reshape(b * k, 1, h, w)
    if min_fraction > 0 and radius > 0:
        r = radius * math.hypot(h, w)
        neighbors = _disk_count(x, r)
        total = x.sum(dim=(2, 3), keepdim=True)
        x = x * (neighbors > min_fraction * total).to(x.dtype)
    if sigma > 0:
        x = _gaussian_blur(x, sigma * min(h, w))
    return x.reshape(b, k, h, w)


def _disk_count(x: Tensor, radius: float) -> Tensor:
    """For every pixel, the number of fixations within ``radius`` (FFT convolution)."""
    rad = math.floor(radius)
    yy, xx = torch.meshgrid(
        torch.arange(-rad, rad + 1, device=x.device),
        torch.arange(-rad, rad + 1, device=x.device),
        indexing="ij",
    )
    disk = ((yy.square() + xx.square()) <= radius * radius).to(x.dtype)
    h, w = x.shape[-2:]
    fh, fw = h + 2 * rad, w + 2 * rad
    spec = torch.fft.rfft2(x, s=(fh, fw)) * torch.fft.rfft2(disk, s=(fh, fw))
    full = torch.fft.irfft2(spec, s=(fh, fw))
    return full[..., rad : rad + h, rad : rad + w].round()


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    rad = max(1, math.ceil(3 * sigma))
    g = gaussian_kernel1d(sigma, rad, dtype=x.dtype, device=x.device)
    x = F.conv2d(F.pad(x, (rad, rad, 0, 0)), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, rad, rad)), g.view(1, 1, -1, 1))
