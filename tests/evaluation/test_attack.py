"""``eigencam attack`` end to end: synthetic data with known answers (fast), failure recording,
resume, outputs, the CLI; and a short run on real dev images (slow)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from eigencam.cli.main import main
from eigencam.errors import EigenCAMError, ModelForwardError
from eigencam.evaluation.datasets import read_dev
from eigencam.evaluation.robustness import AttackSettings, figure_name, run_attack
from eigencam.methods import EigenCAM, GradCAM
from eigencam.methods.base import CAMResult, Explainer, check_inputs
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess.maps import normalize
from eigencam.runs import RunOptions
from tiny_models import TinyCNN

SIZE = 32
GT = [6, 8, 22, 26]  # x0, y0, x1, y1
PRE = Preprocessing((SIZE, SIZE), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
TINY = str(Path(__file__).parents[1] / "tiny_models.py") + ":TinyCNN"


def make_data(root: Path, n: int = 4, bad: bool = True) -> Path:
    """``n`` random images with one box each; with ``bad``, a corrupt file and a wrong size."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    entries = []
    for i in range(n):
        rgb = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        rgb[..., 0] = 255 if i == 0 else rgb[..., 0] // 3  # img0: far more red than the others
        Image.fromarray(rgb).save(root / "images" / f"img{i}.png")
        entries.append(
            {"file": f"img{i}.png", "width": SIZE, "height": SIZE, "boxes": [GT], "class_id": i}
        )
    if bad:
        (root / "images" / "corrupt.png").write_bytes(b"not an image at all")
        entries.append({"file": "corrupt.png", "boxes": [GT], "class_id": 0})
        Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(root / "images" / "small.png")
        entries.append(
            {"file": "small.png", "width": 64, "height": 64, "boxes": [GT], "class_id": 1}
        )
    (root / "annotations.json").write_text(json.dumps({"images": entries}))
    return root


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN(classes=5).eval()


class BoxMap(Explainer):
    """Class-agnostic: 1 inside the ground-truth box, whatever the image (a perfect, immovable
    localizer)."""

    name = "boxmap"

    def __call__(self, inputs: Tensor, targets=None) -> CAMResult:
        x = check_inputs(inputs, self.model)
        raw = torch.zeros(x.shape[0], 1, SIZE, SIZE)
        raw[:, :, GT[1] : GT[3], GT[0] : GT[2]] = 1.0
        return CAMResult(normalize(raw), raw, "input", self.name, output=self.model(x).detach())


class PickyMap(Explainer):
    """Class-specific: the red channel, but fails on images whose mean red (normalised) is above
    ``limit``, like a method that cannot handle some inputs."""

    name = "picky"
    class_specific = True

    def __init__(self, model, target_layer="auto", limit: float = 1.0) -> None:
        super().__init__(model, target_layer)
        self.limit = limit
        self.calls = 0

    def __call__(self, inputs: Tensor, targets=None) -> CAMResult:
        x = check_inputs(inputs, self.model)
        self.calls += 1
        if bool((x[:, 0].mean((1, 2)) > self.limit).any()):
            raise EigenCAMError("cannot explain this image")
        raw = x[:, :1]
        t = torch.as_tensor(targets).reshape(x.shape[0], -1)
        raw = raw.expand(-1, t.shape[1], -1, -1)
        return CAMResult(
            normalize(raw), raw, "input", self.name, output=self.model(x).detach(), targets=t
        )


def explainers(model, limit: float = 1.0):
    """Two real methods, an immovable perfect localizer, and a method failing on red images
    (img0 only with the default limit: its mean red is 2 in normalised units, the others'
    about -1.2)."""
    picky = PickyMap(model, limit=limit)
    return {
        "eigencam": EigenCAM(model, "features"),
        "gradcam": GradCAM(model, "features"),
        "boxmap": BoxMap(model),
        "picky": picky,
    }


