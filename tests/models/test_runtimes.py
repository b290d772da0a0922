"""The same model in other runtimes and layouts gives the same map: TorchScript (scripted and
traced), ONNX with onnxruntime, torch.compile, channels_last, fp16/bf16 autocast, CUDA."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torchvision
from torch import nn

from eigencam import EigenCAM, list_layers
from eigencam.capture import ScriptedModel, runner_for
from eigencam.errors import LayerNotFoundError, LayerSelectionError, ModelFileError, ShapeError
from eigencam.models import OnnxModel, export_onnx, load_model
from tiny_models import SharedActivation, TinyCNN

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit / onnx deprecations

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each image's raw map: (B,)."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


# -- TorchScript ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_gives_the_eager_maps(resnet, how):
    x = torch.rand(3, 3, 64, 80)
    scripted = torch.jit.script(resnet) if how == "script" else torch.jit.trace(resnet, x)
    for layer in ("auto", "layer3", "layer4.1.conv2"):
        eager = EigenCAM(resnet, layer)(x)
        ts = EigenCAM(scripted, layer)(x)
        assert ts.layer == eager.layer
        torch.testing.assert_close(ts.raw, eager.raw, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ts.output, eager.output, rtol=1e-4, atol=1e-5)
    assert EigenCAM(scripted, scripted.layer3)(x).layer == "layer3"  # a scripted submodule


def test_torchscript_mode_flags_and_no_hooks(resnet):
    scripted = torch.jit.script(resnet)
    scripted.train()
    scripted.layer1.eval()
    flags = [m.training for m in scripted.modules()]
    x = torch.rand(2, 3, 64, 64)
    r1 = EigenCAM(scripted)(x)
    assert [m.training for m in scripted.modules()] == flags
    r2 = EigenCAM(resnet)(x)  # eval mode was used for the scripted call
    torch.testing.assert_close(r1.raw, r2.raw, rtol=1e-4, atol=1e-4)
    assert hook_count(runner_for(scripted)) == 0


def test_torchscript_call_index_of_a_shared_module():
    model = SharedActivation().eval()
    scripted = torch.jit.script(model)
    x = torch.rand(2, 3, 8, 8)
    for layer in ("auto", "act#0", "act#1"):
        torch.testing.assert_close(
            EigenCAM(scripted, layer)(x).raw, EigenCAM(model, layer)(x).raw, rtol=1e-5, atol=1e-5
        )
    assert EigenCAM(scripted)(x).layer == "act#1"


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # noqa: SIM108  (TorchScript keeps this as an if node)
            y = self.a(x)
        else:
            y = self.b(x)
        return y.mean((2, 3))


def test_torchscript_layer_inside_control_flow_is_reported():
    scripted = torch.jit.script(Branchy().eval())
    with pytest.raises(LayerSelectionError, match="inside control flow"):
        EigenCAM(scripted, "a")(torch.rand(1, 3, 8, 8))
    with pytest.raises(LayerNotFoundError, match="Closest"):
        EigenCAM(scripted, "aa")(torch.rand(1, 3, 8, 8))


def test_torchscript_runner_is_a_mirror(resnet):
    runner = ScriptedModel(torch.jit.script(resnet))
    names = [n for n, _ in runner.named_modules()]
    assert names == [n for n, _ in resnet.named_modules()]
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(runner(x), resnet(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="ScriptModule"):
        ScriptedModel(resnet)


def test_torchscript_archive_by_name(resnet, tmp_path, sample_images):
    from eigencam.cli.main import main

    path = tmp_path / "r18.pt"
    torch.jit.save(torch.jit.script(resnet), str(path))
    loaded = load_model(str(path))
    assert loaded.pretrained and isinstance(loaded.model, torch.jit.ScriptModule)
    code = main(
        ["explain", str(sample_images[0]), "--model", str(path), "--out", str(tmp_path / "o")]
    )
    assert code == 0
    assert json.loads((tmp_path / "o" / "results.json").read_text())["layer"] == "layer4"
    torch.save(resnet.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelFileError, match="--weights"):
        load_model(str(tmp_path / "sd.pt"))


# -- ONNX -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet_onnx(resnet, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "resnet18.onnx"
    return export_onnx(resnet, path, torch.rand(1, 3, 64, 64))


def test_onnx_gives_the_pytorch_map(resnet, resnet_onnx):
    model = OnnxModel(resnet_onnx)
    x = torch.rand(4, 3, 64, 64)
    ref = EigenCAM(resnet)(x)
    got = EigenCAM(model)(x)
    assert got.layer == "layer4/layer4_1/relu_1/Relu_output_0"
    assert bool((correlation(got.raw, ref.raw) >= 0.999).all())
    torch.testing.assert_close(got.output, ref.output, rtol=1e-4, atol=1e-4)
    by_tensor_name = EigenCAM(model, "/layer3/layer3.1/relu_1/Relu_output_0")(x)
    assert by_tensor_name.layer == "layer3/layer3_1/relu_1/Relu_output_0"
    ref3 = EigenCAM(resnet, "layer3")(x)
    assert bool((correlation(by_tensor_name.raw, ref3.raw) >= 0.999).all())
    assert hook_count(model) == 0


def test_onnx_embedded_model_on_real_photos(embedded, sample_images, tmp_path):
    """Real weights, real images: the ONNX map is the PyTorch map (r >= 0.999)."""
    from PIL import Image

    x = embedded.preprocessing.batch([Image.open(p).convert("RGB") for p in sample_images])
    path = export_onnx(embedded.model, tmp_path / "lite0.onnx", x[:1])
    ref = EigenCAM(embedded.model)(x)
    got = EigenCAM(OnnxModel(path))(x)
    assert bool((correlation(got.raw, ref.raw) >= 0.999).all()), correlation(got.raw, ref.raw)
    assert got.output.argmax(1).tolist() == ref.output.argmax(1).tolist()


def test_onnx_layers_and_errors(resnet_onnx, tmp_path):
    model = OnnxModel(resnet_onnx)
    infos = list_layers(model, torch.zeros(1, 3, 64, 64))
    auto = [i for i in infos if i.auto]
    assert [i.name for i in auto] == ["layer4/layer4_1/relu_1/Relu_output_0"]
    assert auto[0].type == "Relu" and auto[0].map_shape == (1, 512, 2, 2)
    assert not any("Pool" in i.type for i in infos)
    assert model.input_size == (64, 64)
    with pytest.raises(ShapeError, match="fixed to 64"):
        model(torch.rand(1, 3, 32, 32))
    with pytest.raises(ModelFileError, match="not found"):
        OnnxModel(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        OnnxModel(tmp_path / "junk.onnx")


def test_onnx_fixed_batch_runs_image_by_image(tmp_path):
    torch.manual_seed(1)
    tiny = TinyCNN().eval()
    path = export_onnx(tiny, tmp_path / "tiny.onnx", torch.rand(1, 3, 16, 16), dynamic_batch=False)
    model = OnnxModel(path)
    assert model.input_shape[0] == 1
    x = torch.rand(3, 3, 16, 16)
    got = EigenCAM(model)(x)
    ref = EigenCAM(tiny)(x)
    assert got.raw.shape == ref.raw.shape == (3, 1, 8, 8)
    assert bool((correlation(got.raw, ref.raw) >= 0.999).all())


def test_onnx_from_the_command_line(resnet_onnx, sample_images, tmp_path, capsys):
    from eigencam.cli.main import main

    assert main(["layers", str(resnet_onnx)]) == 0
    out = capsys.readouterr().out
    assert "*     layer4/layer4_1/relu_1/Relu_output_0" in out and "Relu" in out
    code = main(
        [
            "explain",
            *map(str, sample_images[:2]),
            "--model",
            str(resnet_onnx),
            "--layer",
            "/layer4/layer4.1/relu_1/Relu_output_0",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["layer"] == "layer4/layer4_1/relu_1/Relu_output_0"
    assert results["preprocessing"]["input_size"] == [64, 64]
    assert len(results["images"][0]["top5"]) == 5


# -- torch.compile, layouts, precision ------------------------------------------------------------


def test_torch_compile_is_explained_through_its_original_module(resnet):
    compiled = torch.compile(resnet)
    x = torch.rand(2, 3, 64, 64)
    from torch._dynamo.utils import counters

    frames = sum(counters["frames"].values())
    r = EigenCAM(compiled)(x)
    assert sum(counters["frames"].values()) == frames  # nothing was compiled or recompiled
    assert r.layer == "layer4"
    torch.testing.assert_close(r.raw, EigenCAM(resnet)(x).raw)
    assert hook_count(compiled) == 0


def test_channels_last_gives_the_same_maps(resnet):
    x = torch.rand(2, 3, 64, 64)
    ref = EigenCAM(resnet)(x)
    model = torchvision.models.resnet18()
    model.load_state_dict(resnet.state_dict())
    model = model.eval().to(memory_format=torch.channels_last)
    got = EigenCAM(model)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got.raw, ref.raw, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_on_cpu(resnet):
    x = torch.rand(2, 3, 64, 64)
    ref = EigenCAM(resnet)(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = EigenCAM(resnet)(x)
    assert got.maps.dtype == torch.float32 and torch.isfinite(got.maps).all()
    assert bool((correlation(got.raw, ref.raw) > 0.99).all())


def test_half_precision_model_on_cpu():
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.rand(2, 3, 16, 16)
    ref = EigenCAM(model)(x)
    try:
        got = EigenCAM(model.half())(x.half())
    except RuntimeError as err:  # some CPU builds lack fp16 kernels
        pytest.skip(f"no fp16 convolution on this CPU build: {err}")
    assert got.maps.dtype == torch.float32
    assert bool((correlation(got.raw, ref.raw) > 0.99).all())


@CUDA
def test_cuda_fp32_fp16_and_autocast(resnet):
    x = torch.rand(2, 3, 64, 64)
    ref = EigenCAM(resnet)(x)
    model = torchvision.models.resnet18()
    model.load_state_dict(resnet.state_dict())
    model = model.eval().cuda()
    got = EigenCAM(model)(x.cuda())
    assert got.maps.device.type == "cuda"
    assert bool((correlation(got.raw.cpu(), ref.raw) > 0.999).all())
    with torch.autocast("cuda", dtype=torch.float16):
        amp = EigenCAM(model)(x.cuda())
    assert bool((correlation(amp.raw.cpu(), ref.raw) > 0.99).all())
    half = EigenCAM(model.half())(x.cuda().half())
    assert half.maps.dtype == torch.float32
    assert bool((correlation(half.raw.cpu(), ref.raw) > 0.99).all())


@CUDA
def test_cuda_detector():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = load_model("fasterrcnn_resnet50_fpn", device="cuda", min_size=128, max_size=160)
    x = torch.rand(2, 3, 90, 120)
    r = EigenCAM(det.model)(x.cuda())
    assert r.maps.shape == (2, 1, 90, 120) and r.maps.device.type == "cuda"
    assert r.extent is None or min(r.extent) >= 1
    ref = EigenCAM(det.model.cpu())(x)
    assert bool((correlation(r.raw.cpu(), ref.raw) > 0.999).all())


@CUDA
def test_cuda_yolo():
    pytest.importorskip("ultralytics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yolo = load_model("yolov8n.yaml", device="cuda")
    r = EigenCAM(yolo.model)(torch.rand(2, 3, 128, 160, device="cuda"))
    assert r.maps.shape == (2, 1, 128, 160) and len(yolo.detections(r.output)) == 2
