"""The model registry, weights loading and preprocessing; the embedded model's semantics."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from eigencam.errors import ModelNotFoundError, WeightsError
from eigencam.models import (
    Preprocessing,
    RandomWeightsWarning,
    available_models,
    load_model,
    load_weights,
    read_state_dict,
)


def test_embedded_model_classifies_the_samples(embedded, sample_images):
    """Real shipped weights: the cat is a cat, the espresso an espresso."""
    from eigencam.pipeline.explain import top_predictions

    assert embedded.pretrained and embedded.preprocessing.mean == (0.5, 0.5, 0.5)
    images = {p.stem: Image.open(p).convert("RGB") for p in sample_images}
    x = embedded.preprocessing.batch([images["cat"], images["coffee"]])
    with torch.inference_mode():
        preds = top_predictions(embedded.model(x), embedded.labels, 3)
    assert preds[0][0]["label"] in {"Egyptian cat", "tabby", "tiger cat"}
    assert preds[1][0]["label"] == "espresso"
    assert len(embedded.labels) == 1000


def test_torchvision_model_warns_about_random_weights():
    with pytest.warns(RandomWeightsWarning, match="random weights"):
        loaded = load_model("resnet18")
    assert loaded.preprocessing.input_size == (224, 224)
    assert not loaded.pretrained
    assert "resnet18" in available_models() and available_models()[0] == "efficientnet_lite0"


def test_unknown_model_suggests_names():
    with pytest.raises(ModelNotFoundError, match="resnet50") as info:
        load_model("resnet5O")
    assert isinstance(info.value, KeyError)


def test_user_factory_from_file(tmp_path):
    (tmp_path / "mymodel.py").write_text(
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())\n"
        "def not_a_model():\n"
        "    return 3\n"
    )
    with pytest.warns(RandomWeightsWarning):
        loaded = load_model(f"{tmp_path / 'mymodel.py'}:build")
    assert isinstance(loaded.model, torch.nn.Sequential)
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        load_model(f"{tmp_path / 'mymodel.py'}:not_a_model")
    with pytest.raises(ModelNotFoundError):
        load_model(f"{tmp_path / 'mymodel.py'}:missing")
    with pytest.raises(ModelNotFoundError):
        load_model("no_such_package_xyz:build")


def test_weights_roundtrip_and_wrappers(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    sd = model.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "w.pth")
    loaded = read_state_dict(tmp_path / "w.pth")
    assert set(loaded) == set(sd)
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    load_weights(fresh, tmp_path / "w.pth")
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    load_weights(fresh, tmp_path / "w.safetensors")
    assert torch.equal(fresh[0].bias, model[0].bias)


def test_weights_that_do_not_fit(tmp_path):
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), tmp_path / "w.pt")
    with pytest.raises(WeightsError, match="another shape") as info:
        load_weights(torch.nn.Conv2d(3, 4, 3), tmp_path / "w.pt")
    assert "w.pt" in str(info.value)
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(WeightsError, match="missing.*unexpected"):
        load_weights(torch.nn.Conv2d(3, 4, 3), tmp_path / "x.pt")


def test_weights_file_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        read_state_dict(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="weights_only"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="expected a state dict"):
        read_state_dict(tmp_path / "list.pt")


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt", _use_new_zipfile_serialization=True)
    with pytest.raises(WeightsError):
        read_state_dict(tmp_path / "evil.pt")


def test_preprocessing_batch_and_overrides():
    pre = Preprocessing((32, 48), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    img = Image.new("RGB", (100, 50), (255, 0, 0))
    x = pre.batch([img, img])
    assert x.shape == (2, 3, 32, 48)
    assert torch.allclose(x[:, 0], torch.ones(1)) and torch.allclose(x[:, 1], -torch.ones(1))
    assert pre.with_overrides(input_size=64).input_size == (64, 64)
    with pytest.raises(ValueError, match="resize"):
        Preprocessing(resize="zoom")
    with pytest.raises(ValueError, match="std"):
        Preprocessing(std=(1, 0, 1))


def test_center_crop_region():
    pre = Preprocessing((224, 224), resize="center-crop")
    x0, y0, x1, y1 = pre.crop_region(512, 256)
    assert (x1 - x0) == pytest.approx(224.0)  # short side 256 -> resized to 256, crop 224
    assert (y0, y1) == pytest.approx((16.0, 240.0))
    assert (x0 + x1) / 2 == pytest.approx(256)
    assert Preprocessing().crop_region(10, 20) == (0.0, 0.0, 10.0, 20.0)
