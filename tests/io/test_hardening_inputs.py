"""Issue 15, items 7, 8, 9, 12, 13: hangs on inputs, messages that tell the truth, the pixel
limit, symlinked folders. Every test is bounded in time and uses no network (loopback only)."""

from __future__ import annotations

import builtins
import errno
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from batch_helpers import FAST, TINY
from eigencam.cli.main import main
from eigencam.errors import (
    BatchError,
    ImageReadError,
    InvalidParameterError,
    ModelFileError,
    ModelNotFoundError,
    WeightsError,
)
from eigencam.io import decode_image, expand_inputs, load_image
from eigencam.models import load_model
from eigencam.models.weights import read_state_dict

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def png(path: Path, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 90, np.uint8)).save(path)
    return path


def within(seconds: float, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a daemon thread; fails the test if it takes longer."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as err:  # handed back to the test
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


# 7: a Ray address that answers nothing ------------------------------------------------------


@pytest.mark.filterwarnings("ignore::eigencam.models.RandomWeightsWarning")
def test_ray_connection_times_out_with_one_line_error(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    from eigencam.batch import run_batch
    from eigencam.batch.worker import BatchSpec

    png(tmp_path / "img" / "a.png")
    spec = BatchSpec(model=TINY, **FAST)
    start = time.perf_counter()
    with pytest.raises(BatchError) as info:
        within(
            30,
            run_batch,
            [tmp_path / "img"],
            tmp_path / "out",
            spec,
            engine="ray",
            ray_address="127.0.0.1:1",
            ray_timeout=1.0,
        )
    message = str(info.value)
    assert time.perf_counter() - start < 30
    assert "127.0.0.1:1" in message and "--ray-timeout" in message and "\n" not in message


def test_ray_timeout_is_validated():
    from eigencam.batch.engines import RayEngine

    with pytest.raises(InvalidParameterError, match="ray_timeout"):
        RayEngine(None, "127.0.0.1:1", ray_timeout=0)


def test_cli_ray_timeout_flag(tmp_path, capsys):
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    png(tmp_path / "img" / "a.png")
    argv = ["batch", str(tmp_path / "img"), "--out", str(tmp_path / "out"), "--engine", "ray"]
    argv += ["--ray-address", "127.0.0.1:1", "--ray-timeout", "1", "--quiet"]
    argv += ["--model", TINY, "--input-size", "32", "--threads", "1"]
    code = within(30, main, argv)
    err = capsys.readouterr().err
    assert code == 3 and "127.0.0.1:1" in err and "Traceback" not in err


# 8: a FIFO is not an image -------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="not a regular file"):
        within(10, load_image, fifo)


# 9: messages that tell the truth -------------------------------------------------------------


def _write_package(root: Path, body: str) -> None:
    pkg = root / "hardpkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text(body)


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("import no_such_dependency_xyz\ndef build():\n    pass\n", "no_such_dependency_xyz"),
        ("def build(:\n    pass\n", "SyntaxError"),
    ],
)
def test_module_that_fails_to_import_shows_the_import_error(tmp_path, monkeypatch, body, shown):
    _write_package(tmp_path, body)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("hardpkg", "hardpkg.broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ModelFileError) as info:
        load_model("hardpkg.broken:build")
    assert shown in str(info.value) and "unknown model" not in str(info.value)


def test_file_that_fails_to_run_shows_the_error(tmp_path):
    (tmp_path / "bad.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(ModelFileError, match="boom at import"):
        load_model(f"{tmp_path / 'bad.py'}:build")


def test_file_without_the_factory_says_so(tmp_path):
    (tmp_path / "mine.py").write_text("def build():\n    return None\n")
    with pytest.raises(ModelNotFoundError) as info:
        load_model(f"{tmp_path / 'mine.py'}:buidl")
    message = str(info.value)
    assert "mine.py has no function named 'buidl'" in message
    assert "unknown model" not in message and "build" in message


def test_missing_module_is_still_an_unknown_model():
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        load_model("no_such_package_xyz.sub:build")


def _deny(monkeypatch, target: Path, func_names=("open",)) -> None:
    """Make ``os.open``/``builtins.open``/``os.scandir`` raise PermissionError for ``target``."""
    for module, name in ((os, "open"), (builtins, "open"), (os, "scandir")):
        if name not in func_names:
            continue
        real = getattr(module, name)

        def fake(path, *args, _real=real, **kwargs):
            if isinstance(path, (str, os.PathLike)) and Path(path) == target:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(module, name, fake)


def test_permission_error_is_not_corrupt_data(tmp_path, monkeypatch):
    path = png(tmp_path / "secret.png")
    _deny(monkeypatch, path)
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert "permission denied" in str(info.value) and "corrupt" not in str(info.value)


@pytest.mark.skipif(ROOT, reason="root reads every file")
def test_permission_error_is_not_corrupt_data_chmod(tmp_path):
    path = png(tmp_path / "secret.png")
    path.chmod(0)
    with pytest.raises(ImageReadError, match="permission denied"):
        load_image(path)


def test_unreadable_folder_does_not_hold_no_images(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    png(folder / "a.png")
    _deny(monkeypatch, folder, ("scandir",))
    paths, unmatched = expand_inputs([folder])
    assert paths == []
    assert len(unmatched) == 1 and "permission denied" in unmatched[0][1]
    assert "no images" not in unmatched[0][1]


@pytest.mark.skipif(ROOT, reason="root reads every folder")
def test_unreadable_folder_chmod(tmp_path):
    folder = tmp_path / "locked"
    png(folder / "a.png")
    folder.chmod(0)
    try:
        _, unmatched = expand_inputs([folder])
    finally:
        folder.chmod(0o755)
    assert "permission denied" in unmatched[0][1]


def test_symlink_loop_is_not_no_such_file(tmp_path):
    loop = tmp_path / "loop.png"
    os.symlink(loop.name, loop)
    with pytest.raises(ImageReadError) as info:
        load_image(loop)
    assert "symlink loop" in str(info.value) and "no such file" not in str(info.value)


def test_weights_directory_is_not_a_weights_file(tmp_path):
    with pytest.raises(WeightsError, match="a directory, not a weights file"):
        read_state_dict(tmp_path)


class _Pickled:  # a class torch's weights_only unpickler refuses
    pass


def test_weights_error_gives_no_unsafe_advice_and_no_ansi(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"a": _Pickled()}, path)
    with pytest.raises(WeightsError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "\x1b" not in message and "weights_only=False" not in message
    assert "`False`" not in message and "_Pickled" in message and "\n" not in message


# 12: --max-pixels ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5"])
def test_max_pixels_must_be_positive(tmp_path, capsys, value):
    png(tmp_path / "a.png")
    with pytest.raises(SystemExit) as info:
        main(["explain", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
              "--max-pixels", value])  # fmt: skip
    assert info.value.code == 2 and "--max-pixels" in capsys.readouterr().err


def test_batch_max_pixels_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["batch", str(tmp_path), "--max-pixels", "0"])
    assert info.value.code == 2 and "--max-pixels" in capsys.readouterr().err


def test_max_pixels_is_the_only_guard(tmp_path, monkeypatch):
    # Pillow's own guard refuses images above 2 x MAX_IMAGE_PIXELS; shrink it to test quickly.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    path = png(tmp_path / "big.png", size=64)  # 4096 pixels, far above Pillow's 2 x 10
    assert load_image(path, max_pixels=5000).size == (64, 64)
    assert decode_image(path.read_bytes(), max_pixels=None).size == (64, 64)
    assert Image.MAX_IMAGE_PIXELS == 10  # restored
    with pytest.raises(ImageReadError, match="--max-pixels"):
        load_image(path, max_pixels=100)


def test_max_pixels_api_is_validated(tmp_path):
    path = png(tmp_path / "a.png")
    with pytest.raises(InvalidParameterError, match="max_pixels"):
        load_image(path, max_pixels=0)


# 13: symlinked sub-folders -------------------------------------------------------------------


def test_symlinked_subfolder_is_followed(tmp_path):
    outside = tmp_path / "outside"
    png(outside / "far.png")
    root = tmp_path / "root"
    png(root / "near.png")
    os.symlink(outside, root / "linked", target_is_directory=True)
    paths, unmatched = expand_inputs([root])
    assert sorted(p.name for p in paths) == ["far.png", "near.png"] and unmatched == []


def test_symlink_loops_expand_each_folder_once(tmp_path):
    shared = tmp_path / "shared"
    png(shared / "two.png")
    root = tmp_path / "root"
    png(root / "a" / "one.png")
    os.symlink(root, root / "a" / "up", target_is_directory=True)  # a loop
    os.symlink(shared, root / "a" / "s1", target_is_directory=True)  # shared, reached twice
    os.symlink(shared, root / "s2", target_is_directory=True)
    paths, unmatched = within(20, expand_inputs, [root])
    assert sorted(p.name for p in paths) == ["one.png", "two.png"] and unmatched == []
