"""The Python overlay of a result equals the command line's, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import eigencam
from eigencam import EigenCAM
from eigencam.cli.main import main
from eigencam.errors import InvalidParameterError
from eigencam.io import load_image
from eigencam.viz.result import overlay_on_photo, save_overlay


@pytest.mark.parametrize("resize", ["stretch", "center-crop", "letterbox"])
def test_python_overlay_is_the_clis(tmp_path, embedded, resize):
    photo = eigencam.samples.path("coffee")
    out = tmp_path / "cli"
    argv = ["explain", str(photo), "--out", str(out), "--save", "overlay", "--quiet"]
    assert main([*argv, "--resize", resize]) == 0
    cli = np.asarray(Image.open(out / "coffee.png"))
    pre = embedded.preprocessing.with_overrides(resize=resize)
    result = EigenCAM(embedded.model)(pre.batch([load_image(photo)]))
    mine = save_overlay(result, photo, tmp_path / "py.png", pre)
    assert np.array_equal(np.asarray(Image.open(mine)), cli)
    assert np.array_equal(overlay_on_photo(result, photo, pre), cli)


def test_overlay_arguments_are_checked(embedded):
    photo = eigencam.samples.path("cat")
    result = EigenCAM(embedded.model)(embedded.preprocessing.batch([load_image(photo)]))
    with pytest.raises(InvalidParameterError, match="index 1 is not an image"):
        overlay_on_photo(result, photo, index=1)
    with pytest.raises(InvalidParameterError, match="component 2"):
        overlay_on_photo(result, photo, component=2)
    with pytest.raises(InvalidParameterError, match="uint8"):
        overlay_on_photo(result, np.zeros((4, 4)))
    with pytest.raises(InvalidParameterError, match="the samples are astronaut, cat"):
        eigencam.samples.path("dog")
