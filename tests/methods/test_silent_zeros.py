"""Layers that would give all-zero or constant maps are refused, naming a layer that works."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eigencam import tokens_to_grid
from eigencam.errors import LayerSelectionError
from eigencam.methods import GradCAM, available_methods, get_method
from tiny_models import TinyCNN

GRADIENT_METHODS = [n for n in available_methods() if get_method(n).needs_gradients]
LAYER_METHODS = [n for n in available_methods() if get_method(n).uses_layer]


@pytest.fixture(scope="module")
def vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=64, depth=3, num_classes=10
    )
    return model.eval(), torch.randn(2, 3, 64, 64)


@pytest.mark.parametrize("name", [n for n in GRADIENT_METHODS if get_method(n).uses_layer])
@pytest.mark.parametrize("reshape", [None, tokens_to_grid(num_prefix_tokens=1)])
def test_the_last_vit_block_is_refused_for_its_norm1(vit, name, reshape):
    model, x = vit
    with pytest.raises(LayerSelectionError, match=r"exactly zero.*class token") as info:
        get_method(name)(model, "blocks.2", reshape_transform=reshape)(x)
    assert "target_layer='blocks.2.norm1'" in str(info.value)
    # the layer it names works: the maps are not empty
    result = get_method(name)(model, "blocks.2.norm1", reshape_transform=reshape)(x)
    assert result.raw.abs().amax() > 0


def test_an_earlier_vit_block_still_works(vit):
    model, x = vit
    result = GradCAM(model, "blocks.1")(x)
    assert result.raw.abs().amax() > 0 and result.layer == "blocks.1"


class CutSide(nn.Module):
    """A conv branch whose output reaches the score only multiplied by 0."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.side = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.fc(f.mean(dim=(2, 3))) + 0 * self.side(f).mean()


def test_a_cut_gradient_path_is_refused_with_an_earlier_layer():
    model = CutSide().eval()
    with pytest.raises(LayerSelectionError, match=r"'side' are exactly zero.*earlier layer"):
        GradCAM(model, "side")(torch.randn(1, 3, 16, 16))
    assert GradCAM(model, "features")(torch.randn(1, 3, 16, 16)).raw.abs().amax() > 0


def test_a_constant_target_score_is_refused():
    model = TinyCNN().eval()
    with pytest.raises(LayerSelectionError, match="exactly zero"):
        GradCAM(model, "features")(torch.randn(1, 3, 16, 16), targets=lambda out: out[:, 0] * 0)


class Squeezed(nn.Module):
    """A spatial stem, then a 1 x 1 block (pool, conv, ReLU) before the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.squeeze = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1), nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.squeeze(self.features(x)).flatten(1))


@pytest.mark.parametrize("name", LAYER_METHODS)
@pytest.mark.parametrize(("model", "layer"), [(TinyCNN, "pool"), (Squeezed, "squeeze")])
def test_a_one_by_one_layer_is_refused_by_every_method(name, model, layer):
    with pytest.raises(LayerSelectionError, match=r"1 x 1.*no spatial information") as info:
        get_method(name)(model().eval(), layer)(torch.randn(2, 3, 16, 16))
    assert "features" in str(info.value)  # names the automatic choice, which works


def test_gradcam_at_blocks_11_of_vit_tiny_names_its_norm1():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    with pytest.raises(LayerSelectionError, match="target_layer='blocks.11.norm1'"):
        GradCAM(model, "blocks.11")(torch.randn(1, 3, 224, 224))
