"""Reading images (formats, orientation, bad files), expanding inputs, writing JSON and PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from eigencam.errors import ImageReadError, InvalidParameterError
from eigencam.io import decode_image, expand_inputs, load_image, write_json
from eigencam.io.outputs import UniqueStems
from eigencam.io.png import encode_png, write_png


def rgb_array(h=20, w=30):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "ext,fmt",
    [(".jpg", "JPEG"), (".png", "PNG"), (".webp", "WEBP"), (".bmp", "BMP"), (".tif", "TIFF")],
)
def test_formats_load_as_rgb(tmp_path, ext, fmt):
    path = tmp_path / f"img{ext}"
    Image.fromarray(rgb_array()).save(path, format=fmt)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (30, 20)


def test_grayscale_and_16bit(tmp_path):
    Image.fromarray(np.full((8, 9), 100, np.uint8), mode="L").save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.mode == "RGB" and np.asarray(img)[0, 0].tolist() == [100, 100, 100]
    Image.fromarray(np.full((8, 9), 65535, np.uint16)).save(tmp_path / "g16.png")
    img16 = load_image(tmp_path / "g16.png")
    assert np.asarray(img16)[0, 0].tolist() == [255, 255, 255]


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 200  # red, fully transparent on the left half
    arr[:, 2:, 3] = 255
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_image(tmp_path / "a.png"))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 3].tolist() == [200, 0, 0]


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(rgb_array(10, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "r.jpg").size == (10, 40)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file") as info:
        load_image(tmp_path / "nope.jpg")
    assert isinstance(info.value, ValueError) and info.value.path.endswith("nope.jpg")


def test_not_an_image(tmp_path):
    (tmp_path / "t.jpg").write_text("hello")
    with pytest.raises(ImageReadError, match="not an image"):
        load_image(tmp_path / "t.jpg")


def test_truncated_image(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(rgb_array(200, 200)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        load_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(path)  # compresses to a few kB
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageReadError, match="decompression-bomb"):
        load_image(path, max_pixels=1_000_000)
    assert load_image(path, max_pixels=None).size == (3000, 3000)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageReadError, match="directory"):
        load_image(tmp_path)


def test_expand_inputs(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["b.jpg", "a.PNG", "sub/c.webp", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    paths, unmatched = expand_inputs([str(tmp_path)])
    assert [p.name for p in paths] == ["a.PNG", "b.jpg", "c.webp"]
    paths, unmatched = expand_inputs(
        [str(tmp_path / "*.jpg"), str(tmp_path / "b.jpg"), str(tmp_path / "*.gif")]
    )
    assert [p.name for p in paths] == ["b.jpg"]  # no duplicates
    assert unmatched == [(str(tmp_path / "*.gif"), "pattern matched no files")]
    paths, _ = expand_inputs([str(tmp_path / "missing.jpg")])  # kept: reading reports it
    assert [p.name for p in paths] == ["missing.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert expand_inputs([str(empty)])[1][0][1].startswith("folder holds no images")


def test_unique_stems():
    stems = UniqueStems()
    assert [stems(p) for p in ["a/x.jpg", "b/x.png", "c/X.jpg", "y.jpg"]] == [
        "x",
        "x-2",
        "X-3",
        "y",
    ]


def test_atomic_json_leaves_no_temp_files(tmp_path):
    write_json(tmp_path / "r.json", {"a": np.float32(1.5), "b": np.arange(2)})
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert (tmp_path / "r.json").stat().st_mode & 0o044  # readable by others (umask permitting)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (5, 1, 3), (37, 53, 3), (20, 31)])
def test_png_writer_round_trips_exactly(tmp_path, shape):
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)  # row differences wrap mod 256
    path = write_png(tmp_path / "x.png", image)
    with Image.open(path) as got:
        assert got.mode == ("RGB" if len(shape) == 3 else "L")
        np.testing.assert_array_equal(np.asarray(got), image)
    smooth = np.broadcast_to(np.arange(64, dtype=np.uint8)[:, None, None], (64, 80, 3))
    write_png(tmp_path / "s.png", smooth)  # a non-contiguous view
    with Image.open(tmp_path / "s.png") as got:
        np.testing.assert_array_equal(np.asarray(got), smooth)
    assert (tmp_path / "s.png").stat().st_size < smooth.nbytes / 20  # the Up filter pays off


def test_png_writer_rejects_what_png_cannot_hold(tmp_path):
    for bad in (
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
    ):
        with pytest.raises(ValueError, match="PNG needs"):
            write_png(tmp_path / "bad.png", bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(1, 1), (37, 53), (20, 31, 3)])
def test_pillow_encoder_option_for_stored_maps(shape):
    rng = np.random.default_rng(len(shape))
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    data = encode_png(image, compress_level=6)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    assert data == buf.getvalue()  # exactly the bytes batch runs stored before
    with Image.open(io.BytesIO(data)) as got:
        np.testing.assert_array_equal(np.asarray(got), image)
    with pytest.raises(InvalidParameterError, match="compress_level"):
        encode_png(image, compress_level=10)
    with pytest.raises(InvalidParameterError, match="uint8"):
        encode_png(image.astype(np.int16), compress_level=6)


def test_io_errors_are_typed():
    with pytest.raises(InvalidParameterError, match="data must be bytes"):
        decode_image("not bytes")
    with pytest.raises(InvalidParameterError, match="not JSON serialisable"):
        write_json("unused.json", {"x": object()})
