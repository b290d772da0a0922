"""Generate ``listing.json`` (what ``eigencam models`` and ``eigencam methods`` print) from the
live registries: ``python -m eigencam.cli.listing_build`` after adding a model or a method."""

from __future__ import annotations

import json
from typing import Any

from eigencam.cli.listing import LISTING
from eigencam.methods import available_methods, method_info
from eigencam.methods.catalog import methods_page
from eigencam.models import registered_models
from eigencam.models.sources.detection import DETECTORS
from eigencam.models.sources.segmentation import SEGMENTERS
from eigencam.models.sources.torchvision import names as torchvision_classifiers

PATTERNS = [
    ("timm:NAME", "any timm model, e.g. timm:resnet50, timm:vit_small_patch16_224"),
    ("NAME.yaml", "an Ultralytics model yaml, e.g. yolov8n.yaml, yolo11s.yaml, or a path"),
    ("FILE.onnx", "an ONNX model run with onnxruntime"),
    ("FILE.pt", "a TorchScript archive (torch.jit.save); .pth/.ts/.torchscript too"),
    ("module:factory", "your own model: package.module:factory or file.py:factory"),
]


def build() -> dict[str, Any]:
    """The listing as the registries give it now."""
    registered = registered_models()
    names = {e.name for e in registered}
    return {
        "models": [
            {
                "name": e.name,
                "pretrained": e.pretrained,
                "input_size": list(e.preprocessing.input_size),
                "description": e.description,
            }
            for e in registered
        ],
        "model_groups": {
            "torchvision classifier": [n for n in torchvision_classifiers() if n not in names],
            "torchvision detector": list(DETECTORS),
            "torchvision segmenter": list(SEGMENTERS),
        },
        "patterns": [list(p) for p in PATTERNS],
        "methods": [method_info(name) for name in available_methods()],
        "methods_page": methods_page(),
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    LISTING.write_text(render(build()), encoding="utf-8")
    print(f"wrote {LISTING}")
