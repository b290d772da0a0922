"""Token output at a layer of a channels-last family (pytorch-grad-cam's Swin layer)."""

from __future__ import annotations

import pytest
import torch

from eigencam.capture import list_layers
from eigencam.capture.reshape import parse_reshape
from eigencam.errors import ShapeError
from eigencam.methods import get_method

LAYER = "layers.3.blocks.1.norm2"  # pytorch-grad-cam's Swin tutorial layer: (B, N, C) tokens


@pytest.fixture(scope="module")
def swin():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        embed_dim=16,
        depths=(1, 1, 1, 2),
        num_heads=(1, 1, 1, 1),
        num_classes=10,
    )
    return model.eval(), torch.randn(1, 3, 224, 224)


@pytest.mark.parametrize("name", ["eigencam", "gradcam", "hirescam", "ablationcam"])
def test_the_swin_norm2_layer_gets_the_token_transform(swin, name):
    model, x = swin
    cls = get_method(name)
    result = cls(model, LAYER)(x)
    given = cls(model, LAYER, reshape_transform=parse_reshape("tokens:0"))(x)
    assert result.layer == LAYER and result.raw.shape[-2:] == (7, 7)
    torch.testing.assert_close(result.raw, given.raw)
    assert result.raw.abs().amax() > 0


def test_an_explicit_channels_last_transform_on_tokens_says_what_fits(swin):
    model, x = swin
    with pytest.raises(ShapeError, match=r"\(1, 49, 128\).*outputs tokens.*--reshape tokens:0"):
        get_method("gradcam")(model, LAYER, reshape_transform=parse_reshape("channels-last"))(x)


def test_layers_lists_the_swin_token_layers_as_candidates(swin):
    model, x = swin
    rows = {row.name: row for row in list_layers(model, x)}
    assert rows[LAYER].candidate and rows[LAYER].map_shape == (1, 128, 7, 7)
    assert rows["layers.3.blocks.1"].map_shape == (1, 128, 7, 7)  # channels-last, as before
