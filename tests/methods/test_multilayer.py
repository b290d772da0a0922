"""Several target layers for one explainer (pytorch-grad-cam's ``target_layers=[a, b]``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from eigencam.cli.main import build_parser, main
from eigencam.errors import InvalidParameterError
from eigencam.methods import GradCAM, HiResCAM, LayerCAM, get_method
from eigencam.postprocess.maps import normalize, upsample
from tiny_models import TinyCNN


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet18().eval(), torch.randn(2, 3, 224, 224)


@pytest.mark.parametrize(
    ("ours", "theirs"), [(GradCAM, "GradCAM"), (HiResCAM, "HiResCAM"), (LayerCAM, "LayerCAM")]
)
def test_two_layers_reproduce_pytorch_grad_cam(resnet, ours, theirs):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = resnet
    result = ours(model, ["layer3", "layer4"])(x, targets=[3, 7])
    with getattr(pgc, theirs)(model, [model.layer3, model.layer4]) as cam:
        expected = cam(x, targets=[ClassifierOutputTarget(3), ClassifierOutputTarget(7)])
    assert result.layer == "layer3+layer4"
    assert result.maps.shape == (2, 1, 224, 224)
    for b in range(2):
        r = np.corrcoef(result.maps[b, 0].numpy().ravel(), expected[b].ravel())[0, 1]
        assert r >= 0.999, (theirs, b, r)


def test_raw_is_the_mean_of_the_clipped_normalised_layers_at_the_finest_resolution(resnet):
    model, x = resnet
    both = GradCAM(model, ("layer3", "layer4"))(x, targets=5)
    l3, l4 = (GradCAM(model, name)(x, targets=5) for name in ("layer3", "layer4"))
    assert both.raw.shape == l3.raw.shape == (2, 1, 14, 14)
    parts = [normalize(upsample(r.raw.clamp_min(0), (14, 14))) for r in (l3, l4)]
    torch.testing.assert_close(both.raw, torch.stack(parts).mean(0))
    torch.testing.assert_close(both.maps, normalize((l3.maps + l4.maps) / 2))
    assert torch.equal(both.targets, l3.targets)


def test_a_one_element_list_is_that_layer(resnet):
    model, x = resnet
    one, listed = GradCAM(model, "layer4")(x[:1]), GradCAM(model, ["layer4"])(x[:1])
    assert listed.layer == one.layer == "layer4"
    torch.testing.assert_close(listed.maps, one.maps)


def test_an_empty_list_is_refused():
    with pytest.raises(InvalidParameterError, match="empty list"):
        GradCAM(TinyCNN().eval(), [])(torch.randn(1, 3, 16, 16))


@pytest.mark.parametrize(
    "name",
    [
        "gradcam",
        "gradcampp",
        "xgradcam",
        "layercam",
        "hirescam",
        "eigengradcam",
        "scorecam",
        "ablationcam",
        "cmwp",
        "eigencam",
        "cam",
    ],
)
def test_every_layer_method_takes_a_list(name):
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.randn(2, 3, 16, 16)
    # CAM needs layers whose average pool feeds the classifier: the block and its last module.
    layers = ["features.4", "features"] if name == "cam" else ["features.2", "features"]
    cls = get_method(name)
    result = cls(model, layers)(x)
    singles = [cls(model, layer)(x) for layer in layers]
    assert result.layer == "+".join(layers)
    assert result.maps.shape == singles[0].maps.shape
    expected = normalize(torch.stack([s.maps for s in singles]).mean(0))
    torch.testing.assert_close(result.maps, expected)


def test_a_pixel_method_refuses_a_list():
    with pytest.raises(InvalidParameterError, match="takes no target_layer"):
        get_method("saliency")(TinyCNN().eval(), ["features"])(torch.randn(1, 3, 16, 16))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], None),
        (["--layer", "layer4"], "layer4"),
        (["--layer", "layer3,layer4"], ["layer3", "layer4"]),
        (["--layer", "layer3", "--layer", "layer4"], ["layer3", "layer4"]),
        (["--layer", "layer2,layer3", "--layer", "layer4"], ["layer2", "layer3", "layer4"]),
    ],
)
@pytest.mark.parametrize("command", ["explain", "compare"])
def test_layer_flag_takes_one_name_or_several(command, argv, expected):
    args = build_parser(command).parse_args([command, "x.jpg", *argv])
    assert args.layer == expected


def test_explain_cli_averages_two_layers(tmp_path, capsys, sample_images):
    cat = next(p for p in sample_images if p.stem == "cat")
    argv = ["explain", str(cat), "--method", "gradcam", "--out", str(tmp_path)]
    code = main([*argv, "--layer", "_blocks.15,_bn1"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "results.json").read_text())["images"][0]
    assert record["layer"] == "_blocks.15+_bn1"
