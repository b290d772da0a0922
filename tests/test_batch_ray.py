"""The Ray engine against the local one: same shards, same bytes; resume across engines; errors.

One local Ray (2 CPUs) for the module; each run starts its own actor pool on it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
from batch_helpers import FAST, TINY, make_folder, write_tars

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


@pytest.fixture(scope="module")
def ray_session():
    from eigencam.batch.engines import worker_env

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": worker_env()},
    )
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


def test_ray_resumes_a_local_run_and_writes_the_same_bytes(ray_session, inputs, tmp_path):
    """Shards computed by two Ray actors equal the local engine's, byte for byte."""
    local = tmp_path / "local"
    reference = run_batch([str(inputs["list"])], local, SPEC, shard_size=4)
    assert reference.counts == {
        "images": 12,
        "ok": 10,
        "failed": 2,
        "shards": 3,
        "shards_done": 3,
        "unmatched_inputs": 0,
    }
    mixed = tmp_path / "mixed"
    shutil.copytree(local, mixed)
    for index in (0, 2):
        (mixed / "shards" / f"part-0000{index}.parquet").unlink()
    report = run_batch(
        [str(inputs["list"])], mixed, SPEC, shard_size=4, engine="ray", num_workers=2
    )
    assert sorted(s.shard for s in report.computed) == [0, 2] and report.skipped == 1
    same_files(local, mixed)
    m = json.loads((mixed / "manifest.json").read_text())
    assert m["counts"] == reference.counts and m["failures"] == reference.manifest["failures"]
    assert {f["error"] for f in m["failures"]} == {
        "no such file",
        "corrupt or truncated image data (Truncated File Read)",
    }
    engine = m["runs"][-1]["engine"]
    assert engine["engine"] == "ray" and engine["workers"] == 2 and engine["threads"] == 1
    assert engine["started_local_ray"] is False  # the session's Ray was used, not shut down
    assert ray.is_initialized()
    assert m["numerics"] == reference.manifest["numerics"]


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
