"""TorchScript archives (``.pt``/``.pth``/``.ts``/``.torchscript``/``.jit`` files saved with
``torch.jit.save``), run as saved: :class:`eigencam.capture.scripted.ScriptedModel` exposes
their submodules as layers."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eigencam.errors import ModelFileError, check
from eigencam.models.entry import ModelEntry, imagenet_labels

SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


def is_torchscript_archive(path: Path) -> bool:
    """True for a zip archive holding TorchScript code (not a pickled state dict)."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in n for n in archive.namelist())


def entry(spec: str) -> ModelEntry | None:
    """The entry of a TorchScript file; None for other names (``file.pt:factory`` included)."""
    if not spec.lower().endswith(SUFFIXES) or ":" in spec.rsplit("/", 1)[-1]:
        return None
    path = Path(spec)
    if not path.is_file():
        raise ModelFileError(f"{spec}: file not found")
    if not is_torchscript_archive(path):
        raise ModelFileError(
            f"{spec}: not a TorchScript archive (torch.jit.save). For a state dict, name "
            f"the architecture and pass the file as weights: --model resnet50 --weights {spec}"
        )

    def build(**options: Any) -> nn.Module:
        check(not options, f"a TorchScript archive takes no options, got {sorted(options)}")
        try:
            return torch.jit.load(spec, map_location="cpu")
        except RuntimeError as err:
            raise ModelFileError(f"{spec}: cannot load this TorchScript archive ({err})") from err

    return ModelEntry(
        name=spec,
        description=f"TorchScript archive {spec}",
        build=build,
        labels=imagenet_labels,
        pretrained=True,
    )
