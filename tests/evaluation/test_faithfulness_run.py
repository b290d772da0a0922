"""``eigencam faithfulness`` end to end: a model whose evidence is known (a perfect map must beat
the baselines through the whole pipeline), failures, resume, outputs, the CLI; real dev images
(slow)."""

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
from eigencam.errors import EigenCAMError
from eigencam.evaluation.datasets import read_dev
from eigencam.evaluation.faithfulness_run import FaithfulnessSettings, run_faithfulness
from eigencam.methods.base import CAMResult, Explainer, check_inputs
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess.maps import normalize
from eigencam.runs import RunOptions

H = W = 24
SQUARE = (slice(6, 14), slice(8, 18))
PRE = Preprocessing((H, W), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
TINY = str(Path(__file__).parents[1] / "tiny_models.py") + ":TinyCNN"
SETTINGS = FaithfulnessSettings(steps=6, road_fractions=(0.2, 0.6))


class RegionModel(nn.Module):
    """Class 0's logit grows with the brightness inside a fixed square; class 1 is constant."""

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, H, W)
        mask[..., SQUARE[0], SQUARE[1]] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        inside = (x * self.mask).sum((1, 2, 3)) / (self.mask.sum() * x.shape[1])
        return torch.stack([12 * inside - 3, torch.zeros_like(inside)], dim=1)


class SquareMap(Explainer):
    """The model's true evidence: the square (class-specific, so it is given the targets)."""

    name = "square"
    class_specific = True

    def __call__(self, inputs: Tensor, targets=None) -> CAMResult:
        x = check_inputs(inputs, self.model)
        raw = self.model.mask.expand(x.shape[0], 1, H, W).clone()
        raw = raw + 0.01 * x[:, :1]  # ties broken by the image, as a real map would
        t = torch.as_tensor(targets).reshape(x.shape[0], -1)
        return CAMResult(normalize(raw), raw, "input", self.name, targets=t)


class InvertedMap(Explainer):
    """Everything but the evidence."""

    name = "inverted"

    def __call__(self, inputs: Tensor, targets=None) -> CAMResult:
        x = check_inputs(inputs, self.model)
        raw = 1 - self.model.mask.expand(x.shape[0], 1, H, W).clone()
        return CAMResult(normalize(raw), raw, "input", self.name)


class Broken(Explainer):
    """Fails on every image whose top-left pixel is white."""

    name = "broken"

    def __call__(self, inputs: Tensor, targets=None) -> CAMResult:
        x = check_inputs(inputs, self.model)
        if bool((x[:, :, 0, 0] > 0.99).all(1).any()):
            raise EigenCAMError("white corner")
        raw = x[:, :1]
        return CAMResult(normalize(raw), raw, "input", self.name)


def make_data(root: Path, n: int = 4, corrupt: bool = True) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    entries = []
    for i in range(n):
        img = (0.15 * rng.random((H, W, 3))).astype(np.float32)
        img[SQUARE[0], SQUARE[1]] += 0.8
        if i == 1:
            img[0, 0] = 1.0  # Broken fails here
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(
            root / "images" / f"{i}.png"
        )
        entries.append({"file": f"{i}.png", "boxes": [[8, 6, 18, 14]], "class_id": 0})
    if corrupt:
        (root / "images" / "bad.png").write_bytes(b"garbage")
        entries.append({"file": "bad.png", "boxes": [[1, 1, 5, 5]], "class_id": 0})
    (root / "annotations.json").write_text(json.dumps({"images": entries}))
    return root


def explainers(model):
    return {
        "square": SquareMap(model),
        "inverted": InvertedMap(model),
        "broken": Broken(model),
    }


def test_faithfulness_end_to_end(tmp_path):
    model = RegionModel()
    ds = read_dev(make_data(tmp_path / "data"))
    metrics = run_faithfulness(
        ds,
        model,
        PRE,
        explainers(model),
        tmp_path / "out",
        settings=SETTINGS,
        run=RunOptions(batch_size=3),
    )
    m = metrics["methods"]
    assert list(m) == ["square", "inverted", "broken", "random", "center_gaussian"]
    assert m["random"]["baseline"] and m["random"]["title"] == "random (baseline)"
    names = ("deletion_auc", "insertion_auc", "average_drop", "road_morf", "road_lerf")
    names += ("road_combined",)
    mean = {k: {x: v[x]["mean"] for x in names} for k, v in m.items()}
    # the true evidence beats chance, which beats its complement, on every metric
    sq, rnd, inv = mean["square"], mean["random"], mean["inverted"]
    assert sq["deletion_auc"] < rnd["deletion_auc"] < inv["deletion_auc"]
    assert sq["insertion_auc"] > rnd["insertion_auc"] > inv["insertion_auc"]
    assert sq["average_drop"] < inv["average_drop"]
    assert sq["road_morf"] < rnd["road_morf"] < inv["road_morf"]
    assert sq["road_lerf"] > inv["road_lerf"]
    assert sq["road_combined"] > rnd["road_combined"] > inv["road_combined"]
    assert sq["road_combined"] == pytest.approx((sq["road_lerf"] - sq["road_morf"]) / 2)
    # failures: an unreadable image for the run, one image for the broken method
    assert [Path(f["key"]).name for f in metrics["failures"]] == ["bad.png"]
    assert m["broken"]["images"] == 3 and m["broken"]["failed_images"] == 1
    assert m["square"]["images"] == 4
    # curves: steps + 1 points from the unmodified image to the baseline
    cur = m["square"]["curves"]["deletion"]
    assert cur["fractions"][0] == 0 and cur["fractions"][-1] == 1 and len(cur["mean"]) == 7
    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 4 * 5 + 1
    assert sum(bool(r["error"]) for r in rows if r["method"] == "broken") == 1
    table = (out / "table.md").read_text()
    assert "| random (baseline) |" in table and "| centre Gaussian (baseline) |" in table
    assert (out / "curves.png").stat().st_size > 1000


