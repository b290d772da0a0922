"""The command line end to end: explain, demo, models, layers, methods, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from eigencam.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_on_sample_images(tmp_path, capsys, sample_images):
    code, out, err = run(
        capsys, "explain", *map(str, sample_images), "--out", str(tmp_path), "--quiet"
    )
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["counts"] == {"images": 4, "ok": 4, "failed": 0, "not_processed": 0}
    assert results["model"] == "efficientnet_lite0" and results["layer"] == "_swish"
    by_name = {r["file"].rsplit("/", 1)[-1]: r for r in results["images"]}
    assert by_name["coffee.jpg"]["top5"][0]["label"] == "espresso"
    assert len(by_name["cat.jpg"]["top5"]) == 5
    for path in sample_images:
        original = Image.open(path)
        overlay = Image.open(tmp_path / f"{path.stem}.png")
        assert overlay.size == original.size  # original resolution
        heat = np.load(tmp_path / f"{path.stem}.npy")
        assert heat.dtype == np.float32 and heat.shape == (original.height, original.width)
        assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
    assert "4 image(s) explained" in out


def test_explain_components_and_save_subset(tmp_path, capsys, sample_images):
    code, _, err = run(
        capsys,
        "explain",
        str(sample_images[0]),
        "--out",
        str(tmp_path),
        "--components",
        "2",
        "--save",
        "npy",
        "--center",
    )
    assert code == 0, err
    heat = np.load(tmp_path / f"{sample_images[0].stem}.npy")
    assert heat.shape[0] == 2
    assert not list(tmp_path.glob("*.png"))
    rec = json.loads((tmp_path / "results.json").read_text())["images"][0]
    assert len(rec["explained_variance_ratio"]) == 2
    code, _, _ = run(
        capsys,
        "explain",
        str(sample_images[0]),
        "--out",
        str(tmp_path / "o"),
        "--components",
        "2",
        "--save",
        "overlay",
    )
    assert {p.name for p in (tmp_path / "o").glob("*.png")} == {
        f"{sample_images[0].stem}.png",
        f"{sample_images[0].stem}_pc2.png",
    }


def test_bad_inputs_are_reported_and_others_still_written(tmp_path, capsys, sample_images):
    data = tmp_path / "in"
    data.mkdir()
    shutil.copy(sample_images[0], data / "good.jpg")
    (data / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    Image.new("L", (2000, 2000)).save(data / "bomb.png")
    Image.fromarray(np.full((40, 30, 4), 128, np.uint8), mode="RGBA").save(data / "rgba.png")
    Image.new("L", (50, 40), 90).save(data / "gray.bmp")
    Image.new("RGB", (64, 48), (0, 90, 200)).save(data / "w.webp")
    out = tmp_path / "out"
    code, _, err = run(
        capsys,
        "explain",
        str(data),
        str(tmp_path / "missing.jpg"),
        str(tmp_path / "*.gif"),
        "--out",
        str(out),
        "--max-pixels",
        "1000000",
        "--quiet",
        "--batch-size",
        "2",
    )
    assert code == 1
    results = json.loads((out / "results.json").read_text())
    status = {r["file"].rsplit("/", 1)[-1]: r for r in results["images"]}
    assert status["good.jpg"]["status"] == "ok"
    for ok in ["rgba.png", "gray.bmp", "w.webp"]:
        assert status[ok]["status"] == "ok", status[ok]
    assert (
        "not an image" in status["corrupt.jpg"]["error"]
        or "corrupt" in status["corrupt.jpg"]["error"]
    )
    assert "decompression-bomb" in status["bomb.png"]["error"]
    assert status["missing.jpg"]["error"] == "no such file"
    assert status["*.gif"]["error"] == "pattern matched no files"
    assert (out / "good.png").is_file() and (out / "rgba.png").is_file()
    assert "corrupt.jpg" in err and "bomb.png" in err  # one line per failure on stderr


def test_unknown_model_and_layer_are_usage_errors(tmp_path, capsys, sample_images):
    code, _, err = run(
        capsys, "explain", str(sample_images[0]), "--model", "resnet5O", "--out", str(tmp_path)
    )
    assert code == 2 and "unknown model 'resnet5O'" in err and "resnet50" in err
    code, _, err = run(
        capsys, "explain", str(sample_images[0]), "--layer", "_blocks.99", "--out", str(tmp_path)
    )
    assert code == 2 and "_blocks.99" in err and "Closest valid names" in err
    # the run still leaves a results.json saying nothing was processed
    assert json.loads((tmp_path / "results.json").read_text())["counts"]["ok"] == 0


def test_weights_that_do_not_fit_are_a_usage_error(tmp_path, capsys, sample_images):
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "w.pt")
    code, _, err = run(
        capsys,
        "explain",
        str(sample_images[0]),
        "--model",
        "resnet18",
        "--weights",
        str(tmp_path / "w.pt"),
        "--out",
        str(tmp_path),
    )
    assert code == 2 and "w.pt" in err and "do not fit" in err


def test_random_weights_warning_and_overrides(tmp_path, capsys, sample_images):
    code, _, err = run(
        capsys,
        "explain",
        str(sample_images[0]),
        "--model",
        "resnet18",
        "--input-size",
        "96",
        "--mean",
        "0.5",
        "0.5",
        "0.5",
        "--std",
        "0.5",
        "0.5",
        "0.5",
        "--out",
        str(tmp_path),
    )
    assert code == 0 and "random weights" in err
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["preprocessing"]["input_size"] == [96, 96] and res["layer"] == "layer4"


def test_bad_colormap_fails_fast(tmp_path, capsys, sample_images):
    code, _, err = run(
        capsys, "explain", str(sample_images[0]), "--colormap", "nope", "--out", str(tmp_path)
    )
    assert code == 2 and "unknown colormap" in err


def test_demo(tmp_path, capsys, sample_images):
    code, out, err = run(capsys, "demo", "--out", str(tmp_path), "--quiet")
    assert code == 0, err
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["astronaut.png", "cat.png", "coffee.png", "rocket.png"]
    original = Image.open(next(p for p in sample_images if p.stem == "cat"))
    captioned = Image.open(tmp_path / "cat.png")
    assert captioned.width == original.width and captioned.height > original.height
    assert "open the overlays" in out


def test_models_layers_methods(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "efficientnet_lite0" in out and "resnet50" in out
    code, out, _ = run(capsys, "models", "--json")
    assert json.loads(out)[0]["pretrained"] is True
    code, out, _ = run(capsys, "layers", "efficientnet_lite0")
    lines = [line for line in out.splitlines() if line.startswith("*")]
    assert code == 0 and len(lines) == 1 and "_swish" in lines[0] and "1280x7x7" in lines[0]
    code, out, _ = run(capsys, "layers", "resnet18", "--json")
    assert [d["name"] for d in json.loads(out) if d["auto"]] == ["layer4"]
    code, out, _ = run(capsys, "methods")
    assert code == 0 and "eigencam" in out


def test_layers_ends_with_the_automatic_choice_and_takes_one_model(capsys):
    code, out, _ = run(capsys, "layers", "resnet18")
    last = out.strip().splitlines()[-1]
    assert code == 0 and last.startswith("automatic layer: layer4 (512x7x7), the last spatial")
    code, out, _ = run(capsys, "layers", "--model", "timm:resnet18")
    assert code == 0 and "timm's feature_info" in out.strip().splitlines()[-1]
    code, _, err = run(capsys, "layers", "resnet18", "--model", "vgg16")
    assert code == 2 and "two models given" in err and "vgg16" in err
    code, out, _ = run(capsys, "layers", "resnet18", "--model", "resnet18")
    assert code == 0


def test_misspellings_get_a_suggestion_and_the_subcommands_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explian", "photo.jpg"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "did you mean 'explain'?" in err
    with pytest.raises(SystemExit) as exc:
        main(["explain", "photo.jpg", "--targets", "top3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "usage: eigencam explain" in err
    assert "--targets: did you mean --target?" in err
    with pytest.raises(SystemExit) as exc:
        main(["compare", "photo.jpg", "--metods", "eigencam"])
    err = capsys.readouterr().err
    assert "usage: eigencam compare" in err and "did you mean --methods?" in err


def test_help_has_examples(capsys):
    """Every command's --help shows an example (one subprocess checks `python -m eigencam`)."""
    from eigencam.cli.main import build_parser

    proc = subprocess.run(
        [sys.executable, "-m", "eigencam", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "example" in proc.stdout
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"explain", "demo", "models", "layers", "methods"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert "example" in capsys.readouterr().out, name


def test_console_script_runs():
    exe = shutil.which("eigencam")
    if exe is None:
        pytest.skip("eigencam console script not installed (pip install -e .)")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("eigencam ")


def test_models_and_methods_listing_matches_the_registries():
    from eigencam.cli import listing_build

    assert listing_build.render(listing_build.build()) == listing_build.LISTING.read_text(), (
        "src/eigencam/cli/listing.json is stale: run python -m eigencam.cli.listing_build"
    )


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["models"], ["methods", "--json"]])
def test_listing_commands_do_not_import_torch(argv):
    code = (
        "import sys\nfrom eigencam.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_threads_is_an_option_of_every_compute_command(capsys, tmp_path, sample_images):
    from eigencam.cli.main import build_parser

    for command in ("explain", "compare", "localize", "attack", "faithfulness", "batch"):
        sub = build_parser(command)._subparsers._group_actions[0].choices[command]
        assert "--threads" in sub._option_string_actions, command
    before = torch.get_num_threads()
    try:
        argv = ["explain", str(sample_images[0]), "--out", str(tmp_path), "--quiet"]
        assert main([*argv, "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exc:
        main(["explain", str(sample_images[0]), "--threads", "0"])
    assert exc.value.code == 2 and "expected a whole number >= 1" in capsys.readouterr().err


def test_method_and_methods_are_one_option_on_every_command(capsys):
    from eigencam.cli.main import build_parser

    for command in ("explain", "batch"):
        args = build_parser(command).parse_args([command, "x.jpg", "--methods", "gradcam"])
        assert args.method == "gradcam"
    for command in ("compare", "localize", "attack", "faithfulness"):
        args = build_parser(command).parse_args([command, "x", "--method", "gradcam,eigencam"])
        assert args.methods == ["gradcam", "eigencam"]
    with pytest.raises(SystemExit) as exc:
        main(["explain", "x.jpg", "--methods", "gradcam,eigencam"])
    assert exc.value.code == 2 and "eigencam compare" in capsys.readouterr().err
