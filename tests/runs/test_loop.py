"""The run loop: isolation policy, interrupts keep what finished, resume gives the same files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from eigencam.errors import LayerNotFoundError, ModelForwardError, NonFiniteActivationError
from eigencam.runs import Batch, RunFolder, RunOptions, isolate, run_task
from eigencam.runs.loop import Part


@dataclass(frozen=True)
class Item:
    key: str
    path: str


def test_isolate_fails_only_the_image_that_raises():
    def explain(items):
        if "bad" in items:
            raise NonFiniteActivationError("activations of bad are not finite")
        return [i.upper() for i in items]

    out = isolate(explain, ["a", "bad", "c"])
    assert [(i, r) for i, r, _ in out] == [("a", "A"), ("bad", None), ("c", "C")]
    assert "not finite" in str(out[1][2])


def test_isolate_lets_run_errors_and_bugs_through():
    def wrong_layer(items):
        raise LayerNotFoundError("layer9", ["layer4"])

    with pytest.raises(LayerNotFoundError):
        isolate(wrong_layer, ["a", "b"])

    def bug(items):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ModelForwardError, match="batch of 2 image.*ZeroDivisionError") as info:
        isolate(bug, ["a", "b"])
    assert isinstance(info.value.__cause__, ZeroDivisionError)


class CountingTask:
    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after, self.finished = stop_after, None

    def process(self, batch: Batch) -> Part:
        keys = [it.key for _, it in batch.items]
        if self.stop_after is not None and "k3" in keys:
            raise KeyboardInterrupt
        return Part({"rows": [{"key": k} for k in keys], "failures": []}, ok=len(keys))

    def finish(self, folder, stats):
        self.finished = (sorted(folder.done_keys()), stats)
        return stats


def batches_of(n):
    def make(items):
        for i in range(0, len(items), n):
            yield Batch(items=[(None, it) for it in items[i : i + n]])

    return make


def test_an_interrupt_keeps_finished_parts_and_finishes_then_resume_completes(tmp_path):
    items = [Item(f"k{i}", f"p{i}") for i in range(6)]
    task = CountingTask(stop_after=3)
    folder = RunFolder(tmp_path, {"x": 1}, command="test")
    with pytest.raises(KeyboardInterrupt):
        run_task(task, folder, items, RunOptions(), batches_of(2))
    keys, stats = task.finished
    assert keys == ["k0", "k1"] and stats.interrupted  # the batch k2, k3 never finished
    seen = []
    again = CountingTask()
    stats = run_task(
        again,
        RunFolder(tmp_path, {"x": 1}, command="test"),
        items,
        RunOptions(resume=True, progress=lambda s: seen.append((s.done, s.resumed))),
        batches_of(2),
    )
    assert again.finished[0] == [f"k{i}" for i in range(6)]
    assert stats.resumed == 2 and stats.ok == 4 and not stats.interrupted
    assert seen[0] == (2, 2) and seen[-1] == (6, 2)


def _explain_cmd(out: Path, images, *extra):
    return [
        sys.executable,
        "-m",
        "eigencam",
        "explain",
        *map(str, images),
        "--out",
        str(out),
        "--batch-size",
        "1",
        "--workers",
        "1",
        "--quiet",
        *extra,
    ]


def _outputs(folder: Path) -> dict:
    results = json.loads((folder / "results.json").read_text())
    for volatile in ("seconds", "resumed"):
        results.pop(volatile)
    files = sorted(p.name for p in folder.iterdir() if p.suffix in (".png", ".npy"))
    return {"results": results, "files": files}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_explain_killed_then_resumed_gives_the_files_of_an_uninterrupted_run(
    tmp_path, sample_images, sig
):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_explain_cmd(whole, sample_images), env=env, check=True, timeout=300)
    proc = subprocess.Popen(_explain_cmd(killed, sample_images), env=env)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list((killed / "records").glob("part-*.json"))) >= 1:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run ended before it could be killed")
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    if sig == signal.SIGTERM:
        assert code != 0
        partial = json.loads((killed / "results.json").read_text())  # SIGTERM keeps it
        assert 1 <= partial["counts"]["ok"] < len(sample_images)
        assert partial["counts"]["not_processed"] == len(sample_images) - partial["counts"]["ok"]
    subprocess.run(
        _explain_cmd(killed, sample_images, "--resume"), env=env, check=True, timeout=300
    )
    assert _outputs(killed) == _outputs(whole)
    without = subprocess.run(
        _explain_cmd(killed, sample_images), env=env, timeout=300, capture_output=True, text=True
    )
    assert without.returncode != 0 and "--resume" in without.stderr
