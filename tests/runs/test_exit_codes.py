"""The documented exit codes (README): 0 ok, 1 some inputs failed, 2 usage error, 3 environment
or model failure; and output failures that stop a run in one line, keeping what finished."""

from __future__ import annotations

import json

import numpy as np

from eigencam.cli.main import main

BROKEN_MODEL = """
import torch
from torch import nn


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        raise RuntimeError("CUDA kernel exploded")


def build():
    return Broken()
"""


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_0_ok_and_1_when_some_inputs_fail(tmp_path, capsys, sample_images):
    code, _, err = run(capsys, "explain", sample_images[0], "--out", tmp_path / "a", "--quiet")
    assert code == 0, err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    code, _, err = run(
        capsys, "explain", sample_images[0], broken, "--out", tmp_path / "b", "--quiet"
    )
    assert code == 1 and "broken.jpg" in err


def test_exit_2_for_usage_errors(tmp_path, capsys, sample_images):
    code, _, err = run(capsys, "explain", sample_images[0], "--model", "resnet5O", "--quiet")
    assert code == 2 and "unknown model" in err
    out = tmp_path / "run"
    assert run(capsys, "explain", sample_images[0], "--out", out, "--quiet")[0] == 0
    code, _, err = run(capsys, "explain", sample_images[0], "--out", out, "--quiet")
    assert code == 2 and "--resume" in err and "--overwrite" in err
    code, _, err = run(capsys, "explain", sample_images[0], "--out", out, "--overwrite", "--quiet")
    assert code == 0, err


def test_exit_3_when_the_output_cannot_be_written(tmp_path, capsys, sample_images):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "explain", sample_images[0], "--out", blocker / "out", "--quiet")
    assert code == 3
    assert "cannot write the output folder" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_full_disk_mid_run_stops_in_one_line_and_keeps_what_finished(
    tmp_path, capsys, sample_images, monkeypatch
):
    saved = []
    real_save = np.save

    def save(fh, array, **kwargs):
        if saved:
            raise OSError("123 requested and 0 written")  # numpy's message on a full disk
        saved.append(fh)
        real_save(fh, array, **kwargs)

    monkeypatch.setattr(np, "save", save)
    out = tmp_path / "out"
    code, _, err = run(
        capsys,
        "explain",
        *sample_images[:3],
        "--out",
        out,
        "--batch-size",
        "1",
        "--workers",
        "1",
        "--quiet",
    )
    assert code == 3
    assert "no space left on device (disk full) writing" in err and "requested" not in err
    results = json.loads((out / "results.json").read_text())  # written for what finished
    assert results["counts"]["ok"] == 1 and results["counts"]["not_processed"] == 2
    assert len(list((out / "records").glob("part-*.json"))) == 1


def test_exit_3_when_the_model_forward_raises(tmp_path, capsys, sample_images):
    model = tmp_path / "broken_model.py"
    model.write_text(BROKEN_MODEL)
    args = [
        "explain",
        sample_images[0],
        "--model",
        f"{model}:build",
        "--layer",
        "conv",
        "--input-size",
        "32",
        "--out",
        tmp_path / "out",
        "--quiet",
    ]
    code, _, err = run(capsys, *args)
    assert code == 3
    assert (
        "model forward failed on a batch of 1 image(s): RuntimeError: CUDA kernel exploded" in err
    )
    assert "Traceback" not in err and "--debug" in err
    code, _, err = run(capsys, "--debug", *args[:-3], "--out", tmp_path / "out2", "--quiet")
    assert code == 3 and "Traceback" in err


def test_the_batch_a_failing_model_stopped_is_recorded_as_failed_and_retried_on_resume(
    tmp_path, capsys, sample_images
):
    model = tmp_path / "broken_model.py"
    model.write_text(BROKEN_MODEL)
    out = tmp_path / "out"
    common = ["--layer", "conv", "--input-size", "32", "--out", out, "--quiet"]
    code, _, _ = run(capsys, "explain", *sample_images[:2], "--model", f"{model}:build", *common)
    assert code == 3
    results = json.loads((out / "results.json").read_text())
    assert results["counts"] == {"images": 2, "ok": 0, "failed": 2, "not_processed": 0}
    for image in results["images"]:
        assert image["status"] == "error"
        assert "model forward failed on a batch of 2 image(s)" in image["error"]
    # The fixed model resumes the same run: the images that failed with it are explained now.
    model.write_text(
        BROKEN_MODEL.replace('raise RuntimeError("CUDA kernel exploded")', "return y.mean((2, 3))")
    )
    code, _, err = run(
        capsys,
        "explain",
        *sample_images[:2],
        "--model",
        f"{model}:build",
        *common[:-1],
        "--resume",
        "--quiet",
    )
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["ok"] == 2 and results["resumed"] == 0


def test_an_input_size_the_model_cannot_take_is_a_usage_error_in_one_line(
    tmp_path, capsys, sample_images
):
    code, _, err = run(
        capsys, "explain", sample_images[0], "--input-size", "1", "--out", tmp_path, "--quiet"
    )
    assert code == 2
    assert "inputs of 1 x 1 pixels are too small for this model" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
