"""The methods page of the docs, generated from the registry (``eigencam methods --markdown``).

``docs/methods.md`` is this module's output; a test checks that the committed file matches, so
the table cannot drift from the code.
"""

from __future__ import annotations

from eigencam.methods.registry import available_methods, method_info

_INTRO = """\
# Explanation methods

Every method has the same interface as Eigen-CAM:

```python
from eigencam.methods import get_method

explainer = get_method("gradcam")(model, target_layer="auto")   # constructor: no side effects
result = explainer(images, targets="top3")                      # one call, one frozen result
result.maps      # (B, k, H, W) float32 in [0, 1], upsampled to the input size
result.raw       # (B, k, h, w) signed maps at the layer's resolution, before any ReLU
result.targets   # (B, k) int64 class indices (None for class-agnostic methods)
```

`targets` (class-specific methods): `None` / `"predicted"` (default), `"top<k>"`, a class index,
one index per image, `(B, k)` indices, or a callable `score(output) -> (B,)` for models whose
output is not logits (gradient and perturbation methods; CAM, CNN-Fixations and c-MWP need class
indices). From the command line: `eigencam explain IMG --method NAME --target top3` and
`eigencam compare IMG --methods eigencam,gradcam,cnnfixations --targets top3`.

This page is generated from the method registry: `eigencam methods --markdown > docs/methods.md`.
"""

_NOTES = """\
## Conventions

- **Maps.** `raw` is the map before the ReLU of the papers (Grad-CAM's
  `sum_k w_k A_k`, Eigen-CAM's signed projection); `maps` apply the ReLU at the layer's
  resolution when `params["relu"]` is true (the default of the CAM family), then upsample
  bilinearly to the input size and min-max normalise each map: the order of the Grad-CAM paper,
  pytorch-grad-cam, torchcam and Captum, checked map for map at layers with negative cells in
  `tests/test_peers.py`.
- **Targets.** Several targets per image (`"top3"`) cost one forward pass for every method:
  gradient methods run one backward pass per target from the scores down to the layer only;
  perturbation methods read every target from the same perturbed passes; CAM reads the
  classifier's rows.
- **Gradients.** Gradient methods record the autograd graph only above the target layer
  (parameters frozen for the call, the layer's output made a fresh leaf), take
  `torch.autograd.grad` (never `.backward()`: no parameter's `.grad` is touched) and keep nothing
  after the call. They work inside `torch.no_grad()` / `torch.inference_mode()` and on frozen
  models. Saliency needs the graph from the input instead.
- **`eigen_smooth=True`** (CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Score-CAM,
  Ablation-CAM): replace the channel sum of the weighted activations by their first principal
  component (centred, as pytorch-grad-cam's `eigen_smooth`), oriented by Eigen-CAM's sign rule.
- **CAM** finds the classifier by checking, on the batch, that an `nn.Linear` receives the
  global average pool of the target layer (or of its ReLU, as in DenseNets) and produces the
  model output; otherwise it raises `UnsupportedModelError` (use Grad-CAM, equal to CAM up to a
  positive factor where CAM applies).
- **CNN-Fixations and c-MWP** walk the network top-down as a `torch.fx` graph. Supported
  operations: Conv2d (grouped and depthwise included), Linear, BatchNorm2d in eval mode (folded
  into the preceding convolution), ReLU/ReLU6, max and average pooling (adaptive included),
  dropout, flatten/view/reshape, zero padding, residual additions, channel concatenation; that
  covers VGG, AlexNet, ResNets, MobileNet-V2 and the embedded EfficientNet-Lite0. Anything else
  (SiLU, sigmoid gates, attention, LayerNorm...) raises `UnsupportedModelError` naming the
  operations. The exact rules are in the docstrings of `eigencam.methods.fixations` and
  `eigencam.methods.excitation`.
- **c-MWP layer.** The contrastive MWP is read (summed over channels) at `target_layer`, by
  default the last convolutional feature map, like the other CAMs (VGG-16: `features.29`,
  ResNets: `layer4`); the layer must be non-negative (after a ReLU or pooling). The paper
  reads it at intermediate layers; pass e.g. `features.22` (VGG-16 conv4_3) for a finer map.
"""


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


def markdown_table() -> str:
    """The registry as a Markdown table, one row per method, in registration order."""
    header = (
        "| method | paper | gradients | class-specific | layer requirement | cost | "
        "description |\n|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name in available_methods():
        info = method_info(name)
        cells = [
            f"`{name}`",
            str(info["paper"]),
            _yes(info["needs_gradients"]),
            _yes(info["class_specific"]),
            str(info["layer_requirement"]),
            str(info["cost"]),
            str(info["summary"]),
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return header + "\n".join(rows) + "\n"


def methods_page() -> str:
    """The full ``docs/methods.md``."""
    legend = "k = targets per image, B = images, C = channels of the target layer.\n"
    return f"{_INTRO}\n{markdown_table()}\n{legend}\n{_NOTES}"
