"""Command line for the comparison methods: explain --method/--target, compare, methods."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eigencam.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_with_a_class_method_and_top_k(tmp_path, capsys, sample_images):
    cat = next(p for p in sample_images if p.stem == "cat")
    code, _, err = run(
        capsys, "explain", cat, "--method", "gradcam", "--target", "top2", "--out", tmp_path
    )
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["method"] == "gradcam" and results["params"]["target"] == "top2"
    rec = results["images"][0]
    assert [t["label"] for t in rec["targets"]] == [p["label"] for p in rec["top5"][:2]]
    assert rec["target"] == rec["top5"][0]["index"] and rec["layer"] == "_swish"
    assert rec["outputs"]["overlay"] == ["cat.png", "cat_top2.png"]
    heat = np.load(tmp_path / "cat.npy")
    original = Image.open(cat)
    assert heat.shape == (2, original.height, original.width)
    assert (tmp_path / "cat_top2.png").is_file()


def test_explain_with_an_explicit_class_and_a_pixel_method(tmp_path, capsys, sample_images):
    code, _, err = run(
        capsys,
        "explain",
        sample_images[0],
        "--method",
        "saliency",
        "--target",
        "967",
        "--out",
        tmp_path,
        "--save",
        "npy",
    )
    assert code == 0, err
    rec = json.loads((tmp_path / "results.json").read_text())["images"][0]
    assert rec["target"] == 967 and rec["targets"][0]["label"] == "espresso"
    assert rec["layer"] == "input"


def test_explain_target_errors(tmp_path, capsys, sample_images):
    code, _, err = run(capsys, "explain", sample_images[0], "--target", "3", "--out", tmp_path)
    assert code == 2 and "class-agnostic" in err
    with pytest.raises(SystemExit) as info:
        main(["explain", str(sample_images[0]), "--target", "best", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "top<k>" in capsys.readouterr().err
    code, _, err = run(
        capsys, "explain", sample_images[0], "--method", "saliency", "--layer", "_swish"
    )
    assert code == 2 and "--layer does not apply" in err


def test_every_registered_method_is_an_explain_choice(capsys):
    from eigencam.cli.main import build_parser
    from eigencam.methods import available_methods

    parser = build_parser()
    explain = parser._subparsers._group_actions[0].choices["explain"]
    method = next(a for a in explain._actions if a.dest == "method")
    assert f"one of {', '.join(available_methods())}" in method.help  # the registry feeds it
    for name in available_methods():
        assert parser.parse_args(["explain", "x.jpg", "--method", name]).method == name
    spec = "eigencam:components=3:combine=energy"
    assert parser.parse_args(["explain", "x.jpg", "--method", spec]).method == spec
    with pytest.raises(SystemExit):
        parser.parse_args(["explain", "x.jpg", "--method", "gradcamm"])
    assert "gradcam" in capsys.readouterr().err


def test_compare_end_to_end_with_top_k_rows(tmp_path, capsys, sample_images):
    images = [p for p in sample_images if p.stem in ("cat", "coffee")]
    code, out, err = run(
        capsys,
        "compare",
        *images,
        "--methods",
        "eigencam,gradcam,cam",
        "--targets",
        "top2",
        "--tile",
        "128",
        "--out",
        tmp_path,
        "--quiet",
    )
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["methods"] == ["eigencam", "gradcam", "cam"] and results["targets"] == "top2"
    assert results["counts"] == {"images": 2, "ok": 2, "failed": 0, "not_processed": 0}
    for rec in results["images"]:
        assert rec["status"] == "ok" and len(rec["top5"]) == 5
        agnostic, grad = rec["methods"]["eigencam"], rec["methods"]["gradcam"]
        assert agnostic["targets"] is None and len(agnostic["maps"]) == 1
        assert [t["index"] for t in grad["targets"]] == [p["index"] for p in rec["top5"][:2]]
        assert len(grad["maps"]) == 2 and grad["layer"] == "_swish"
        for stats in grad["maps"]:
            assert stats["min"] <= stats["mean"] <= stats["max"]
            assert len(stats["peak"]) == 2 and len(stats["peak_in_image"]) == 2
            assert 0 <= stats["peak_in_image"][0] < rec["width"]
        grid = Image.open(tmp_path / rec["outputs"]["grid"])
        cell = 128 + 6
        assert grid.width >= 4 * cell  # the image, then three methods
        assert grid.height >= 2 * cell  # two rows: top-1 and top-2 classes
    assert "2 figure(s) complete" in out


def test_compare_records_failures_and_writes_the_rest(tmp_path, capsys, sample_images):
    data = tmp_path / "in"
    data.mkdir()
    good = next(p for p in sample_images if p.stem == "rocket")
    (data / "rocket.jpg").write_bytes(good.read_bytes())
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    out = tmp_path / "out"
    code, _, err = run(
        capsys,
        "compare",
        data,
        "--model",
        "resnet18",
        "--input-size",
        "64",
        "--layer",
        "layer3",  # CAM needs the layer that is pooled into the classifier: layer4
        "--methods",
        "eigencam,cam",
        "--out",
        out,
        "--quiet",
    )
    assert code == 1
    results = json.loads((out / "results.json").read_text())
    by_name = {Path(r["file"]).name: r for r in results["images"]}
    assert by_name["broken.jpg"]["status"] == "error"
    rocket = by_name["rocket.jpg"]
    assert rocket["status"] == "partial" and rocket["methods"]["eigencam"]["status"] == "ok"
    assert "UnsupportedModelError" in rocket["methods"]["cam"]["error"]
    assert (out / "rocket_compare.png").is_file()  # the figure is still written
    assert "broken.jpg" in err and "cam:" in err


def test_compare_usage_errors(tmp_path, capsys, sample_images):
    code, _, err = run(capsys, "compare", sample_images[0], "--methods", "gradcamm")
    assert code == 2 and "gradcam" in err
    code, _, err = run(capsys, "compare", sample_images[0], "--targets", "top0")
    assert code == 2 and "k must be" in err
    code, _, err = run(capsys, "compare", sample_images[0], "--methods", "cam,cam")
    assert code == 2 and "twice" in err


def test_methods_listing_and_docs_page_match_the_registry(capsys):
    from eigencam.methods import available_methods

    code, out, _ = run(capsys, "methods", "--json")
    infos = json.loads(out)
    assert code == 0 and [i["name"] for i in infos] == available_methods()
    assert all(i["paper"] and i["cost"] and i["layer_requirement"] for i in infos)
    code, out, _ = run(capsys, "methods", "--markdown")
    committed = (REPO / "docs" / "methods.md").read_text()
    assert out == committed, "docs/methods.md is stale: eigencam methods --markdown > it"
    for name in available_methods():
        assert f"| `{name}` |" in out


def test_compare_help_has_an_example():
    proc = subprocess.run(
        [sys.executable, "-m", "eigencam", "compare", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "example" in proc.stdout and "--targets" in proc.stdout


def test_method_specs_and_old_flags_name_the_same_explainer(tmp_path, capsys, sample_images):
    spec_out, flag_out = tmp_path / "spec", tmp_path / "flags"
    code, _, err = run(
        capsys,
        "explain",
        sample_images[0],
        "--method",
        "eigencam:components=2:center=true",
        "--out",
        spec_out,
        "--quiet",
    )
    assert code == 0, err
    code, _, err = run(
        capsys,
        "explain",
        sample_images[0],
        "--components",
        "2",
        "--center",
        "--out",
        flag_out,
        "--quiet",
    )
    assert code == 0, err
    stem = sample_images[0].stem
    a, b = np.load(spec_out / f"{stem}.npy"), np.load(flag_out / f"{stem}.npy")
    assert a.shape[0] == 2 and np.array_equal(a, b)
    code, _, err = run(
        capsys,
        "explain",
        sample_images[0],
        "--method",
        "gradcam:components=2",
        "--out",
        tmp_path / "bad",
        "--quiet",
    )
    assert code == 2 and "has no option(s) ['n_components']" in err


def test_model_args_use_the_spec_value_grammar():
    from eigencam.cli.common import parse_model_args

    assert parse_model_args(["a=true", "b=None", "c=3", "d=0.5", "e=x", "f=(1, 2)", "g=1+2"]) == {
        "a": True,
        "b": None,
        "c": 3,
        "d": 0.5,
        "e": "x",
        "f": (1, 2),
        "g": [1, 2],
    }