def test_attack_end_to_end_on_synthetic_data(tmp_path):
    data = make_data(tmp_path / "data")
    model = tiny_model()
    ds = read_dev(data)
    good = [s for s in ds.samples if Path(s.key).name.startswith("img")]
    expl = explainers(model)
    settings = AttackSettings(box_threshold=0.5, noise_control=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = run_attack(
        ds, model, PRE, expl, tmp_path / "out", settings=settings, run=RunOptions(batch_size=3)
    )
    out = tmp_path / "out"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # failures: the corrupt file and the size mismatch, recorded with their reasons
    fails = {Path(f["key"]).name: f["error"] for f in metrics["failures"]}
    assert set(fails) == {"corrupt.png", "small.png"}
    assert "64 x 64" in fails["small.png"]
    att = metrics["attack"]
    assert att["images"] == 4 and att["failures"] == 2
    assert att["success"]["rate"] == 1.0  # DeepFool flips a tiny CNN every time
    assert att["l2"]["median"] > 0 and att["iterations"]["median"] >= 1
    m = metrics["methods"]
    # an immovable map is identical before and after, and localizes perfectly
    for v in ("adversarial", "noise"):
        b = m["boxmap"][v]
        for measure in ("pearson", "ssim", "top_iou", "box_iou"):
            assert b[measure]["median"] == pytest.approx(1.0), (v, measure)
        assert b["localization"]["clean"]["rate"] == 1.0
        assert b["localization"]["kept"]["rate"] == 1.0
    assert m["boxmap"]["same_class"] == "same as adversarial (class-agnostic)"
    # a method failing on one image: recorded for it, measured on the others
    assert m["picky"]["failed_images"] == 1 and m["picky"]["images"] == 3
    # every similarity is in range
    for key in ("eigencam", "gradcam"):
        for v in ("adversarial", "same_class", "noise"):
            entry = m[key].get(v)
            if isinstance(entry, str):
                continue
            assert -1 <= entry["pearson"]["q25"] <= entry["pearson"]["q75"] <= 1 + 1e-9
            assert entry["ssim"]["median"] <= 1 + 1e-9
    assert set(metrics["comparisons"]) == {"gradcam", "boxmap", "picky"}
    # outputs
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 4 * 4 + 2
    picky_rows = [r for r in rows if r["method"] == "picky"]
    assert sum(bool(r["error"]) for r in picky_rows) == 1
    assert {Path(r["file"]).name for r in rows if not r["method"]} == {"corrupt.png", "small.png"}
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == sorted(figure_name(s.key) for s in good)
    table = (out / "table.md").read_text()
    assert "| boxmap | 1.00 [1.00, 1.00] |" in table
    assert "Paired comparison with eigencam" in table
    # per-image rows: the clean and adversarial classes differ where the attack succeeded
    rec = [json.loads(p.read_text()) for p in sorted((out / "records").glob("part-*.json"))]
    for part in rec:
        for row in part["rows"]:
            flipped = row["clean"]["class"] != row["adversarial"]["class"]
            assert row["attack"]["success"] == flipped


def test_attack_resumes_without_recomputing(tmp_path):
    data = make_data(tmp_path / "data", n=3, bad=False)
    model = tiny_model()
    ds = read_dev(data)
    expl = explainers(model, limit=1e9)
    run_attack(ds.head(2), model, PRE, expl, tmp_path / "out", run=RunOptions(batch_size=2))
    calls = expl["picky"].calls
    metrics = run_attack(
        ds, model, PRE, expl, tmp_path / "out", run=RunOptions(batch_size=2, resume=True)
    )
    assert expl["picky"].calls == calls + 2  # only the third image: clean + adversarial
    assert metrics["attack"]["images"] == 3 and metrics["timing"]["resumed_images"] == 2
    with pytest.raises(FileExistsError, match="--resume"):
        run_attack(ds, model, PRE, expl, tmp_path / "out")
    with pytest.raises(ValueError, match="other settings"):
        changed = AttackSettings(overshoot=0.1)
        run_attack(
            ds, model, PRE, expl, tmp_path / "out", run=RunOptions(resume=True), settings=changed
        )


class StopAfter(BoxMap):
    """BoxMap that raises ``error`` from its ``calls``-th call on."""

    def __init__(self, model, calls: int, error: BaseException) -> None:
        super().__init__(model)
        self.left, self.error = calls, error

    def __call__(self, inputs: Tensor, targets=None) -> CAMResult:
        self.left -= 1
        if self.left < 0:
            raise self.error
        return super().__call__(inputs, targets)


def test_an_interrupt_writes_the_outputs_of_what_finished_and_resume_completes(tmp_path):
    ds = read_dev(make_data(tmp_path / "data", n=3, bad=False))
    model = tiny_model()
    stop = {"boxmap": StopAfter(model, 2, KeyboardInterrupt())}  # clean + adversarial of batch 1
    with pytest.raises(KeyboardInterrupt):
        run_attack(ds, model, PRE, stop, tmp_path / "out", run=RunOptions(batch_size=2))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["attack"]["images"] == 2
    assert len((tmp_path / "out" / "per_image.csv").read_text().splitlines()) == 1 + 2
    resumed = run_attack(
        ds, model, PRE, {"boxmap": BoxMap(model)}, tmp_path / "out", run=RunOptions(resume=True)
    )
    assert resumed["attack"]["images"] == 3 and resumed["timing"]["resumed_images"] == 2


def test_a_bug_in_a_method_stops_the_run(tmp_path):
    ds = read_dev(make_data(tmp_path / "data", n=2, bad=False))
    model = tiny_model()
    bug = {"boxmap": StopAfter(model, 0, ZeroDivisionError("a bug"))}
    with pytest.raises(ModelForwardError, match="ZeroDivisionError: a bug") as info:
        run_attack(ds, model, PRE, bug, tmp_path / "out", figures=False)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_same_class_variant_of_a_class_method_differs_from_the_adversarial_one(tmp_path):
    data = make_data(tmp_path / "data", n=3, bad=False)
    model = tiny_model()
    metrics = run_attack(
        read_dev(data),
        model,
        PRE,
        {"gradcam": GradCAM(model, "features")},
        tmp_path / "out",
        figures=False,
    )
    g = metrics["methods"]["gradcam"]
    assert g["adversarial"]["ssim"]["n"] == 3
    # the clean class on both images: the map barely moves under a minimal perturbation
    assert g["same_class"]["pearson"]["median"] > g["adversarial"]["pearson"]["median"]
    assert not (tmp_path / "out" / "figures").exists()


def test_settings_are_validated():
    with pytest.raises(ValueError, match="candidates"):
        AttackSettings(candidates=1)
    with pytest.raises(ValueError, match="threshold"):
        AttackSettings(method_thresholds={"gradcam": 1.5})
    with pytest.raises(ValueError, match="connectivity"):
        AttackSettings(connectivity=6)
    assert AttackSettings(method_thresholds={"gradcam": 0.3}).threshold("gradcam") == 0.3
    assert AttackSettings(box_threshold=0.2).threshold("eigencam") == 0.2


def test_cli_attack(tmp_path, capsys):
    data = make_data(tmp_path / "data", n=3)
    args = ["attack", str(data), "--model", TINY, "--input-size", "32", "--quiet"]
    args += ["--methods", "eigencam,gradcam", "--batch-size", "2", "--out", str(tmp_path / "a")]
    assert main(args) == 1  # two images failed: exit code 1, results written
    out = capsys.readouterr()
    assert "Clean vs adversarial maps" in out.out and "corrupt.png" in out.err
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["attack"]["images"] == 3 and metrics["command"] == "attack"
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 1
    # per-method thresholds from a localize run
    loc = tmp_path / "loc.json"
    loc.write_text(json.dumps({"methods": {"gradcam": {"paper": {"chosen_threshold": 0.07}}}}))
    assert main([*args[:-1], str(tmp_path / "b"), "--thresholds-from", str(loc)]) == 1
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["methods"]["gradcam"]["box_threshold"] == 0.07
    assert metrics["methods"]["eigencam"]["box_threshold"] == 0.15
    loc2 = tmp_path / "loc2.json"  # a second run fills in the methods the first lacks
    other = {"paper": {"chosen_threshold": 0.3}}
    loc2.write_text(json.dumps({"methods": {"gradcam": other, "eigencam": other}}))
    more = ["--thresholds-from", str(loc), "--thresholds-from", str(loc2), "--no-figures"]
    assert main([*args[:-1], str(tmp_path / "b2"), *more]) == 1
    metrics = json.loads((tmp_path / "b2" / "metrics.json").read_text())
    assert metrics["methods"]["gradcam"]["box_threshold"] == 0.07
    assert metrics["methods"]["eigencam"]["box_threshold"] == 0.3
    assert main([*args[:-1], str(tmp_path / "c"), "--thresholds-from", str(data)]) == 2
    assert "not a finished `eigencam localize` run" in capsys.readouterr().err


def test_cli_attack_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--per-class" in text and "--noise-control" in text


@pytest.mark.slow
def test_attack_on_real_dev_images(tmp_path):
    from conftest import dev_data_or_skip

    data = dev_data_or_skip()
    out = tmp_path / "dev"
    args = ["attack", str(data), "--limit", "3", "--methods", "eigencam,gradcam", "--quiet"]
    assert main([*args, "--batch-size", "3", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    a = metrics["attack"]
    assert a["success"]["rate"] == 1.0
    assert a["rho"]["q75"] < 0.02  # imperceptible
    eig = metrics["methods"]["eigencam"]["adversarial"]
    assert eig["ssim"]["median"] > 0.9 and eig["pearson"]["median"] > 0.9
    assert len(list((out / "figures").glob("*.png"))) == 3


def test_attack_progress_moves_per_method_within_a_batch(tmp_path):
    """Each method explained on the batch moves the bar by its share of the batch's images."""
    ds = read_dev(make_data(tmp_path / "data"))
    good = [s for s in ds.samples if Path(s.key).name.startswith("img")]
    model = tiny_model()
    advanced, done = [], []

    class Ticks:
        def __call__(self, stats) -> None:
            done.append(stats.done)

        def advance(self, images: float) -> None:
            advanced.append(images)

    run = RunOptions(batch_size=64, progress=Ticks())
    expl = explainers(model)
    run_attack(ds, model, PRE, expl, tmp_path / "out", run=run)
    assert len(advanced) == len(expl)  # one batch: a step per method
    assert sum(advanced) == pytest.approx(len(good))
    assert done[-1] == len(ds.samples)
