"""Loading a user's weights file into a model, safely (no pickle code execution)."""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from eigencam.errors import WeightsError
from eigencam.io.images import os_reason

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a ``.pt``/``.pth`` file (``weights_only=True``) or ``.safetensors``.

    Checkpoints that wrap the state dict (``{"state_dict": ...}``, ``{"model": ...}``) and
    ``DataParallel`` prefixes (``module.``) are unwrapped.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: a directory, not a weights file (give the .pt/.pth file)")
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise WeightsError(
                f"{path}: reading .safetensors needs the safetensors package; "
                "pip install 'eigencam[safetensors]'"
            ) from err
        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise WeightsError(f"{path}: not a valid safetensors file ({err})") from err
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except OSError as err:
            raise WeightsError(f"{path}: cannot read the file: {os_reason(err)}") from err
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
            raise WeightsError(
                f"{path}: cannot be read as a state dict with weights_only=True "
                f"({_torch_reason(err)}); save weights with torch.save(model.state_dict(), "
                "path) or as .safetensors"
            ) from err
    return _unwrap(state, path)


def _torch_reason(err: BaseException) -> str:
    """The cause in torch's load error, without its advice (``weights_only=False``, allowlists)
    and without terminal escapes."""
    text = _ANSI.sub("", str(err))
    text = text.split("WeightsUnpickler error:", 1)[-1].split(". Please use")[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    plain = [ln for ln in lines if "weights_only" not in ln and "two options" not in ln]
    return plain[0] if plain else type(err).__name__


def _unwrap(state: object, path: Path) -> dict[str, Tensor]:
    for _ in range(3):
        if isinstance(state, Mapping) and not _is_tensor_dict(state):
            inner = next((state[k] for k in _WRAPPER_KEYS if k in state), None)
            if isinstance(inner, nn.Module):
                state = inner.state_dict()
            elif inner is not None:
                state = inner
        else:
            break
    if not isinstance(state, Mapping) or not _is_tensor_dict(state):
        raise WeightsError(
            f"{path}: expected a state dict (parameter name -> tensor), got {type(state).__name__}"
        )
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _is_tensor_dict(state: Mapping) -> bool:
    return len(state) > 0 and all(isinstance(v, Tensor) for v in state.values())


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a typed error explains any mismatch."""
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} of another shape (e.g. {'; '.join(wrong[:2])})")
        raise WeightsError(
            f"{path}: weights do not fit the model: {', '.join(parts)}. "
            "Check that --model names the architecture these weights were trained for."
        )
    model.load_state_dict(state, strict=True)
    return model
