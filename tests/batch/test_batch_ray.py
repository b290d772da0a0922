"""The Ray engine against the local one: same shards, same bytes; resume across engines; errors.

One local Ray (2 CPUs) for the module; each run starts its own actor pool on it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from batch_helpers import FAST, REPO, SLOW, TINY, make_folder, write_tars
from eigencam.batch import BatchSpec, run_batch
from eigencam.batch.shards import shard_files
from eigencam.cli.main import main
from eigencam.errors import LayerNotFoundError

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

pytestmark = pytest.mark.filterwarnings(
    "ignore::eigencam.models.RandomWeightsWarning", "ignore::DeprecationWarning"
)
SPEC = BatchSpec(model=TINY, **FAST)
# One forward pass (0.4 s) per shard of two images.
SLOW_ARGS = ["--model", SLOW, "--input-size", "32", "--threads", "1", "--batch-size", "2"]
SLOW_ARGS += ["--shard-size", "2", "--quiet"]


@pytest.fixture(scope="module")
def ray_session():
    from eigencam.batch.engines import worker_env

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's daemons keep the environment they start with and give it to the workers of every
    # job, also those of another driver connecting with --ray-address: make it this eigencam.
    saved = os.environ.get("PYTHONPATH")
    os.environ.update(worker_env())
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            runtime_env={"env_vars": worker_env()},
        )
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-inputs")
    images = make_folder(root / "imgs", n=10, corrupt=True)
    listing = root / "paths.txt"
    listing.write_text("\n".join(map(str, images)) + "\nmissing.png\n")
    tars = write_tars(root / "wds", images, per_tar=4)
    return {"images": images, "list": listing, "tars": tars}


def same_files(a, b) -> None:
    fa, fb = shard_files(a), shard_files(b)
    assert [f.name for f in fa] == [f.name for f in fb]
    for x, y in zip(fa, fb):
        assert x.read_bytes() == y.read_bytes(), x.name


def test_cli_ray_on_webdataset_equals_local(ray_session, inputs, tmp_path, capsys):
    tars = [str(t) for t in inputs["tars"]]
    common = [
        "--model",
        TINY,
        "--input-size",
        "32",
        "--threads",
        "1",
        "--batch-size",
        "3",
        "--quiet",
    ]
    assert main(["batch", *tars, "--out", str(tmp_path / "local"), *common]) == 1
    code = main(
        [
            "batch",
            *tars,
            "--out",
            str(tmp_path / "ray"),
            "--engine",
            "ray",
            "--num-workers",
            "2",
            *common,
        ]
    )
    stdout, _ = capsys.readouterr()
    assert code == 1 and "11 image(s) in 3/3 shard(s): 10 explained, 1 failed" in stdout
    same_files(tmp_path / "local", tmp_path / "ray")


def test_ray_worker_errors_reach_the_driver_typed(ray_session, inputs, tmp_path):
    spec = BatchSpec(model=TINY, layer="nope", **FAST)
    with pytest.raises(LayerNotFoundError, match="'nope' is not a module"):
        run_batch([str(inputs["list"])], tmp_path, spec, engine="ray", num_workers=1)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["status"] == "incomplete" and m["counts"]["shards_done"] == 0
    assert ray.is_initialized()


def test_kill_9_of_a_ray_driver_then_rerun_gives_the_uninterrupted_result(
    ray_session, inputs, tmp_path, capsys
):
    """A driver on an existing cluster (--ray-address) killed with SIGKILL mid-run, rerun.

    The killed job's actors die with it; the rerun skips the shards that landed and the result
    is byte for byte the one of a local run never killed.
    """
    address = ray_session.get_runtime_context().gcs_address
    args = [str(inputs["list"]), *SLOW_ARGS]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "EIGENCAM_TEST_SLEEP": "0.4"}
    cmd = [sys.executable, "-m", "eigencam", "batch", *args, "--out", str(killed)]
    cmd += ["--engine", "ray", "--ray-address", address, "--num-workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(shard_files(killed)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard written in 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    done = len(shard_files(killed))
    assert 2 <= done < 6, "the kill did not land mid-run"
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"
    code = main(["batch", *args, "--out", str(killed), "--engine", "ray", "--num-workers", "2"])
    stdout, _ = capsys.readouterr()
    assert code == 1 and f"skipped {done} finished" in stdout  # 1: two failures
    whole = tmp_path / "whole"
    assert main(["batch", *args, "--out", str(whole)]) == 1
    same_files(killed, whole)
    m_killed = json.loads((killed / "manifest.json").read_text())
    m_whole = json.loads((whole / "manifest.json").read_text())
    assert m_killed["status"] == m_whole["status"] == "complete"
    for key in ("counts", "failures", "shards", "fingerprint", "settings", "layer"):
        assert m_killed[key] == m_whole[key], key
    assert {f["error"] for f in m_killed["failures"]} == {
        "no such file",
        "corrupt or truncated image data (Truncated File Read)",
    }
    assert m_killed["numerics"] == m_whole["numerics"]
    # The killed run never finished, so the manifest records the rerun only.
    (rerun,) = m_killed["runs"]
    assert rerun["shards_computed"] == 6 - done and rerun["shards_skipped"] == done
    engine = rerun["engine"]
    assert engine["engine"] == "ray" and engine["workers"] == 2 and engine["threads"] == 1
    assert engine["started_local_ray"] is False  # the session's Ray was used, not shut down
    assert ray.is_initialized()
    assert not list(killed.rglob("*.tmp"))
