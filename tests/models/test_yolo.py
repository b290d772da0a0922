"""Ultralytics YOLO: built from yaml offline, explained without training, mode changes or the
network; the YOLO wrapper is never called; the model stays usable with gradients afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from eigencam import EigenCAM
from eigencam.errors import ModelNotFoundError, ShapeError
from eigencam.models import RandomWeightsWarning, load_model
from eigencam.models.sources.yolo import coco80, import_ultralytics, yolo_detections

REPO = Path(__file__).resolve().parents[2]


def quiet_load(name: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return load_model(name, **kw)


@pytest.fixture(scope="module")
def yolo():
    return quiet_load("yolov8n.yaml")


def test_entry(yolo):
    assert type(yolo.model).__name__ == "DetectionModel"
    assert yolo.task == "detection"
    pre = yolo.preprocessing
    assert pre.input_size == (640, 640) and pre.resize == "letterbox"
    assert pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0)
    assert round(pre.fill[0] * 255) == 114
    assert yolo.labels == coco80() and yolo.labels[0] == "person" and len(yolo.labels) == 80
    assert not any(m.training for m in yolo.model.modules())


def test_wrapper_is_never_called_nor_put_in_another_mode(monkeypatch):
    import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.engine.model import Model

    wrapper = YOLO("yolov8n.yaml")
    for m in wrapper.modules():  # a mixed state, set without train()/eval()
        m.training = hash(id(m)) % 2 == 0
    flags = [m.training for m in wrapper.modules()]
    calls = []

    def forbidden(name):
        def method(self, *args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return method

    for name in ("train", "eval", "__call__", "predict", "fuse", "val", "export"):
        monkeypatch.setattr(Model, name, forbidden(f"Model.{name}"))
    monkeypatch.setattr(torch.nn.Module, "train", forbidden("Module.train"))
    monkeypatch.setattr(torch.nn.Module, "eval", forbidden("Module.eval"))
    inner = type(wrapper.model)
    monkeypatch.setattr(inner, "fuse", forbidden("DetectionModel.fuse"))

    x = torch.rand(2, 3, 96, 128)
    result = EigenCAM(wrapper)(x)
    monkeypatch.undo()

    assert calls == []
    assert [m.training for m in wrapper.modules()] == flags
    assert result.layer == "model.18" and result.maps.shape == (2, 1, 96, 128)
    assert isinstance(result.output, tuple) and result.output[0].shape[:2] == (2, 84)


def test_model_still_works_with_gradients_after_explaining(yolo):
    """The head caches anchors as attributes; made under inference_mode they would break
    backward later. Explaining restores them, so a gradient pass on the same shape works."""
    model = yolo.model
    head = model.model[-1]
    anchors_before = head.anchors
    x = torch.rand(1, 3, 64, 64)
    EigenCAM(model)(x)
    assert head.anchors is anchors_before
    leaf = x.clone().requires_grad_()
    out = model(leaf)
    out[0].sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    for p in model.parameters():
        p.grad = None


def test_detections_and_input_checks(yolo):
    x = torch.rand(2, 3, 128, 160)
    r = EigenCAM(yolo.model)(x)
    dets = yolo.detections(r.output)
    assert len(dets) == 2
    loose = yolo_detections(r.output, conf=0.0, max_det=7, image_size=(128, 160))
    assert all(len(d) == 7 for d in loose)
    assert float(loose[0].boxes[:, 2].max()) <= 160 + 1e-3
    assert float(loose[0].boxes[:, 3].max()) <= 128 + 1e-3
    with pytest.raises(ShapeError, match="multiples of 32"):
        EigenCAM(yolo.model)(torch.rand(1, 3, 100, 100))
    with pytest.raises(ShapeError, match="YOLO output"):
        yolo_detections({"not": "yolo"})


def test_other_yolo_generations_and_tasks():
    for name, layer in (("yolo11n.yaml", "model.19"), ("yolov8n-seg.yaml", "model.18")):
        loaded = quiet_load(name)
        r = EigenCAM(loaded.model)(torch.rand(1, 3, 64, 96))
        assert r.layer == layer and r.maps.shape == (1, 1, 64, 96)
        assert len(loaded.detections(r.output)) == 1
    with pytest.raises(ModelNotFoundError, match="yolov8n.yaml"):
        quiet_load("yolov8q.yaml")


def test_nothing_reaches_the_network(tmp_path):
    """In a fresh interpreter with every socket call failing loudly: import, build, explain
    and suppress work, and nothing tried to connect or resolve a name. Reading a bad image
    afterwards still gives eigencam's error, not Ultralytics' attempt to install a plugin."""
    script = textwrap.dedent(
        """
        import socket, sys, json
        attempts = []
        def refuse(name):
            def f(*args, **kwargs):
                attempts.append(name)
                raise OSError(f"network disabled by the test ({name})")
            return f
        socket.getaddrinfo = refuse("getaddrinfo")
        socket.create_connection = refuse("create_connection")
        socket.socket.connect = refuse("connect")
        socket.socket.connect_ex = refuse("connect_ex")
        import warnings
        warnings.simplefilter("ignore")
        import torch
        from PIL import Image
        from eigencam import EigenCAM
        from eigencam.errors import ImageReadError
        from eigencam.io import load_image
        from eigencam.models import load_model
        originals = (Image.open, torch.save)
        loaded = load_model("yolov8n.yaml")
        r = EigenCAM(loaded.model)(torch.rand(1, 3, 64, 64))
        dets = loaded.detections(r.output)
        untouched = (Image.open, torch.save) == originals
        open(sys.argv[1], "w").write("not an image")
        try:
            load_image(sys.argv[1])
            error = None
        except ImageReadError as err:
            error = "ImageReadError"
        print(json.dumps({"attempts": attempts, "layer": r.layer, "n": len(dets),
                          "untouched": untouched, "error": error}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["PYTHONPATH"] = str(REPO / "src")
    env["YOLO_CONFIG_DIR"] = str(tmp_path)  # a fresh settings file: first-run code paths too
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "bad.jpg")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {
        "attempts": [],
        "layer": "model.18",
        "n": 1,
        "untouched": True,  # Ultralytics' import-time patches of Pillow and torch are undone
        "error": "ImageReadError",
    }


def test_explain_cli_on_yolo(sample_images, tmp_path):
    from eigencam.cli.main import main

    code = main(
        [
            "explain",
            *map(str, sample_images[:2]),
            "--model",
            "yolov8n.yaml",
            "--input-size",
            "128",
            "--score-threshold",
            "0.0",
            "--max-boxes",
            "2",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["layer"] == "model.18" and results["task"] == "detection"
    for rec in results["images"]:
        assert len(rec["detections"]) <= 2
        for det in rec["detections"]:
            assert det["name"] in coco80()
