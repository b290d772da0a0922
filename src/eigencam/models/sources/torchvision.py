"""torchvision classifiers by name (``resnet50``, ``vgg16``, ``vit_b_16`` or
``torchvision:resnet50``), built with random weights (``weights=None``: nothing is downloaded;
load your own with ``--weights``). The input size is the crop size of the model's default
weights metadata (224 when it has none), or the ``image_size`` a ViT was built for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from eigencam.models.entry import ModelEntry, imagenet_labels
from eigencam.models.preprocessing import Preprocessing

PREFIX = "torchvision:"


def names() -> list[str]:
    """Names of torchvision's classification models."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def build_torchvision(name: str, **options: Any) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, **options)``: random weights."""
    import torchvision.models as tvm

    return tvm.get_model(name, **{"weights": None, **options})


def lookup(name: str, known: Sequence[str], make: Callable[[str], ModelEntry]) -> ModelEntry | None:
    """``make(bare)`` when ``name``, without its ``torchvision:`` prefix, is one of ``known``."""
    bare = name.removeprefix(PREFIX)
    return make(bare) if bare in known else None


def task_entry(name: str, task: str, **fields: Any) -> ModelEntry:
    """The entry of a torchvision detector or segmenter: random weights (backbone included) and
    the class names of its weight metadata (no download)."""
    import torchvision.models as tvm

    what = "detector" if task == "detection" else "segmenter"
    return ModelEntry(
        name=name,
        description=f"torchvision {what} {name} (random weights unless --weights)",
        build=lambda **options: build_torchvision(name, **{"weights_backbone": None, **options}),
        labels=lambda: list(tvm.get_model_weights(name).DEFAULT.meta["categories"]),
        task=task,
        **fields,
    )


def classifier_entry(name: str) -> ModelEntry:
    """The registry entry of a torchvision classifier (random weights, ImageNet names)."""
    import torchvision.models as tvm

    size = 224
    try:
        size = int(tvm.get_model_weights(name).DEFAULT.transforms().crop_size[0])
    except Exception:  # models without weight metadata keep 224
        pass

    def configure(model: nn.Module) -> dict[str, Any]:
        image_size = getattr(model, "image_size", None)  # a ViT built for another size
        if isinstance(image_size, int) and image_size != size:
            return {"preprocessing": Preprocessing((image_size, image_size))}
        return {}

    return ModelEntry(
        name=name,
        description=f"torchvision {name} (random weights unless --weights is given)",
        build=lambda **options: build_torchvision(name, **options),
        preprocessing=Preprocessing((size, size)),
        labels=imagenet_labels,
        configure=configure,
    )


def entry(name: str) -> ModelEntry | None:
    """The entry of a torchvision classifier name, or None."""
    return lookup(name, names(), classifier_entry)