def test_faithfulness_scores_do_not_depend_on_the_batch(tmp_path):
    model = RegionModel()
    ds = read_dev(make_data(tmp_path / "data", corrupt=False))
    a = run_faithfulness(ds, model, PRE, explainers(model), tmp_path / "a", settings=SETTINGS)
    b = run_faithfulness(
        ds,
        model,
        PRE,
        explainers(model),
        tmp_path / "b",
        settings=SETTINGS,
        run=RunOptions(batch_size=1),
    )
    for key in a["methods"]:
        for metric in ("deletion_auc", "insertion_auc", "road_morf", "road_lerf"):
            assert a["methods"][key][metric]["mean"] == pytest.approx(
                b["methods"][key][metric]["mean"], abs=1e-6
            ), (key, metric)


def test_faithfulness_resume_and_reserved_names(tmp_path):
    model = RegionModel()
    ds = read_dev(make_data(tmp_path / "data", corrupt=False))
    run_faithfulness(ds.head(2), model, PRE, explainers(model), tmp_path / "o", settings=SETTINGS)
    metrics = run_faithfulness(
        ds,
        model,
        PRE,
        explainers(model),
        tmp_path / "o",
        settings=SETTINGS,
        run=RunOptions(resume=True),
    )
    assert metrics["timing"]["resumed_images"] == 2 and metrics["images"] == 4
    with pytest.raises(ValueError, match="reserved"):
        run_faithfulness(ds, model, PRE, {"random": InvertedMap(model)}, tmp_path / "x")
    with pytest.raises(ValueError, match="baseline"):
        FaithfulnessSettings(baseline="noise")
    with pytest.raises(ValueError, match="road_fractions"):
        FaithfulnessSettings(road_fractions=(0.0, 0.5))


def test_cli_faithfulness(tmp_path, capsys):
    data = make_data(tmp_path / "data", n=2)
    args = ["faithfulness", str(data), "--model", TINY, "--input-size", "32", "--quiet"]
    args += ["--methods", "eigencam,gradcam", "--steps", "3", "--road-fractions", "0.5"]
    assert main([*args, "--out", str(tmp_path / "f")]) == 1  # bad.png failed
    out = capsys.readouterr()
    assert "Faithfulness (mean)" in out.out and "bad.png" in out.err
    metrics = json.loads((tmp_path / "f" / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["eigencam", "gradcam", "random", "center_gaussian"]
    assert metrics["settings"]["steps"] == 3 and metrics["settings"]["baseline"] == "blur"
    assert main([*args, "--out", str(tmp_path / "f")]) == 2  # a run is there: --resume?
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "f"), "--overwrite"]) == 1
    assert main([*args, "--out", str(tmp_path / "g"), "--road-fractions", "0.5,x"]) == 2
    assert "--road-fractions" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["faithfulness", "--help"])
    assert "examples:" in capsys.readouterr().out


@pytest.mark.slow
def test_faithfulness_on_real_dev_images(tmp_path):
    from conftest import dev_data_or_skip

    data = dev_data_or_skip()
    out = tmp_path / "dev"
    args = ["faithfulness", str(data), "--limit", "2", "--methods", "eigencam", "--quiet"]
    args += ["--steps", "8", "--road-fractions", "0.3,0.7", "--batch-size", "2"]
    assert main([*args, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())["methods"]
    # Eigen-CAM's order of the pixels is far better than chance at revealing the class
    assert m["eigencam"]["insertion_auc"]["mean"] > m["random"]["insertion_auc"]["mean"] + 0.05
    for entry in m.values():
        for metric in ("deletion_auc", "insertion_auc", "road_morf", "road_lerf"):
            assert 0 <= entry[metric]["mean"] <= 1


class Ticks:
    """A progress object that records what the run reports, as the CLI's bar gets it."""

    def __init__(self) -> None:
        self.advanced: list[float] = []
        self.done: list[int] = []

    def __call__(self, stats) -> None:
        self.done.append(stats.done)

    def advance(self, images: float) -> None:
        self.advanced.append(images)


def test_faithfulness_progress_moves_per_method_within_a_batch(tmp_path):
    """Explaining and scoring each method and baseline moves the bar: one batch of 4 images,
    3 methods + 2 baselines -> 8 steps of half an image, before the batch is recorded."""
    model = RegionModel()
    ds = read_dev(make_data(tmp_path / "data", corrupt=False))
    ticks = Ticks()
    run = RunOptions(batch_size=8, progress=ticks)
    run_faithfulness(ds, model, PRE, explainers(model), tmp_path / "o", settings=SETTINGS, run=run)
    assert len(ticks.advanced) == 2 * 3 + 2
    assert sum(ticks.advanced) == pytest.approx(4)
    assert ticks.done[-1] == 4


def test_progress_bar_counts_fractions_and_settles_on_the_batch(monkeypatch):
    from eigencam.cli.common import Progress
    from eigencam.runs.loop import RunStats

    bar = Progress(8, "faithfulness", min_items=1)
    for _ in range(3):
        bar.advance(4 / 3)
    assert bar.bar.n == pytest.approx(4)
    bar(RunStats(total=8, ok=4))
    assert bar.bar.n == pytest.approx(4) and "4/8" in str(bar.bar)
    bar.close()
