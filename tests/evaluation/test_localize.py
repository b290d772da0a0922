"""The localization runner end to end: both protocols on a synthetic dataset with known answers,
resume after an interruption, skips, calibration, outputs and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import localize_fixtures as fx
from eigencam.cli.main import main
from eigencam.errors import EigenCAMError
from eigencam.evaluation.datasets import read_dev
from eigencam.evaluation.localization import LocalizeSettings, load_records, localize
from eigencam.methods import build_explainer, parse_spec
from eigencam.runs import RunFolder, RunOptions

SETTINGS = LocalizeSettings(box_grid=(0.0, 0.3, 0.6, 0.9))


@pytest.fixture
def data(tmp_path):
    return fx.make_dataset(tmp_path / "data")


def run(data: Path, out: Path, **kw):
    expl = kw.pop("explainers", None) or fx.explainers()
    model = next(iter(expl.values())).model
    kw.setdefault("settings", SETTINGS)
    options = {k: kw.pop(k) for k in ("batch_size", "resume", "progress") if k in kw}
    kw["run"] = RunOptions(**{"batch_size": 4, **options})
    ds = kw.pop("dataset", None) or read_dev(data)
    return localize(ds, model, fx.PRE, expl, out, **kw), expl


def recorded_keys(out: Path) -> set[str]:
    return RunFolder(out, {}, command="localize", codec="npz").done_keys()


def check_expected(metrics: dict) -> None:
    cls = metrics["classification"]
    assert cls["top1_acc"] == pytest.approx(fx.EXPECTED["classification"]["top1_acc"])
    assert cls["top5_acc"] == pytest.approx(fx.EXPECTED["classification"]["top5_acc"])
    for key in ("green", "plane"):
        exp = fx.EXPECTED[key]
        m = metrics["methods"][key]
        curves = m["paper"]["curves"]
        for name in ("gt_known", "top1_loc", "top5_loc", "class_independent"):
            assert curves[f"{name}_acc"] == pytest.approx([exp[name]] * 11), (key, name)
        a = m["paper"]["at_chosen"]
        assert a["gt_known_error"] == pytest.approx(1 - exp["gt_known"])
        assert a["top1_loc_error"] == pytest.approx(1 - exp["top1_loc"])
        assert m["maxboxacc"]["value"] == pytest.approx(exp["maxboxacc"])
        assert m["maxboxacc"]["curve"] == pytest.approx([exp["maxboxacc"]] * 4)
        assert m["maxboxacc_v2"]["value"] == pytest.approx(exp["maxboxacc_v2"])
        split = m["paper"]["by_classification"]
        assert (split["correct"]["gt_known_acc"], split["correct"]["class_independent_acc"]) == (
            pytest.approx(exp["correct"])
        )
        assert (split["wrong"]["gt_known_acc"], split["wrong"]["class_independent_acc"]) == (
            pytest.approx(exp["wrong"])
        )
        assert split["correct"]["images"] == 4 and split["wrong"]["images"] == 2
        assert m["class_specific"] is (key == "plane")


def test_both_protocols_on_a_synthetic_dataset_with_known_answers(data, tmp_path):
    out = tmp_path / "out"
    metrics, expl = run(data, out, gallery=0)
    check_expected(metrics)
    assert metrics["dataset"]["evaluated"] == 6 and metrics["dataset"]["skipped"] == []
    # Class maps: the GT map for every image, the top-1 map only where they differ (2 images).
    assert expl["plane"].images == 6 + 2
    assert expl["green"].calls == 2  # batches of 4: one call per batch
    assert json.loads((out / "metrics.json").read_text())["methods"].keys() == {"green", "plane"}
    for name in ("table.md", "per_image.csv", "ground_truth.csv", "report.html", "accuracy.png"):
        assert (out / name).is_file(), name
    assert not (out / "gallery").exists()


def test_records_hold_boxes_in_original_pixels(data, tmp_path):
    run(data, tmp_path / "out")
    rec = load_records(tmp_path / "out", ["green", "plane"], len(SETTINGS.grid))
    assert rec.keys.tolist() == [f"images/img{i}.png" for i in range(6)]
    col = 5  # any threshold below 1
    assert rec.boxes[0, 0, 0, col].tolist() == list(fx.GT)
    assert rec.boxes[1, 0, 0, col].tolist() == list(fx.WRONG)
    assert rec.boxes[4, 0, 0, col].tolist() == list(fx.STRIP)  # the largest component
    assert rec.iou_all[4, 0, 0, col] == 1.0  # ... but another component is the object
    assert np.isnan(rec.boxes[5, 0, 0]).all() and (rec.iou[5, 0] == 0).all()
    assert rec.boxes[2, 1, 1, col].tolist() == list(fx.WRONG)  # top-1 map of a wrong class
    assert rec.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert rec.top5[:, 0].tolist() == [0, 1, 0, 1, 1, 2]
    assert [g.tolist() for g in rec.gt] == [[list(map(float, fx.GT))]] * 6


def test_per_image_csv_can_be_rescored(data, tmp_path):
    run(data, tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "per_image.csv").open()))
    assert len(rows) == 6 * 2 * 11
    for col in ("file", "method", "threshold", "x0", "y0", "x1", "y1", "iou"):
        assert col in rows[0]
    assert {"correct_gt_known", "correct_top1", "pred_class"} <= set(rows[0])
    gt = {r["file"]: r for r in csv.DictReader((tmp_path / "out" / "ground_truth.csv").open())}
    # Re-score GT-known accuracy of one threshold from the CSVs alone.
    hits = []
    for r in rows:
        if r["method"] != "plane" or r["threshold"] != "0.1":
            continue
        g = gt[r["file"]]
        if r["x0"] == "":
            hits.append(False)
            continue
        a = [float(r[k]) for k in ("x0", "y0", "x1", "y1")]
        b = [float(g[k]) for k in ("x0", "y0", "x1", "y1")]
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        hits.append(inter / union >= 0.5)
    assert np.mean(hits) == pytest.approx(fx.EXPECTED["plane"]["gt_known"])


def test_resume_after_an_interrupted_run_recomputes_nothing(data, tmp_path):
    out = tmp_path / "out"
    calls = []

    class CtrlC(fx.GreenMap):  # Ctrl-C while the second batch is explained
        def __call__(self, inputs, targets=None):
            if self.calls == 1:
                raise KeyboardInterrupt
            return super().__call__(inputs, targets)

    model = fx.CornerClassifier()
    expl = {"green": CtrlC(model), "plane": fx.BluePlaneMap(model)}
    with pytest.raises(KeyboardInterrupt):
        run(data, out, batch_size=2, explainers=expl, progress=lambda s: calls.append(s.done))
    assert calls == [0, 2]  # the first batch was written before the run stopped
    assert recorded_keys(out) == {"images/img0.png", "images/img1.png"}
    assert not (out / "metrics.json").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        run(data, out, batch_size=2)
    metrics, expl = run(data, out, batch_size=2, resume=True, gallery=0)
    assert expl["green"].images == 4  # only the images not finished before
    check_expected(metrics)
    assert metrics["timing"]["resumed_images"] == 2
    again, expl = run(data, out, batch_size=2, resume=True, gallery=0)
    assert expl["green"].images == 0
    assert again["methods"] == metrics["methods"]


def test_resume_refuses_other_settings(data, tmp_path):
    out = tmp_path / "out"
    run(data, out)
    with pytest.raises(ValueError, match="grid"):
        run(data, out, resume=True, settings=LocalizeSettings(box_grid=(0.5,)))
    with pytest.raises(ValueError, match="methods"):
        run(data, out, resume=True, explainers={"green": fx.GreenMap(fx.CornerClassifier())})


def test_bad_images_are_recorded_and_the_rest_finishes(data, tmp_path):
    (data / "images" / "img1.png").write_bytes(b"not a png")
    ann = json.loads((data / "annotations.json").read_text())
    ann["images"][2]["width"] = 64  # annotation made for another image size
    (data / "annotations.json").write_text(json.dumps(ann))
    metrics, _ = run(data, tmp_path / "out")
    skipped = dict(metrics["dataset"]["skipped"])
    assert set(skipped) == {"images/img1.png", "images/img2.png"}
    assert "64 x 32" in skipped["images/img2.png"]
    assert metrics["classification"]["images"] == 4
    assert "Skipped images" in (tmp_path / "out" / "report.html").read_text()


def test_non_finite_activations_skip_only_that_image(data, tmp_path):
    from eigencam.errors import NonFiniteActivationError

    class Fragile(fx.GreenMap):
        def __call__(self, inputs, targets=None):
            if bool((inputs[:, 1, 0, 0] > 0.5).any()):  # img with green at the corner
                raise NonFiniteActivationError("activations contain NaN")
            return super().__call__(inputs, targets)

    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[0, 0, 1] = 255
    Image.fromarray(rgb).save(data / "images" / "img3.png")
    model = fx.CornerClassifier()
    metrics, _ = run(data, tmp_path / "out", explainers={"green": Fragile(model)})
    assert [k for k, _ in metrics["dataset"]["skipped"]] == ["images/img3.png"]
    assert metrics["classification"]["images"] == 5


def test_calibration_on_held_out_data(data, tmp_path):
    ds = read_dev(data)
    first, second = ds.part(1, 2), ds.part(2, 2)
    run(data, tmp_path / "a", dataset=first)
    metrics, _ = run(data, tmp_path / "b", dataset=second, calibration=tmp_path / "a")
    assert "held-out" in metrics["calibration"]["source"]
    green = metrics["methods"]["green"]
    assert green["paper"]["threshold_source"] == "calibration"
    assert green["paper"]["chosen_threshold"] == 0.05  # first of equal maxima on part 1
    assert set(green["maxboxacc_v2"]["thresholds"]) == {"0.3", "0.5", "0.7"}
    # A dataset as calibration is evaluated first into OUT/calibration.
    m2, _ = run(data, tmp_path / "c", dataset=second, calibration=first)
    assert (tmp_path / "c" / "calibration" / "metrics.json").is_file()
    assert (
        m2["methods"]["plane"]["paper"]["at_chosen"]
        == metrics["methods"]["plane"]["paper"]["at_chosen"]
    )
    with pytest.raises(EigenCAMError, match="not a finished"):
        run(data, tmp_path / "d", dataset=second, calibration=tmp_path / "nowhere")


def test_method_specs():
    spec = parse_spec("eigencam:center=true:n_components=2:combine=sum:smooth=1.5")
    assert spec.name == "eigencam"
    assert spec.options == {"center": True, "n_components": 2, "combine": "sum", "smooth": 1.5}
    assert parse_spec("EigenCAM:fuse_layers=a.b+c").options == {"fuse_layers": ["a.b", "c"]}
    with pytest.raises(ValueError, match="option=value"):
        parse_spec("eigencam:center")
    model = torch.nn.Conv2d(3, 4, 3)
    e = build_explainer(parse_spec("eigencam:center=true"), model, "auto")
    assert e.center is True
    with pytest.raises(ValueError, match="no option"):
        build_explainer(parse_spec("eigencam:centre=true"), model, "auto")
    assert build_explainer(parse_spec("eigencam:target_layer=x"), model, "auto").target_layer == "x"


# -- command line --------------------------------------------------------------------------------
def cli_data(tmp_path: Path) -> Path:
    root = tmp_path / "cli"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.jpg"
        )
        entries.append({"file": f"{i}.jpg", "boxes": [[4, 4, 30, 30]], "class_id": i % 5})
    (root / "annotations.json").write_text(json.dumps({"images": entries}))
    return root


TINY = str(Path(__file__).parents[1] / "tiny_models.py") + ":TinyCNN"


def test_cli_localize_and_table(tmp_path, capsys):
    data = cli_data(tmp_path)
    args = ["localize", str(data), "--model", TINY, "--input-size", "32", "--quiet"]
    args += ["--methods", "eigencam,eigencam:center=true", "--box-grid", "0:0.9:0.3"]
    assert main([*args, "--out", str(tmp_path / "r1"), "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "GT-known err" in out and "eigencam:center=true" in out
    assert " ±" in out and "standard error" in out  # every accuracy with its n and error
    head = next(line for line in out.splitlines() if line.startswith("method"))
    assert head.split()[-1] == "n"
    rows = list(csv.DictReader((tmp_path / "r1" / "per_image.csv").open()))
    assert len(rows) == 5 * 2 * 11
    assert main([*args, "--out", str(tmp_path / "r2"), "--name", "second", "--part", "1/2"]) == 0
    assert main(["localize-table", str(tmp_path / "r1"), str(tmp_path / "r2")]) == 0
    table = capsys.readouterr().out
    assert "| Method | tests/tiny_models.py:TinyCNN | second |" in table.replace(
        str(Path(__file__).parents[1]) + "/", "tests/"
    )
    assert "### MaxBoxAccV2 (%)" in table
    # runs of one model without --name: columns named by their folders, not "(2)"
    assert main([*args, "--out", str(tmp_path / "half1"), "--part", "1/2"]) == 0
    capsys.readouterr()
    assert main(["localize-table", str(tmp_path / "r1"), str(tmp_path / "half1")]) == 0
    header = capsys.readouterr().out.split("\n| Method |")[1].split("\n")[0]
    assert "TinyCNN (r1) |" in header and header.rstrip(" |").endswith("TinyCNN (half1)")
    assert "(2)" not in header
    # Errors are usage errors (exit 2) with a message.
    assert main([*args, "--out", str(tmp_path / "r1")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args[:-4], "--methods", "eigencan", "--out", str(tmp_path / "r3")]) == 2
    assert "Did you mean: eigencam" in capsys.readouterr().err
    assert main([*args, "--methods", "eigencam:n_components=2", "--out", str(tmp_path / "r4")]) == 2
    assert "combine=sum" in capsys.readouterr().err
    assert main(["localize-table", str(tmp_path / "none")]) == 2


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["localize", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--calibrate-on" in text and "--resume" in text


def test_scoring_in_worker_processes_gives_the_same_records(data, tmp_path):
    one, _ = run(data, tmp_path / "thread", gallery=0, batch_size=2)
    two, _ = run(data, tmp_path / "procs", gallery=0, batch_size=2, score_workers=2)
    assert one["methods"] == two["methods"]
    a = load_records(tmp_path / "thread", ["green", "plane"], len(SETTINGS.grid))
    b = load_records(tmp_path / "procs", ["green", "plane"], len(SETTINGS.grid))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.iou_all, b.iou_all)


@pytest.mark.slow
def test_cli_end_to_end_on_real_dev_images(tmp_path, capsys):
    from conftest import dev_data_or_skip

    data = dev_data_or_skip()
    out = tmp_path / "dev"
    args = ["localize", str(data), "--limit", "16", "--methods", "eigencam,eigencam:center=true"]
    args += ["--box-grid", "0:0.9:0.1", "--batch-size", "16", "--gallery", "2", "--quiet"]
    args += ["--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    cls = metrics["classification"]
    assert cls["images"] == 16 and cls["top1_acc"] >= 0.5  # the embedded model is a real one
    for key in ("eigencam", "eigencam:center=true"):
        m = metrics["methods"][key]
        a = m["paper"]["at_chosen"]
        # Eigen-CAM localizes most of these (mostly large) objects, blind to the class...
        assert a["gt_known_error"] <= 0.6
        # ... and top-1 localization can never beat top-1 classification.
        assert 1 - a["top1_loc_error"] <= cls["top1_acc"] + 1e-9
        assert m["layer"] == "_swish"
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 16 * 2 * 11
    assert all(float(r["x1"]) <= 500 for r in rows if r["x1"])  # original pixels, not 224
    assert "eigencam:center=true" in (out / "table.md").read_text()
    assert len(list((out / "gallery").glob("*.jpg"))) >= 4


def test_centre_crop_maps_boxes_back_and_clips_the_ground_truth(tmp_path):
    root = tmp_path / "crop"
    (root / "images").mkdir(parents=True)
    rgb = np.zeros((32, 48, 3), dtype=np.uint8)
    rgb[4:20, 4:20, 1] = 255  # the object, partly left of the centre crop (x 8..40)
    Image.fromarray(rgb).save(root / "images" / "a.png")
    entry = {"file": "a.png", "width": 48, "height": 32, "boxes": [[4, 4, 20, 20]], "class_id": 0}
    (root / "annotations.json").write_text(json.dumps({"images": [entry]}))
    pre = fx.Preprocessing((32, 32), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "center-crop", 1.0)
    expl = {"green": fx.GreenMap(fx.CornerClassifier())}
    localize(read_dev(root), expl["green"].model, pre, expl, tmp_path / "out", settings=SETTINGS)
    rec = load_records(tmp_path / "out", ["green"], len(SETTINGS.grid))
    assert rec.regions.tolist() == [[8.0, 0.0, 40.0, 32.0]]
    assert rec.gt[0].tolist() == [[8.0, 4.0, 20.0, 20.0]]  # clipped to what the model saw
    assert rec.boxes[0, 0, 0, 3].tolist() == [8.0, 4.0, 20.0, 20.0]  # back in original pixels
    assert rec.iou[0, 0, 0, 3] == 1.0


def test_a_run_where_every_image_fails_still_reports(data, tmp_path):
    for f in (data / "images").glob("*.png"):
        f.write_bytes(b"broken")
    metrics, _ = run(data, tmp_path / "out")
    assert metrics["classification"]["images"] == 0
    assert len(metrics["dataset"]["skipped"]) == 6
    assert metrics["methods"]["green"]["paper"]["at_chosen"]["gt_known_error"] is None
    assert "Skipped images" in (tmp_path / "out" / "report.html").read_text()
