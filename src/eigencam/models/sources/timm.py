"""timm models by name: ``timm:NAME`` (``timm:resnet50``, ``timm:vit_small_patch16_224``...),
built with ``pretrained=False`` (random weights, nothing downloaded; ``--weights`` loads yours).
The preprocessing comes from the model's own ``pretrained_cfg``
(``timm.data.resolve_data_config``: metadata, no download); the target layer from its
``feature_info`` (:mod:`eigencam.capture.families`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from eigencam.errors import ModelNotFoundError, check
from eigencam.models.entry import ModelEntry, imagenet_labels, require
from eigencam.models.preprocessing import Preprocessing

PREFIX = "timm:"


def _timm() -> Any:
    require("timm.data", "timm", "timm:NAME models")
    return require("timm", "timm", "timm:NAME models")


def build_timm(name: str, **options: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, **options)``."""
    timm = _timm()
    options.setdefault("pretrained", False)
    check(
        not options["pretrained"],
        "timm models are built without downloading weights; pass weights=FILE (--weights) "
        "with a state dict instead of pretrained=True",
    )
    return timm.create_model(name, **options)


def timm_preprocessing(model: nn.Module) -> Preprocessing:
    """Input size, mean, std and crop of a timm model from its ``pretrained_cfg``."""
    cfg = _timm().data.resolve_data_config({}, model=model)
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    _, h, w = cfg["input_size"]
    if size is not None:  # a ViT built for another image size (img_size=...) accepts only that
        h, w = (int(size[0]), int(size[1]))
    crop = float(cfg.get("crop_pct", 0.875) or 0.875)
    return Preprocessing(
        (int(h), int(w)),
        tuple(float(m) for m in cfg["mean"]),
        tuple(float(s) for s in cfg["std"]),
        resize="stretch",
        crop_fraction=min(1.0, crop),
    )


def entry(spec: str) -> ModelEntry | None:
    """The entry of ``timm:NAME``; None for a name without the prefix."""
    if not spec.startswith(PREFIX):
        return None
    name = spec.removeprefix(PREFIX)
    timm = _timm()
    if not timm.is_model(name):
        raise ModelNotFoundError(spec, [PREFIX + n for n in timm.list_models(f"*{name[:4]}*")])
    return ModelEntry(
        name=spec,
        description=f"timm {name} (random weights unless --weights)",
        build=lambda **options: build_timm(name, **options),
        labels=imagenet_labels,
        configure=lambda model: {"preprocessing": timm_preprocessing(model)},
    )
