"""The model registry across families: names, options, preprocessing, errors; the `models` and
`layers` commands; families and their default layers."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torchvision

from eigencam import EigenCAM, list_layers, tokens_to_grid
from eigencam.capture import family_of
from eigencam.cli.common import parse_model_args, parse_reshape
from eigencam.errors import ModelFileError, ModelNotFoundError
from eigencam.models import RandomWeightsWarning, available_models, load_model
from eigencam.models.preprocessing import Preprocessing


def quiet_load(name, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return load_model(name, **kw)


def test_available_models_cover_the_families():
    names = available_models()
    for name in ("efficientnet_lite0", "resnet50", "vit_b_16", "swin_t", "fasterrcnn_resnet50_fpn",
                 "retinanet_resnet50_fpn", "fcos_resnet50_fpn", "ssd300_vgg16",
                 "deeplabv3_resnet50", "fcn_resnet50"):  # fmt: skip
        assert name in names


def test_options_reach_the_constructor_and_the_preprocessing():
    vit = quiet_load("vit_b_16", image_size=64)
    assert vit.preprocessing.input_size == (64, 64)
    assert vit.model.image_size == 64
    det = quiet_load("retinanet_resnet50_fpn", min_size=128, max_size=160)
    assert det.preprocessing.input_size == (128, 128)
    assert det.preprocessing.fill == pytest.approx((0.485, 0.456, 0.406))
    ssd = quiet_load("ssdlite320_mobilenet_v3_large")
    assert ssd.preprocessing.input_size == (320, 320)
    with pytest.raises(TypeError):
        quiet_load("resnet18", no_such_option=1)


def test_timm_by_name():
    loaded = quiet_load("timm:vit_tiny_patch16_224", img_size=64)
    assert loaded.preprocessing.input_size == (64, 64)
    assert loaded.preprocessing.mean == (0.5, 0.5, 0.5)  # from the model's pretrained_cfg
    assert loaded.labels is not None and len(loaded.labels) == 1000
    assert family_of(loaded.model).layer == "blocks.11.norm1"
    cnn = quiet_load("timm:resnet18")
    assert cnn.preprocessing.input_size == (224, 224)
    with pytest.raises(ModelNotFoundError, match="timm:"):
        quiet_load("timm:resnet_does_not_exist")
    with pytest.raises(ValueError, match="without downloading"):
        quiet_load("timm:resnet18", pretrained=True)


def test_file_models_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(str(tmp_path / "nope.onnx"))
    with pytest.raises(ModelFileError, match="not found"):
        load_model(str(tmp_path / "nope.pt"))
    (tmp_path / "plain.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a TorchScript archive"):
        load_model(str(tmp_path / "plain.pt"))


def test_family_defaults_for_plain_torchvision_and_explicit_layers():
    vit = torchvision.models.vit_b_16(image_size=32).eval()
    x = torch.rand(1, 3, 32, 32)
    # an explicit token layer needs no reshape_transform: the family provides it
    r = EigenCAM(vit, "encoder.layers.encoder_layer_3")(x)
    assert r.raw.shape == (1, 1, 2, 2)
    # a user transform wins over the family
    r = EigenCAM(vit, "encoder.ln", reshape_transform=tokens_to_grid(num_prefix_tokens=1))(x)
    assert r.layer == "encoder.ln"
    swin = torchvision.models.swin_t().eval()
    y = torch.rand(1, 3, 64, 64)
    assert EigenCAM(swin, "features.5")(y).raw.shape == (1, 1, 4, 4)  # channels-last stage
    assert EigenCAM(swin, "features.0.0")(y).raw.shape == (1, 1, 16, 16)  # the patch conv
    assert family_of(torchvision.models.resnet18()) is None


def test_list_layers_proposes_family_layers():
    vit = torchvision.models.vit_b_16(image_size=32).eval()
    infos = list_layers(vit, torch.zeros(1, 3, 32, 32))
    candidates = [i.name for i in infos if i.candidate]
    assert "encoder.layers.encoder_layer_11.ln_1" in candidates
    assert "conv_proj" not in candidates and "heads" not in candidates
    auto = [i for i in infos if i.auto]
    assert [i.name for i in auto] == ["encoder.layers.encoder_layer_11.ln_1"]
    assert auto[0].map_shape == (1, 768, 2, 2)


def test_parse_model_args_and_reshape():
    assert parse_model_args(["image_size=64", "name=abc", "sizes=(1, 2)"]) == {
        "image_size": 64,
        "name": "abc",
        "sizes": (1, 2),
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_model_args(["64"])
    assert parse_reshape(None) is None
    assert parse_reshape("tokens:2") == tokens_to_grid(num_prefix_tokens=2)
    assert parse_reshape("channels-last") == tokens_to_grid(channels_last=True)
    with pytest.raises(ValueError, match="--reshape"):
        parse_reshape("sideways")


def test_preprocessing_letterbox_validation():
    with pytest.raises(ValueError, match="fill"):
        Preprocessing(fill=(2.0, 0.0, 0.0))
    assert Preprocessing().with_overrides(resize="letterbox").resize == "letterbox"


def test_models_command_lists_families(capsys):
    from eigencam.cli.main import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "torchvision detectors" in out and "fasterrcnn_resnet50_fpn" in out
    assert "timm:NAME" in out and "FILE.onnx" in out and "yolov8n.yaml" in out
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = {d["kind"] for d in data}
    assert {"registered", "torchvision detector", "torchvision segmenter", "pattern"} <= kinds


def test_layers_command_for_a_detector_proposes_backbone_levels(capsys):
    from eigencam.cli.main import main

    code = main(
        [
            "layers",
            "fasterrcnn_mobilenet_v3_large_320_fpn",
            "--model-arg",
            "min_size=96",
            "--model-arg",
            "max_size=96",
            "--json",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in rows]
    assert all(n.startswith("backbone") for n in names)
    auto = [r for r in rows if r["auto"]]
    assert [r["name"] for r in auto] == ["backbone"]
    assert auto[0]["levels"] and len(auto[0]["levels"]) >= 2
    assert "backbone.fpn.layer_blocks.0" in names


def test_missing_optional_packages_say_what_to_install(monkeypatch, capsys):
    import sys

    from eigencam.cli.main import main
    from eigencam.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(MissingDependencyError, match=r"eigencam\[timm\]") as info:
        load_model("timm:resnet18")
    assert isinstance(info.value, ImportError)
    assert main(["layers", "timm:resnet18"]) == 2
    assert "pip install" in capsys.readouterr().err
